//! LAN clients as presence trackers: the `monitor_lanip` and `monitor_lanipv6` rows merged by lower-case
//! MAC, filtered by the include/exclude lists, and tracked with a grace period (`consider_home_s`: an idle
//! phone drops off the router's list for minutes) and optional pruning after N days unseen. Each client
//! is a device `ikuai_<router>_<mac hex>` reached through the router, with a `device_tracker` and
//! optionally upload/download rate sensors.
//!
//! The clock is a parameter (`now`), so the grace logic is tested without waiting. Knows nothing of HTTP
//! or MQTT.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::config::{IkuaiConfig, normalize_mac};
use crate::hub::{DeviceSpec, EntityKind, EntitySpec};
use crate::ikuai::mapping::{Kind, iso_utc, router_device_id};
use crate::ikuai::model::{LanClient, Oddities};

/// One client as the router lists it now (both address families merged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientInfo {
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub ip: Option<String>,
    pub ipv6: Vec<String>,
    pub hostname: Option<String>,
    /// The user's note on the router, decoded.
    pub comment: Option<String>,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub client_type: Option<String>,
    pub ssid: Option<String>,
    /// dBm.
    pub signal: Option<f64>,
    /// ISO 8601 UTC.
    pub online_since: Option<String>,
    /// Bytes per second, both address families added.
    pub upload: Option<f64>,
    pub download: Option<f64>,
}

impl ClientInfo {
    /// What Home Assistant shows as the device name.
    pub fn display_name(&self) -> String {
        [&self.comment, &self.hostname, &self.model]
            .into_iter()
            .flatten()
            .find(|s| !s.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| self.mac.clone())
    }
}

fn some_text(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty() && *s != "Unknown").map(str::to_owned)
}

/// The clients of both lists merged by MAC, in MAC order; rows without a readable MAC are skipped.
pub fn merge_clients(v4: &[LanClient], v6: &[LanClient], o: &mut Oddities) -> Vec<ClientInfo> {
    let mut by_mac: BTreeMap<String, ClientInfo> = BTreeMap::new();
    merge_rows(&mut by_mac, v4, false, o);
    merge_rows(&mut by_mac, v6, true, o);
    by_mac.into_values().collect()
}

/// Merges rows of one list (`monitor_lanipv6` when `is_v6`) into `by_mac`: a value already known is kept,
/// rates are added.
pub fn merge_rows(by_mac: &mut BTreeMap<String, ClientInfo>, rows: &[LanClient], is_v6: bool, o: &mut Oddities) {
    for row in rows {
        let Some(mac) = o.text("monitor_lanip.mac", &row.mac).and_then(normalize_mac) else { continue };
        let c = by_mac.entry(mac.clone()).or_insert_with(|| ClientInfo { mac, ..ClientInfo::default() });
        let ip = some_text(o.text("monitor_lanip.ip_addr", &row.ip_addr));
        if is_v6 {
            if let Some(ip) = ip
                && !c.ipv6.contains(&ip)
            {
                c.ipv6.push(ip);
            }
        } else if c.ip.is_none() {
            c.ip = ip;
        }
        let fill = |slot: &mut Option<String>, v: Option<&str>| {
            if slot.is_none() {
                *slot = some_text(v);
            }
        };
        fill(&mut c.hostname, o.text("monitor_lanip.hostname", &row.hostname));
        fill(&mut c.comment, o.decoded("monitor_lanip.comment", &row.comment));
        fill(&mut c.model, o.decoded("monitor_lanip.client_model", &row.client_model));
        fill(&mut c.vendor, o.text("monitor_lanip.client_device", &row.client_device));
        fill(&mut c.client_type, o.text("monitor_lanip.client_type", &row.client_type));
        fill(&mut c.ssid, o.text("monitor_lanip.ssid", &row.ssid));
        if c.signal.is_none() {
            c.signal = o.num("monitor_lanip.signal", &row.signal).filter(|s| *s != 0.0);
        }
        if c.online_since.is_none() {
            c.online_since =
                o.num("monitor_lanip.timestamp", &row.timestamp).filter(|t| *t > 0.0).and_then(|t| iso_utc(t as i64));
        }
        for (slot, field, name) in [
            (&mut c.upload, &row.upload, "monitor_lanip.upload"),
            (&mut c.download, &row.download, "monitor_lanip.download"),
        ] {
            if let Some(v) = o.num(name, field) {
                *slot = Some(slot.unwrap_or(0.0) + v);
            }
        }
    }
}

/// The clients of two lists each merged on its own (a page at a time, so that thousands of raw rows are
/// never held together), merged the way [`merge_clients`] merges the rows of `first` then `later`.
pub fn merge_lists(first: BTreeMap<String, ClientInfo>, later: BTreeMap<String, ClientInfo>) -> Vec<ClientInfo> {
    let mut by_mac = first;
    for (mac, l) in later {
        let Some(c) = by_mac.get_mut(&mac) else {
            by_mac.insert(mac, l);
            continue;
        };
        if c.ip.is_none() {
            c.ip = l.ip;
        }
        for ip in l.ipv6 {
            if !c.ipv6.contains(&ip) {
                c.ipv6.push(ip);
            }
        }
        for (slot, value) in [
            (&mut c.hostname, l.hostname),
            (&mut c.comment, l.comment),
            (&mut c.model, l.model),
            (&mut c.vendor, l.vendor),
            (&mut c.client_type, l.client_type),
            (&mut c.ssid, l.ssid),
            (&mut c.online_since, l.online_since),
        ] {
            if slot.is_none() {
                *slot = value;
            }
        }
        c.signal = c.signal.or(l.signal);
        for (slot, value) in [(&mut c.upload, l.upload), (&mut c.download, l.download)] {
            if let Some(v) = value {
                *slot = Some(slot.unwrap_or(0.0) + v);
            }
        }
    }
    by_mac.into_values().collect()
}

/// Which clients to track, from `clients_include` / `clients_exclude`.
#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    include: HashSet<String>,
    exclude: HashSet<String>,
}

impl ClientFilter {
    pub fn new(cfg: &IkuaiConfig) -> Self {
        let set = |list: &[String]| list.iter().filter_map(|m| normalize_mac(m)).collect();
        ClientFilter { include: set(&cfg.clients_include), exclude: set(&cfg.clients_exclude) }
    }

    pub fn allows(&self, mac: &str) -> bool {
        (self.include.is_empty() || self.include.contains(mac)) && !self.exclude.contains(mac)
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    info: ClientInfo,
    last_seen: Instant,
    home: bool,
    /// Listed by the last poll.
    listed: bool,
}

/// What one update changed.
#[derive(Debug, Default, PartialEq)]
pub struct PresenceChanges {
    /// Seen for the first time since start.
    pub new: Vec<String>,
    /// Went home or away, or what the router says about them changed (state to send).
    pub changed: Vec<String>,
    /// Unseen for longer than the prune period: to remove.
    pub pruned: Vec<String>,
    /// What was known of each changed client that is not new (its info and whether it was home) before
    /// this update: what its last device and state were made from.
    pub previous: HashMap<String, (ClientInfo, bool)>,
}

/// The tracked clients and their home/away state.
#[derive(Debug)]
pub struct Presence {
    consider_home: Duration,
    prune_after: Option<Duration>,
    /// Boxed: a B-tree node holds eleven values whether used or not, and a client's is some 300 bytes.
    clients: BTreeMap<String, Box<Tracked>>,
}

impl Presence {
    pub fn new(consider_home: Duration, prune_after: Option<Duration>) -> Self {
        Presence { consider_home, prune_after, clients: BTreeMap::new() }
    }

    pub fn from_config(cfg: &IkuaiConfig) -> Self {
        // Saturating: the number comes from the user unbounded, and a wrapped product would prune at once.
        let prune = (cfg.prune_clients_after_days > 0)
            .then(|| Duration::from_secs(cfg.prune_clients_after_days.saturating_mul(86_400)));
        Presence::new(Duration::from_secs(cfg.consider_home_s), prune)
    }

    /// Takes the clients listed at `now`.
    pub fn update(&mut self, now: Instant, listed: Vec<ClientInfo>) -> PresenceChanges {
        let mut changes = PresenceChanges::default();
        let mut seen = HashSet::new();
        for info in listed {
            seen.insert(info.mac.clone());
            match self.clients.get_mut(&info.mac) {
                None => {
                    changes.new.push(info.mac.clone());
                    changes.changed.push(info.mac.clone());
                    let mac = info.mac.clone();
                    self.clients.insert(mac, Box::new(Tracked { info, last_seen: now, home: true, listed: true }));
                }
                Some(t) => {
                    let old = std::mem::replace(&mut **t, Tracked { info, last_seen: now, home: true, listed: true });
                    if !old.home || !old.listed || old.info != t.info {
                        changes.changed.push(t.info.mac.clone());
                        changes.previous.insert(t.info.mac.clone(), (old.info, old.home));
                    }
                }
            }
        }
        let mut pruned = Vec::new();
        for (mac, t) in self.clients.iter_mut().filter(|(mac, _)| !seen.contains(*mac)) {
            let away_for = now.saturating_duration_since(t.last_seen);
            if self.prune_after.is_some_and(|p| away_for >= p) {
                pruned.push(mac.clone());
                continue;
            }
            // No longer listed (no throughput to report), or away after the grace period.
            let unlisted = t.listed;
            let away = t.home && away_for >= self.consider_home;
            if !(unlisted || away) {
                continue;
            }
            changes.changed.push(mac.clone());
            changes.previous.insert(mac.clone(), (t.info.clone(), t.home));
            if unlisted {
                t.listed = false;
                t.info.upload = None;
                t.info.download = None;
            }
            if away {
                t.home = false;
            }
        }
        for mac in &pruned {
            self.clients.remove(mac);
        }
        changes.pruned = pruned;
        changes
    }

    pub fn is_home(&self, mac: &str) -> Option<bool> {
        self.clients.get(mac).map(|t| t.home)
    }

    pub fn info(&self, mac: &str) -> Option<&ClientInfo> {
        self.clients.get(mac).map(|t| &t.info)
    }

    pub fn macs(&self) -> impl Iterator<Item = &String> {
        self.clients.keys()
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// `ikuai_<router>_<mac without colons>`.
pub fn client_device_id(cfg: &IkuaiConfig, mac: &str) -> String {
    format!("{}_{}", router_device_id(cfg), mac.replace(':', ""))
}

/// The state key of the tracker and of its attributes.
pub const TRACKER_KEY: &str = "presence";
pub const ATTRIBUTES_KEY: &str = "attributes";

/// The client's device: a tracker (the device's main feature), and rate sensors when switched on.
pub fn client_device(cfg: &IkuaiConfig, info: &ClientInfo) -> DeviceSpec {
    let mut d = DeviceSpec::new(client_device_id(cfg, &info.mac), info.display_name());
    d.manufacturer = info.vendor.clone();
    d.model = info.model.clone();
    d.connections.push(("mac".into(), info.mac.clone()));
    d.via_device = Some(router_device_id(cfg));
    d.entities.push(
        EntitySpec::new(TRACKER_KEY, None, EntityKind::DeviceTracker)
            .attributes(ATTRIBUTES_KEY)
            .icon("mdi:cellphone-wireless"),
    );
    if cfg.client_rate_sensors {
        for (key, name, icon) in
            [("upload_rate", "Upload rate", "mdi:upload"), ("download_rate", "Download rate", "mdi:download")]
        {
            d.entities.push(EntitySpec::new(key, Some(name), Kind::Rate.entity_kind()).icon(icon));
        }
    }
    d
}

/// The client's state: `home`/`not_home`, its attributes, and its rates when switched on.
pub fn client_state(cfg: &IkuaiConfig, info: &ClientInfo, home: bool) -> Map<String, Value> {
    let mut attrs = Map::new();
    attrs.insert("mac".into(), Value::from(info.mac.as_str()));
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            attrs.insert(k.into(), Value::from(v.as_str()));
        }
    };
    put("ip", &info.ip);
    put("hostname", &info.hostname);
    put("comment", &info.comment);
    put("model", &info.model);
    put("client_type", &info.client_type);
    put("ssid", &info.ssid);
    put("online_since", &info.online_since);
    if !info.ipv6.is_empty() {
        attrs.insert("ipv6".into(), Value::from(info.ipv6.clone()));
    }
    if let Some(s) = info.signal {
        attrs.insert("signal".into(), crate::ikuai::model::json_number(s));
    }
    let mut state = Map::new();
    state.insert(TRACKER_KEY.into(), Value::from(if home { "home" } else { "not_home" }));
    state.insert(ATTRIBUTES_KEY.into(), Value::Object(attrs));
    if cfg.client_rate_sensors {
        let rate = |v: Option<f64>| v.map(crate::ikuai::model::json_number).unwrap_or(Value::Null);
        state.insert("upload_rate".into(), rate(info.upload));
        state.insert("download_rate".into(), rate(info.download));
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ikuai::model::{DataList, parse};
    use crate::sim::ikuai::examples::{example, example_data};
    use serde_json::json;

    fn document_clients() -> Vec<ClientInfo> {
        let v4: LanClient = serde_json::from_value(example("monitor_lanip_client")).unwrap();
        let v6: DataList<LanClient> = parse(example_data("monitor_lanipv6").as_object().unwrap()).unwrap();
        merge_clients(&[v4], v6.rows(), &mut Oddities::default())
    }

    fn client(mac: &str) -> ClientInfo {
        ClientInfo { mac: mac.into(), ip: Some("192.168.9.20".into()), ..ClientInfo::default() }
    }

    #[test]
    fn the_documents_clients() {
        let clients = document_clients();
        assert_eq!(clients.len(), 2);
        let redmi = clients.iter().find(|c| c.mac == "36:6e:24:13:ba:6e").unwrap();
        assert_eq!(redmi.comment.as_deref(), Some("红米Note 11T Pro"));
        assert_eq!(redmi.display_name(), "红米Note 11T Pro");
        assert_eq!(redmi.ip.as_deref(), Some("192.168.9.11"));
        assert_eq!(redmi.signal, Some(-48.0));
        assert_eq!(redmi.ssid.as_deref(), Some("2G:TP-LINK_FD1C"));
        assert_eq!(redmi.online_since.as_deref(), Some("2025-01-18T12:01:35Z"));
        assert_eq!((redmi.upload, redmi.download), (Some(271.0), Some(232.0)));
        let cam = clients.iter().find(|c| c.mac == "60:7e:a4:77:9f:f9").unwrap();
        assert_eq!(cam.ipv6, vec!["2409:8a04:5633:2171:627e:a4ff:fe77:9ff9".to_owned()]);
        assert_eq!(cam.ip, None);
        assert_eq!(cam.display_name(), "院内监控");
        assert_eq!(cam.client_type, None); // "Unknown"
        assert_eq!(cam.signal, None); // ""
    }

    #[test]
    fn both_families_merge_by_lower_case_mac() {
        let mut v4: LanClient = serde_json::from_value(example("monitor_lanip_client")).unwrap();
        v4.mac = serde_json::from_value(json!("36:6E:24:13:BA:6E")).unwrap();
        let mut v6: LanClient = serde_json::from_value(example_data("monitor_lanipv6")["data"][0].clone()).unwrap();
        v6.mac = serde_json::from_value(json!("36:6e:24:13:ba:6e")).unwrap();
        let merged = merge_clients(&[v4], &[v6.clone(), v6], &mut Oddities::default());
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].ip.as_deref(), Some("192.168.9.11"));
        assert_eq!(merged[0].ipv6.len(), 1);
        assert_eq!(merged[0].upload, Some(271.0)); // + 0 + 0 from the IPv6 rows
    }

    #[test]
    fn lists_merged_apart_then_together_are_the_rows_merged_at_once() {
        let v4: LanClient = serde_json::from_value(example("monitor_lanip_client")).unwrap();
        let v6: DataList<LanClient> = parse(example_data("monitor_lanipv6").as_object().unwrap()).unwrap();
        // The same client on both lists (the IPv6 row holds what the IPv4 row lacks), plus one on each.
        let mut both: LanClient = serde_json::from_value(example_data("monitor_lanipv6")["data"][0].clone()).unwrap();
        both.mac = v4.mac.clone();
        let v4_rows = vec![v4.clone(), v4];
        let v6_rows = vec![v6.rows()[0].clone(), both.clone(), both];
        let at_once = merge_clients(&v4_rows, &v6_rows, &mut Oddities::default());
        let (mut first, mut later) = (BTreeMap::new(), BTreeMap::new());
        let mut odd = Oddities::default();
        merge_rows(&mut first, &v4_rows, false, &mut odd);
        merge_rows(&mut later, &v6_rows[..1], true, &mut odd);
        merge_rows(&mut later, &v6_rows[1..], true, &mut odd);
        assert_eq!(merge_lists(first, later), at_once);
        assert_eq!(at_once.len(), 2);
        let redmi = at_once.iter().find(|c| c.mac == "36:6e:24:13:ba:6e").unwrap();
        assert_eq!(redmi.ipv6.len(), 1);
        assert_eq!(redmi.upload, Some(2.0 * 271.0), "rates add up over rows");
    }

    #[test]
    fn a_client_leaves_only_after_the_grace_period() {
        let mut p = Presence::new(Duration::from_secs(180), None);
        let t0 = Instant::now();
        let changes = p.update(t0, vec![client("aa:00:00:00:00:01"), client("aa:00:00:00:00:02")]);
        assert_eq!(changes.new.len(), 2);
        // Client 2 drops off the list: still home, its rates cleared (a state change).
        let changes = p.update(t0 + Duration::from_secs(10), vec![client("aa:00:00:00:00:01")]);
        assert_eq!(changes.changed, vec!["aa:00:00:00:00:02".to_owned()]);
        assert_eq!(p.is_home("aa:00:00:00:00:02"), Some(true));
        let changes = p.update(t0 + Duration::from_secs(179), vec![client("aa:00:00:00:00:01")]);
        assert!(changes.changed.is_empty(), "{changes:?}");
        assert_eq!(p.is_home("aa:00:00:00:00:02"), Some(true));
        // 180 s after it was last seen: away.
        let changes = p.update(t0 + Duration::from_secs(180), vec![client("aa:00:00:00:00:01")]);
        assert_eq!(changes.changed, vec!["aa:00:00:00:00:02".to_owned()]);
        assert_eq!(p.is_home("aa:00:00:00:00:02"), Some(false));
        assert_eq!(p.is_home("aa:00:00:00:00:01"), Some(true));
        // Back: home at once, not new.
        let both = || vec![client("aa:00:00:00:00:01"), client("aa:00:00:00:00:02")];
        let changes = p.update(t0 + Duration::from_secs(300), both());
        assert_eq!(changes.changed, vec!["aa:00:00:00:00:02".to_owned()]);
        assert!(changes.new.is_empty());
        assert_eq!(p.is_home("aa:00:00:00:00:02"), Some(true));
        // Nothing changes when nothing changes.
        let changes = p.update(t0 + Duration::from_secs(310), both());
        assert!(changes.changed.is_empty());
    }

    #[test]
    fn changes_carry_what_was_known_before() {
        let mut p = Presence::new(Duration::from_secs(180), None);
        let t0 = Instant::now();
        assert!(p.update(t0, vec![client("aa:00:00:00:00:01")]).previous.is_empty(), "a new client has no past");
        let renamed = ClientInfo { hostname: Some("laptop".into()), ..client("aa:00:00:00:00:01") };
        let changes = p.update(t0 + Duration::from_secs(10), vec![renamed]);
        let (before, home) = &changes.previous["aa:00:00:00:00:01"];
        assert_eq!((before.hostname.as_deref(), *home), (None, true));
        assert!(p.update(t0 + Duration::from_secs(20), vec![]).previous.contains_key("aa:00:00:00:00:01"));
        // Gone for longer than the grace period: what it was before going away.
        let changes = p.update(t0 + Duration::from_secs(400), vec![]);
        let (before, home) = &changes.previous["aa:00:00:00:00:01"];
        assert_eq!((before.hostname.as_deref(), *home), (Some("laptop"), true));
        assert_eq!(p.is_home("aa:00:00:00:00:01"), Some(false));
        assert!(p.update(t0 + Duration::from_secs(410), vec![]).previous.is_empty());
    }

    #[test]
    fn clients_are_pruned_only_when_asked() {
        let day = Duration::from_secs(86_400);
        let t0 = Instant::now();
        let mut keep = Presence::new(Duration::from_secs(180), None);
        keep.update(t0, vec![client("aa:00:00:00:00:01")]);
        assert!(keep.update(t0 + day * 365, vec![]).pruned.is_empty());
        assert_eq!(keep.len(), 1);
        let mut prune = Presence::new(Duration::from_secs(180), Some(day * 7));
        prune.update(t0, vec![client("aa:00:00:00:00:01")]);
        assert!(prune.update(t0 + day * 6, vec![]).pruned.is_empty());
        assert_eq!(prune.update(t0 + day * 7, vec![]).pruned, vec!["aa:00:00:00:00:01".to_owned()]);
        assert!(prune.is_empty());
    }

    #[test]
    fn include_and_exclude_lists() {
        let cfg = IkuaiConfig { clients_exclude: vec!["AA-00-00-00-00-02".into()], ..IkuaiConfig::default() };
        let f = ClientFilter::new(&cfg);
        assert!(f.allows("aa:00:00:00:00:01") && !f.allows("aa:00:00:00:00:02"));
        let cfg = IkuaiConfig { clients_include: vec!["aa0000000001".into()], ..IkuaiConfig::default() };
        let f = ClientFilter::new(&cfg);
        assert!(f.allows("aa:00:00:00:00:01") && !f.allows("aa:00:00:00:00:03"));
    }

    #[test]
    fn client_device_and_state() {
        let cfg = IkuaiConfig { id: "home".into(), client_rate_sensors: true, ..IkuaiConfig::default() };
        let redmi = document_clients().into_iter().find(|c| c.mac == "36:6e:24:13:ba:6e").unwrap();
        let d = client_device(&cfg, &redmi);
        assert_eq!(d.id, "ikuai_home_366e2413ba6e");
        assert_eq!(d.name, "红米Note 11T Pro");
        assert_eq!(d.via_device.as_deref(), Some("ikuai_home"));
        assert_eq!(d.manufacturer.as_deref(), Some("Redmi"));
        let tracker = d.entity(TRACKER_KEY).unwrap();
        assert_eq!((tracker.kind.clone(), tracker.name.clone()), (EntityKind::DeviceTracker, None));
        assert!(d.entity("upload_rate").is_some() && d.entity("download_rate").is_some());
        for e in &d.entities {
            crate::hass::discovery::validate_entity(e).unwrap_or_else(|m| panic!("{}: {m}", e.key));
        }
        let s = client_state(&cfg, &redmi, true);
        assert_eq!(s["presence"], "home");
        assert_eq!(s["upload_rate"], json!(271));
        let a = &s["attributes"];
        assert_eq!(a["ip"], "192.168.9.11");
        assert_eq!(a["hostname"], "Redmi-Note-11T-Pro");
        assert_eq!(a["comment"], "红米Note 11T Pro");
        assert_eq!(a["client_type"], "Android");
        assert_eq!(a["signal"], json!(-48));
        assert_eq!(a["online_since"], "2025-01-18T12:01:35Z");
        assert_eq!(client_state(&cfg, &redmi, false)["presence"], "not_home");
        let plain = IkuaiConfig { client_rate_sensors: false, ..cfg };
        assert_eq!(client_device(&plain, &redmi).entities.len(), 1);
        assert!(!client_state(&plain, &redmi, true).contains_key("upload_rate"));
    }
}
