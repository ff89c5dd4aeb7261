//! Router data → Home Assistant entities and state values, as tables: a router field and the sensor it
//! becomes (key, name, device class, unit, state class, category). One router device (`ikuai_<id>`) with
//! fixed sensors, a family of sensors per WAN line and per LAN interface, optional sensors per application
//! class and per QoS policy, and diagnostic count sensors holding lists as JSON attributes. LAN clients
//! are mapped in [`crate::ikuai::presence`].
//!
//! Pure functions of what the poller read; knows nothing of HTTP, timing or MQTT.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::IkuaiConfig;
use crate::hub::{BinarySensorClass, DeviceSpec, EntityKind, EntitySpec, SensorClass, SensorSpec, StateClass};
use crate::ikuai::model::{
    DataList, DnsCacheDay, DnsConfig, DnsProxy, Group, Homepage, IfaceCheck, IfaceStream, MonitorIface, MonitorL7qos,
    Oddities, RouteEntry, SnapshootLan, SnapshootWan, StaticRoute, Sysstat, Vlan, json_number,
};

/// What the poller read from the router: the fast calls of the last poll and the slow ones of the last
/// slow poll. Sections not read (switched off, or refused by this firmware) stay empty.
#[derive(Debug, Clone, Default)]
pub struct RouterReadings {
    /// `homepage`: sysstat, snapshoot, ac_status, dhcp_addrpool_num, ether_info (+ app_flow, app_historical).
    pub home: Homepage,
    /// `monitor_iface`: iface_check, iface_stream.
    pub iface: MonitorIface,
    /// `dns` / `dns_cache`.
    pub dns_cache: DataList<DnsCacheDay>,
    /// `monitor_l7qos` (when `qos_traffic`).
    pub qos: MonitorL7qos,
    pub slow: SlowReadings,
}

/// The slow-changing data, read every `slow_poll_interval_s`.
#[derive(Debug, Clone, Default)]
pub struct SlowReadings {
    pub dns_config: DataList<DnsConfig>,
    /// `dns_proxy` and `dns_proxy_total` in one call.
    pub dns_proxy: DataList<DnsProxy>,
    pub ipgroup: DataList<Group>,
    pub ipgroupv6: DataList<Group>,
    pub macgroupv6: DataList<Group>,
    pub static_rt: DataList<StaticRoute>,
    /// `static_rt_table` `data`.
    pub route_table: DataList<RouteEntry>,
    /// `static_rt_table` `data6`.
    pub route_table6: DataList<RouteEntry>,
    pub vlan: DataList<Vlan>,
}

/// The router's entities that have a value now, and the state values (entity values and attribute objects).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterView {
    pub entities: Vec<EntitySpec>,
    pub values: Map<String, Value>,
}

/// How a value is shown: the Home Assistant metadata of a kind of router field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A percentage (CPU load, memory used, hit ratio).
    Percent,
    /// Bytes per second.
    Rate,
    /// Bytes since boot: a counter that resets on reboot.
    Counter,
    /// Bytes over a sliding window (the last hour).
    Window,
    /// A number of things right now (users, connections, APs).
    Count,
    /// A count that restarts every day.
    DailyCount,
    /// Seconds.
    Duration,
    Temperature,
    /// Text (addresses, names).
    Text,
    /// A link that is up or down (binary_sensor).
    Connectivity,
}

impl Kind {
    pub fn entity_kind(self) -> EntityKind {
        use SensorClass as C;
        use StateClass as S;
        let sensor = |class, unit, state| EntityKind::Sensor(SensorSpec::measured(class, unit, state));
        match self {
            Kind::Percent => sensor(None, Some("%"), Some(S::Measurement)),
            Kind::Rate => sensor(Some(C::DataRate), Some("B/s"), Some(S::Measurement)),
            Kind::Counter => sensor(Some(C::DataSize), Some("B"), Some(S::TotalIncreasing)),
            Kind::Window => sensor(Some(C::DataSize), Some("B"), Some(S::Measurement)),
            Kind::Count => sensor(None, None, Some(S::Measurement)),
            Kind::DailyCount => sensor(None, None, Some(S::TotalIncreasing)),
            Kind::Duration => sensor(Some(C::Duration), Some("s"), None),
            Kind::Temperature => sensor(Some(C::Temperature), Some("°C"), Some(S::Measurement)),
            Kind::Text => sensor(None, None, None),
            Kind::Connectivity => {
                EntityKind::BinarySensor { device_class: Some(BinarySensorClass::Connectivity), expire_after: None }
            }
        }
    }
}

/// One fixed sensor of the router device.
pub struct RouterSensor {
    pub key: &'static str,
    pub name: &'static str,
    /// The router field it reads (for the documentation and the odd-value log).
    pub source: &'static str,
    pub kind: Kind,
    pub diagnostic: bool,
    pub icon: Option<&'static str>,
    read: fn(&RouterReadings, &mut Oddities) -> Option<Value>,
}

fn sysstat<'a>(r: &'a RouterReadings, o: &mut Oddities) -> Option<&'a Sysstat> {
    o.get("homepage.sysstat", &r.home.sysstat)
}

fn num(x: f64) -> Value {
    json_number(x)
}

/// The latest day of `dns_cache` (the row with the greatest date; the running total has date `0`).
fn dns_today(r: &RouterReadings) -> Option<&DnsCacheDay> {
    r.dns_cache
        .rows()
        .iter()
        .filter_map(|d| d.date.get().map(|t| (t.0.as_str(), d)))
        .filter(|(date, _)| date.len() == 10 && date.as_bytes()[4] == b'-')
        .max_by(|a, b| a.0.cmp(b.0))
        .map(|(_, d)| d)
}

/// The primary WAN line (`default_route == 1`), else the first one.
fn primary_wan<'a>(r: &'a RouterReadings, o: &mut Oddities) -> Option<&'a SnapshootWan> {
    let wans = o.get("homepage.snapshoot_wan", &r.home.snapshoot_wan)?;
    wans.iter().find(|w| w.default_route.get().is_some_and(|d| d.0 == 1.0)).or(wans.first())
}

macro_rules! sys_num {
    ($name:literal, $($path:ident).+) => {
        |r: &RouterReadings, o: &mut Oddities| {
            let s = sysstat(r, o)?;
            sys_num!(@walk o, $name, s, $($path).+)
        }
    };
    (@walk $o:ident, $name:literal, $v:expr, $last:ident) => {
        $o.num($name, &$v.$last).map(num)
    };
    (@walk $o:ident, $name:literal, $v:expr, $first:ident . $($rest:ident).+) => {{
        let inner = $o.get($name, &$v.$first)?;
        sys_num!(@walk $o, $name, inner, $($rest).+)
    }};
}

/// The router device's fixed sensors.
pub const ROUTER_SENSORS: &[RouterSensor] = &[
    RouterSensor {
        key: "cpu_load",
        name: "CPU load",
        source: "homepage/sysstat: cpu[0]",
        kind: Kind::Percent,
        diagnostic: false,
        icon: Some("mdi:cpu-64-bit"),
        read: |r, o| {
            let s = sysstat(r, o)?;
            let cpu = o.get("homepage.sysstat.cpu", &s.cpu)?;
            o.num("homepage.sysstat.cpu[0]", cpu.first()?).map(num)
        },
    },
    RouterSensor {
        key: "cpu_temperature",
        name: "CPU temperature",
        source: "homepage/sysstat: cputemp[0] (when the router has a sensor)",
        kind: Kind::Temperature,
        diagnostic: false,
        icon: None,
        read: |r, o| {
            let s = sysstat(r, o)?;
            let temps = o.get("homepage.sysstat.cputemp", &s.cputemp)?;
            o.num("homepage.sysstat.cputemp[0]", temps.first()?).map(num)
        },
    },
    RouterSensor {
        key: "memory_used",
        name: "Memory used",
        source: "homepage/sysstat: memory.used",
        kind: Kind::Percent,
        diagnostic: false,
        icon: Some("mdi:memory"),
        read: sys_num!("homepage.sysstat.memory.used", memory.used),
    },
    RouterSensor {
        key: "uptime",
        name: "Uptime",
        source: "homepage/sysstat: uptime",
        kind: Kind::Duration,
        diagnostic: true,
        icon: Some("mdi:timer-outline"),
        read: sys_num!("homepage.sysstat.uptime", uptime),
    },
    RouterSensor {
        key: "online_users",
        name: "Online users",
        source: "homepage/sysstat: online_user.count",
        kind: Kind::Count,
        diagnostic: false,
        icon: Some("mdi:account-multiple"),
        read: sys_num!("homepage.sysstat.online_user.count", online_user.count),
    },
    RouterSensor {
        key: "online_users_2g",
        name: "Online users 2.4 GHz",
        source: "homepage/sysstat: online_user.count_2g",
        kind: Kind::Count,
        diagnostic: false,
        icon: Some("mdi:wifi"),
        read: sys_num!("homepage.sysstat.online_user.count_2g", online_user.count_2g),
    },
    RouterSensor {
        key: "online_users_5g",
        name: "Online users 5 GHz",
        source: "homepage/sysstat: online_user.count_5g",
        kind: Kind::Count,
        diagnostic: false,
        icon: Some("mdi:wifi"),
        read: sys_num!("homepage.sysstat.online_user.count_5g", online_user.count_5g),
    },
    RouterSensor {
        key: "online_users_wired",
        name: "Online users wired",
        source: "homepage/sysstat: online_user.count_wired",
        kind: Kind::Count,
        diagnostic: false,
        icon: Some("mdi:ethernet"),
        read: sys_num!("homepage.sysstat.online_user.count_wired", online_user.count_wired),
    },
    RouterSensor {
        key: "online_users_wireless",
        name: "Online users wireless",
        source: "homepage/sysstat: online_user.count_wireless",
        kind: Kind::Count,
        diagnostic: false,
        icon: Some("mdi:wifi"),
        read: sys_num!("homepage.sysstat.online_user.count_wireless", online_user.count_wireless),
    },
    RouterSensor {
        key: "connections",
        name: "Connections",
        source: "homepage/sysstat: stream.connect_num",
        kind: Kind::Count,
        diagnostic: false,
        icon: Some("mdi:lan-connect"),
        read: sys_num!("homepage.sysstat.stream.connect_num", stream.connect_num),
    },
    RouterSensor {
        key: "upload_rate",
        name: "Upload rate",
        source: "homepage/sysstat: stream.upload",
        kind: Kind::Rate,
        diagnostic: false,
        icon: Some("mdi:upload"),
        read: sys_num!("homepage.sysstat.stream.upload", stream.upload),
    },
    RouterSensor {
        key: "download_rate",
        name: "Download rate",
        source: "homepage/sysstat: stream.download",
        kind: Kind::Rate,
        diagnostic: false,
        icon: Some("mdi:download"),
        read: sys_num!("homepage.sysstat.stream.download", stream.download),
    },
    RouterSensor {
        key: "total_uploaded",
        name: "Total uploaded",
        source: "homepage/sysstat: stream.total_up",
        kind: Kind::Counter,
        diagnostic: false,
        icon: Some("mdi:upload-network"),
        read: sys_num!("homepage.sysstat.stream.total_up", stream.total_up),
    },
    RouterSensor {
        key: "total_downloaded",
        name: "Total downloaded",
        source: "homepage/sysstat: stream.total_down",
        kind: Kind::Counter,
        diagnostic: false,
        icon: Some("mdi:download-network"),
        read: sys_num!("homepage.sysstat.stream.total_down", stream.total_down),
    },
    RouterSensor {
        key: "dhcp_available",
        name: "DHCP addresses available",
        source: "homepage/dhcp_addrpool_num: available_num",
        kind: Kind::Count,
        diagnostic: false,
        icon: Some("mdi:ip-network"),
        read: |r, o| {
            let d = o.get("homepage.dhcp_addrpool_num", &r.home.dhcp_addrpool_num)?;
            o.num("homepage.dhcp_addrpool_num.available_num", &d.available_num).map(num)
        },
    },
    RouterSensor {
        key: "aps_online",
        name: "APs online",
        source: "homepage/ac_status: ap_online",
        kind: Kind::Count,
        diagnostic: false,
        icon: Some("mdi:access-point"),
        read: |r, o| {
            let d = o.get("homepage.ac_status", &r.home.ac_status)?;
            o.num("homepage.ac_status.ap_online", &d.ap_online).map(num)
        },
    },
    RouterSensor {
        key: "aps_total",
        name: "APs",
        source: "homepage/ac_status: ap_count",
        kind: Kind::Count,
        diagnostic: false,
        icon: Some("mdi:access-point-network"),
        read: |r, o| {
            let d = o.get("homepage.ac_status", &r.home.ac_status)?;
            o.num("homepage.ac_status.ap_count", &d.ap_count).map(num)
        },
    },
    RouterSensor {
        key: "dns_cache_hit_ratio",
        name: "DNS cache hit ratio today",
        source: "dns/dns_cache: hit / request of the latest day",
        kind: Kind::Percent,
        diagnostic: false,
        icon: Some("mdi:dns"),
        read: |r, o| {
            let day = dns_today(r)?;
            let hit = o.num("dns.dns_cache.hit", &day.hit)?;
            let request = o.num("dns.dns_cache.request", &day.request)?;
            (request > 0.0).then(|| num((hit / request * 10_000.0).round() / 100.0))
        },
    },
    RouterSensor {
        key: "dns_requests_today",
        name: "DNS requests today",
        source: "dns/dns_cache: request of the latest day",
        kind: Kind::DailyCount,
        diagnostic: false,
        icon: Some("mdi:dns"),
        read: |r, o| o.num("dns.dns_cache.request", &dns_today(r)?.request).map(num),
    },
    RouterSensor {
        key: "wan_ip",
        name: "WAN IP",
        source: "homepage/snapshoot: snapshoot_wan[default_route=1].ip_addr",
        kind: Kind::Text,
        diagnostic: true,
        icon: Some("mdi:ip"),
        read: |r, o| {
            let wan = primary_wan(r, o)?;
            o.text("homepage.snapshoot_wan.ip_addr", &wan.ip_addr).filter(|s| !s.is_empty()).map(Value::from)
        },
    },
    RouterSensor {
        key: "primary_wan",
        name: "Primary WAN line",
        source: "homepage/snapshoot: snapshoot_wan[default_route=1].interface",
        kind: Kind::Text,
        diagnostic: true,
        icon: Some("mdi:wan"),
        read: |r, o| {
            let wan = primary_wan(r, o)?;
            o.text("homepage.snapshoot_wan.interface", &wan.interface).filter(|s| !s.is_empty()).map(Value::from)
        },
    },
];

/// A diagnostic sensor counting the rows of a list, the rows as JSON attributes (`{"items": [...]}`).
pub struct ListSensor {
    pub key: &'static str,
    pub name: &'static str,
    pub source: &'static str,
    pub icon: &'static str,
    /// `(count, rows)`.
    read: fn(&RouterReadings) -> Option<(usize, Value)>,
}

fn list_of<T: Serialize>(list: &DataList<T>) -> Option<(usize, Value)> {
    let rows = list.data.get()?;
    let count = list.total.get().map(|t| t.0 as usize).filter(|t| *t >= rows.len()).unwrap_or(rows.len());
    Some((count, serde_json::to_value(rows).unwrap_or(Value::Null)))
}

pub const LIST_SENSORS: &[ListSensor] = &[
    ListSensor {
        key: "ethernet_ports_up",
        name: "Ethernet ports up",
        source: "homepage/ether_info (ports with link ≠ 0)",
        icon: "mdi:ethernet",
        read: |r| {
            let ports = r.home.ether_info.get()?;
            let up = ports.values().filter(|p| p.link.get().is_some_and(|l| l.0 != 0.0)).count();
            let rows: Vec<Value> = ports
                .iter()
                .map(|(port, p)| {
                    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
                    if let Some(o) = v.as_object_mut() {
                        o.insert("port".into(), Value::from(port.as_str()));
                    }
                    v
                })
                .collect();
            Some((up, Value::Array(rows)))
        },
    },
    ListSensor {
        key: "static_routes",
        name: "Static routes",
        source: "static_rt/data",
        icon: "mdi:routes",
        read: |r| list_of(&r.slow.static_rt),
    },
    ListSensor {
        key: "routing_table_ipv4",
        name: "IPv4 routing table",
        source: "static_rt_table/data",
        icon: "mdi:routes",
        read: |r| list_of(&r.slow.route_table),
    },
    ListSensor {
        key: "routing_table_ipv6",
        name: "IPv6 routing table",
        source: "static_rt_table/data6",
        icon: "mdi:routes",
        read: |r| list_of(&r.slow.route_table6),
    },
    ListSensor { key: "vlans", name: "VLANs", source: "vlan/data", icon: "mdi:lan", read: |r| list_of(&r.slow.vlan) },
    ListSensor {
        key: "dns_config",
        name: "DNS configuration",
        source: "dns/dns_config",
        icon: "mdi:dns",
        read: |r| list_of(&r.slow.dns_config),
    },
    ListSensor {
        key: "dns_proxies",
        name: "DNS reverse proxies",
        source: "dns/dns_proxy + dns_proxy_total",
        icon: "mdi:dns",
        read: |r| list_of(&r.slow.dns_proxy),
    },
    ListSensor {
        key: "ip_groups",
        name: "IP groups",
        source: "ipgroup/data",
        icon: "mdi:format-list-group",
        read: |r| list_of(&r.slow.ipgroup),
    },
    ListSensor {
        key: "ipv6_groups",
        name: "IPv6 groups",
        source: "ipgroupv6/data",
        icon: "mdi:format-list-group",
        read: |r| list_of(&r.slow.ipgroupv6),
    },
    ListSensor {
        key: "mac_groups",
        name: "MAC groups",
        source: "macgroupv6/data",
        icon: "mdi:format-list-group",
        read: |r| list_of(&r.slow.macgroupv6),
    },
];

/// What the router says about one interface, from the calls that list it.
#[derive(Debug, Default)]
pub struct Interface<'a> {
    /// As the router names it (`wan1`, `lan1`).
    pub name: String,
    pub wan: Option<&'a SnapshootWan>,
    pub lan: Option<&'a SnapshootLan>,
    pub check: Option<&'a IfaceCheck>,
    pub stream: Option<&'a IfaceStream>,
}

/// One sensor of each WAN line or LAN interface: key `<interface>_<suffix>`, name `<INTERFACE> <name>`.
#[derive(Clone, Copy)]
pub struct InterfaceSensor {
    pub suffix: &'static str,
    pub name: &'static str,
    pub source: &'static str,
    pub kind: Kind,
    pub diagnostic: bool,
    read: fn(&Interface, &mut Oddities) -> Option<Value>,
}

fn stream_num(i: &Interface, o: &mut Oddities, pick: fn(&IfaceStream) -> &crate::ikuai::model::Num) -> Option<Value> {
    o.num("monitor_iface.iface_stream", pick(i.stream?)).map(num)
}

const STREAM_SENSORS: [InterfaceSensor; 4] = [
    InterfaceSensor {
        suffix: "upload_rate",
        name: "upload rate",
        source: "monitor_iface/iface_stream: upload",
        kind: Kind::Rate,
        diagnostic: false,
        read: |i, o| stream_num(i, o, |s| &s.upload),
    },
    InterfaceSensor {
        suffix: "download_rate",
        name: "download rate",
        source: "monitor_iface/iface_stream: download",
        kind: Kind::Rate,
        diagnostic: false,
        read: |i, o| stream_num(i, o, |s| &s.download),
    },
    InterfaceSensor {
        suffix: "total_uploaded",
        name: "total uploaded",
        source: "monitor_iface/iface_stream: total_up",
        kind: Kind::Counter,
        diagnostic: false,
        read: |i, o| stream_num(i, o, |s| &s.total_up),
    },
    InterfaceSensor {
        suffix: "total_downloaded",
        name: "total downloaded",
        source: "monitor_iface/iface_stream: total_down",
        kind: Kind::Counter,
        diagnostic: false,
        read: |i, o| stream_num(i, o, |s| &s.total_down),
    },
];

/// The sensors of each WAN line.
pub const WAN_SENSORS: &[InterfaceSensor] = &[
    InterfaceSensor {
        suffix: "connected",
        name: "connected",
        source: "monitor_iface/iface_check: result = \"success\" (else snapshoot_wan: check_res = 0 with an IP)",
        kind: Kind::Connectivity,
        diagnostic: false,
        read: |i, o| {
            if let Some(check) = i.check {
                return o.text("monitor_iface.iface_check.result", &check.result).map(|r| Value::Bool(r == "success"));
            }
            let wan = i.wan?;
            let ok = o.num("homepage.snapshoot_wan.check_res", &wan.check_res)? == 0.0;
            let has_ip = o.text("homepage.snapshoot_wan.ip_addr", &wan.ip_addr).is_some_and(|ip| !ip.is_empty());
            Some(Value::Bool(ok && has_ip))
        },
    },
    InterfaceSensor {
        suffix: "ip",
        name: "IP",
        source: "homepage/snapshoot: snapshoot_wan.ip_addr (else iface_check.ip_addr)",
        kind: Kind::Text,
        diagnostic: true,
        read: |i, o| {
            let ip = match (i.wan, i.check) {
                (Some(w), _) => o.text("homepage.snapshoot_wan.ip_addr", &w.ip_addr),
                (None, Some(c)) => o.text("monitor_iface.iface_check.ip_addr", &c.ip_addr),
                _ => None,
            };
            ip.filter(|s| !s.is_empty()).map(Value::from)
        },
    },
    InterfaceSensor {
        suffix: "gateway",
        name: "gateway",
        source: "homepage/snapshoot: snapshoot_wan.gateway (else iface_check.gateway)",
        kind: Kind::Text,
        diagnostic: true,
        read: |i, o| {
            let gw = match (i.wan, i.check) {
                (Some(w), _) => o.text("homepage.snapshoot_wan.gateway", &w.gateway),
                (None, Some(c)) => o.text("monitor_iface.iface_check.gateway", &c.gateway),
                _ => None,
            };
            gw.filter(|s| !s.is_empty()).map(Value::from)
        },
    },
    InterfaceSensor {
        suffix: "connections",
        name: "connections",
        source: "monitor_iface/iface_stream: connect_num",
        kind: Kind::Count,
        diagnostic: false,
        read: |i, o| stream_num(i, o, |s| &s.connect_num),
    },
    STREAM_SENSORS[0],
    STREAM_SENSORS[1],
    STREAM_SENSORS[2],
    STREAM_SENSORS[3],
];

/// The sensors of each LAN interface.
pub const LAN_SENSORS: &[InterfaceSensor] = &STREAM_SENSORS;

/// A topic- and key-safe form of a name: lower-case ASCII letters, digits and `_`; names with other
/// characters (Chinese policy names) get a short stable hash so that two names never share a key.
pub fn key_part(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_owned();
    let plain = name.trim().chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ' | '.'));
    if plain && !out.is_empty() {
        return out;
    }
    let digest = crate::ikuai::client::passwd_hash(name);
    if out.is_empty() { digest[..8].to_owned() } else { format!("{out}_{}", &digest[..6]) }
}

/// The router's interfaces, WAN lines first, each from every call that lists it.
pub fn interfaces<'a>(r: &'a RouterReadings, o: &mut Oddities) -> (Vec<Interface<'a>>, Vec<Interface<'a>>) {
    let mut wans: BTreeMap<String, Interface<'a>> = BTreeMap::new();
    let mut lans: BTreeMap<String, Interface<'a>> = BTreeMap::new();
    let name_of = |o: &mut Oddities, f: &'a crate::ikuai::model::Str| -> Option<String> {
        o.text("interface", f).filter(|n| !n.is_empty()).map(str::to_owned)
    };
    for w in r.home.snapshoot_wan.get().map(Vec::as_slice).unwrap_or_default() {
        if let Some(n) = name_of(o, &w.interface) {
            wans.entry(n.clone()).or_insert_with(|| Interface { name: n, ..Interface::default() }).wan = Some(w);
        }
    }
    for c in r.iface.iface_check.get().map(Vec::as_slice).unwrap_or_default() {
        if let Some(n) = name_of(o, &c.interface) {
            wans.entry(n.clone()).or_insert_with(|| Interface { name: n, ..Interface::default() }).check = Some(c);
        }
    }
    for l in r.home.snapshoot_lan.get().map(Vec::as_slice).unwrap_or_default() {
        if let Some(n) = name_of(o, &l.interface) {
            lans.entry(n.clone()).or_insert_with(|| Interface { name: n, ..Interface::default() }).lan = Some(l);
        }
    }
    for s in r.iface.iface_stream.get().map(Vec::as_slice).unwrap_or_default() {
        let Some(n) = name_of(o, &s.interface) else { continue };
        let is_wan = wans.contains_key(&n) || (!lans.contains_key(&n) && looks_like_wan(&n));
        let map = if is_wan { &mut wans } else { &mut lans };
        map.entry(n.clone()).or_insert_with(|| Interface { name: n, ..Interface::default() }).stream = Some(s);
    }
    (wans.into_values().collect(), lans.into_values().collect())
}

fn looks_like_wan(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("wan") || n.starts_with("vwan") || n.starts_with("adsl") || n.starts_with("pppoe")
}

/// `epoch` seconds as ISO 8601 UTC (`2025-01-18T12:01:35Z`); times before 1970 clamp to the epoch.
/// `None` beyond the year 9999, which RFC 3339 cannot write (a router has been seen to send such times).
pub fn iso_utc(epoch: i64) -> Option<String> {
    /// 9999-12-31T23:59:59Z.
    const LAST: u64 = 253_402_300_799;
    let secs = u64::try_from(epoch).unwrap_or(0);
    if secs > LAST {
        return None;
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    Some(humantime::format_rfc3339_seconds(at).to_string())
}

fn entity(key: String, name: String, kind: Kind, diagnostic: bool, icon: Option<&str>) -> EntitySpec {
    let mut e = EntitySpec::new(key, Some(&name), kind.entity_kind());
    if diagnostic {
        e = e.diagnostic();
    }
    if let Some(icon) = icon {
        e = e.icon(icon);
    }
    e
}

/// The router's entities with a value now, and the state values.
pub fn router_view(cfg: &IkuaiConfig, r: &RouterReadings, o: &mut Oddities) -> RouterView {
    let mut view = RouterView::default();
    let put = |view: &mut RouterView, e: EntitySpec, v: Value| {
        view.values.insert(e.key.clone(), v);
        view.entities.push(e);
    };
    for s in ROUTER_SENSORS {
        if let Some(v) = (s.read)(r, o) {
            put(&mut view, entity(s.key.into(), s.name.into(), s.kind, s.diagnostic, s.icon), v);
        }
    }

    let (wans, lans) = interfaces(r, o);
    for (list, table) in [(&wans, WAN_SENSORS), (&lans, LAN_SENSORS)] {
        for iface in list {
            let part = key_part(&iface.name);
            let label = iface.name.to_uppercase();
            for s in table {
                let Some(v) = (s.read)(iface, o) else { continue };
                let key = format!("{part}_{}", s.suffix);
                let mut e = entity(key, format!("{label} {}", s.name), s.kind, s.diagnostic, None);
                if s.suffix == "connected" {
                    let attrs_key = format!("{part}_attributes");
                    view.values.insert(attrs_key.clone(), wan_attributes(iface, o));
                    e = e.attributes(attrs_key).icon("mdi:wan");
                }
                put(&mut view, e, v);
            }
        }
    }

    for s in LIST_SENSORS {
        if let Some((count, rows)) = (s.read)(r) {
            let attrs_key = format!("{}_attributes", s.key);
            view.values.insert(attrs_key.clone(), json!({ "items": rows }));
            let e = entity(s.key.into(), s.name.into(), Kind::Count, true, Some(s.icon)).attributes(attrs_key);
            put(&mut view, e, Value::from(count));
        }
    }

    if cfg.app_traffic {
        app_sensors(r, o, &mut view);
    }
    if cfg.qos_traffic {
        qos_sensors(r, o, &mut view);
    }
    view
}

fn wan_attributes(i: &Interface, o: &mut Oddities) -> Value {
    let mut a = Map::new();
    a.insert("interface".into(), Value::from(i.name.as_str()));
    if let Some(w) = i.wan {
        let primary = o.num("homepage.snapshoot_wan.default_route", &w.default_route).is_some_and(|d| d == 1.0);
        a.insert("primary".into(), Value::Bool(primary));
        for (k, f) in [("mac", &w.mac), ("netmask", &w.netmask), ("dns1", &w.dns1), ("dns2", &w.dns2), ("isp", &w.isp)]
        {
            if let Some(t) = o.text("homepage.snapshoot_wan", f).filter(|t| !t.is_empty()) {
                a.insert(k.into(), Value::from(t));
            }
        }
        if let Some(c) = o.decoded("homepage.snapshoot_wan.comment", &w.comment).filter(|t| !t.is_empty()) {
            a.insert("comment".into(), Value::from(c));
        }
    }
    if let Some(c) = i.check {
        for (k, f) in [("internet", &c.internet), ("result", &c.result), ("message", &c.errmsg)] {
            if let Some(t) = o.text("monitor_iface.iface_check", f).filter(|t| !t.is_empty()) {
                a.insert(k.into(), Value::from(t));
            }
        }
        if let Some(t) = o.num("monitor_iface.iface_check.updatetime", &c.updatetime).and_then(|t| iso_utc(t as i64)) {
            a.insert("checked_at".into(), Value::from(t));
        }
    } else if let Some(w) = i.wan {
        if let Some(t) = o.text("homepage.snapshoot_wan.errmsg", &w.errmsg).filter(|t| !t.is_empty()) {
            a.insert("message".into(), Value::from(t));
        }
        if let Some(t) = o.num("homepage.snapshoot_wan.updatetime", &w.updatetime).and_then(|t| iso_utc(t as i64)) {
            a.insert("checked_at".into(), Value::from(t));
        }
    }
    Value::Object(a)
}

/// Per application class: upload/download rate (latest `app_historical` sample) and traffic over the
/// last hour (`app_flow`).
fn app_sensors(r: &RouterReadings, o: &mut Oddities, view: &mut RouterView) {
    let add = |view: &mut RouterView, key: String, name: String, kind: Kind, v: f64| {
        view.values.insert(key.clone(), num(v));
        view.entities.push(entity(key, name, kind, false, Some("mdi:application-braces")));
    };
    if let Some(h) = o.get("homepage.app_historical", &r.home.app_historical)
        && let Some(samples) = o.get("homepage.app_historical.app_historical", &h.app_historical)
        && let Some(latest) = samples.last()
    {
        for app in latest {
            let Some(name) = o.text("homepage.app_historical.name", &app.name).filter(|n| !n.is_empty()) else {
                continue;
            };
            let part = key_part(name);
            if let Some(up) = o.num("homepage.app_historical.upload", &app.upload) {
                add(view, format!("app_{part}_upload_rate"), format!("{name} upload rate"), Kind::Rate, up);
            }
            if let Some(down) = o.num("homepage.app_historical.download", &app.download) {
                add(view, format!("app_{part}_download_rate"), format!("{name} download rate"), Kind::Rate, down);
            }
        }
    }
    if let Some(f) = o.get("homepage.app_flow", &r.home.app_flow)
        && let Some(rows) = o.get("homepage.app_flow.app_flow", &f.app_flow)
        && let Some(row) = rows.first()
    {
        for (name, bytes) in row {
            if let Some(b) = o.num("homepage.app_flow", bytes) {
                let key = format!("app_{}_traffic_last_hour", key_part(name));
                add(view, key, format!("{name} traffic last hour"), Kind::Window, b);
            }
        }
    }
}

/// Per WAN line and QoS policy: rates and totals (`monitor_l7qos`).
fn qos_sensors(r: &RouterReadings, o: &mut Oddities, view: &mut RouterView) {
    let Some(entries) = o.get("monitor_l7qos.data", &r.qos.data) else { return };
    for entry in entries {
        for (line, policies) in entry {
            let Some(policies) = o.get("monitor_l7qos.data[line]", policies) else { continue };
            for p in policies {
                let Some(name) = o.decoded("monitor_l7qos.name", &p.name).filter(|n| !n.is_empty()) else { continue };
                let part = format!("qos_{}_{}", key_part(line), key_part(name));
                let fields = [
                    ("upload_rate", "upload rate", Kind::Rate, &p.upload),
                    ("download_rate", "download rate", Kind::Rate, &p.download),
                    ("total_uploaded", "total uploaded", Kind::Counter, &p.total_up),
                    ("total_downloaded", "total downloaded", Kind::Counter, &p.total_down),
                ];
                for (suffix, label, kind, field) in fields {
                    if let Some(v) = o.num("monitor_l7qos", field) {
                        let key = format!("{part}_{suffix}");
                        view.values.insert(key.clone(), num(v));
                        let e = entity(key, format!("QoS {line} {name} {label}"), kind, false, Some("mdi:speedometer"));
                        view.entities.push(e);
                    }
                }
            }
        }
    }
}

/// The router device: `ikuai_<id>`, named by the config, identified by the router's model, firmware and
/// LAN MAC.
pub fn router_device(cfg: &IkuaiConfig, r: &RouterReadings, entities: Vec<EntitySpec>) -> DeviceSpec {
    let mut d = DeviceSpec::new(router_device_id(cfg), cfg.name.clone().unwrap_or_else(|| format!("iKuai {}", cfg.id)));
    d.manufacturer = Some("iKuai".into());
    d.configuration_url = Some(cfg.url.clone());
    let text = |f: &crate::ikuai::model::Str| f.get().map(|t| t.0.clone()).filter(|t| !t.is_empty());
    if let Some(s) = r.home.sysstat.get() {
        if let Some(v) = s.verinfo.get() {
            d.model = text(&v.modelname);
            d.sw_version = text(&v.verstring).or_else(|| text(&v.version));
        }
        d.serial_number = text(&s.gwid);
    }
    let lan_mac = r.home.snapshoot_lan.get().and_then(|l| l.first()).and_then(|l| text(&l.mac));
    if let Some(mac) = lan_mac.and_then(|m| crate::config::normalize_mac(&m)) {
        d.connections.push(("mac".into(), mac));
    }
    d.entities = entities;
    d
}

pub fn router_device_id(cfg: &IkuaiConfig) -> String {
    format!("ikuai_{}", cfg.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ikuai::model::{Field, parse};
    use crate::sim::ikuai::examples::example_data;

    fn merged(names: &[&str]) -> Map<String, Value> {
        let mut m = Map::new();
        for n in names {
            m.extend(example_data(n).as_object().cloned().unwrap());
        }
        m
    }

    /// Everything the document's examples hold, as the poller reads it.
    fn readings() -> RouterReadings {
        RouterReadings {
            home: parse(&merged(&[
                "sysstat",
                "snapshoot",
                "ac_status",
                "dhcp_addrpool_num",
                "ether_info",
                "app_flow",
                "app_historical",
            ]))
            .unwrap(),
            iface: parse(&merged(&["iface_check", "iface_stream"])).unwrap(),
            dns_cache: parse(&merged(&["dns_cache"])).unwrap(),
            qos: parse(&merged(&["monitor_l7qos"])).unwrap(),
            slow: SlowReadings {
                dns_config: parse(&merged(&["dns_config"])).unwrap(),
                dns_proxy: parse(&merged(&["dns_proxy", "dns_proxy_total"])).unwrap(),
                ipgroup: parse(&merged(&["ipgroup"])).unwrap(),
                ipgroupv6: parse(&merged(&["ipgroupv6"])).unwrap(),
                macgroupv6: parse(&merged(&["macgroupv6"])).unwrap(),
                static_rt: parse(&merged(&["static_rt"])).unwrap(),
                route_table: parse(&merged(&["static_rt_table_data"])).unwrap(),
                route_table6: parse(&merged(&["static_rt_table_data6"])).unwrap(),
                vlan: parse(&merged(&["vlan"])).unwrap(),
            },
        }
    }

    fn cfg() -> IkuaiConfig {
        IkuaiConfig { id: "home".into(), url: "http://192.168.9.1".into(), ..IkuaiConfig::default() }
    }

    fn sensor(view: &RouterView, key: &str) -> SensorSpec {
        match &view.entities.iter().find(|e| e.key == key).unwrap_or_else(|| panic!("no entity {key}")).kind {
            EntityKind::Sensor(s) => s.clone(),
            other => panic!("{key} is {other:?}"),
        }
    }

    #[test]
    fn the_documents_values() {
        let mut o = Oddities::default();
        let view = router_view(&cfg(), &readings(), &mut o);
        assert!(o.is_empty(), "{o:?}");
        let v = &view.values;
        assert_eq!(v["cpu_load"], json!(9.45));
        assert_eq!(v["memory_used"], json!(47));
        assert_eq!(v["online_users"], json!(7));
        assert_eq!((&v["online_users_2g"], &v["online_users_5g"]), (&json!(4), &json!(3)));
        assert_eq!((&v["online_users_wired"], &v["online_users_wireless"]), (&json!(0), &json!(7)));
        assert_eq!(v["connections"], json!(158));
        assert_eq!((&v["upload_rate"], &v["download_rate"]), (&json!(36015), &json!(573776)));
        assert_eq!(v["total_downloaded"], json!(114_653_745_795u64));
        assert_eq!(v["uptime"], json!(828_418));
        assert_eq!(v["dhcp_available"], json!(290));
        assert_eq!((&v["aps_online"], &v["aps_total"]), (&json!(0), &json!(0)));
        // 2025-01-18: 35919 hits of 94039 requests.
        assert_eq!(v["dns_cache_hit_ratio"], json!(38.2));
        assert_eq!(v["dns_requests_today"], json!(94039));
        assert_eq!((&v["wan_ip"], &v["primary_wan"]), (&json!("10.4.71.74"), &json!("wan1")));
        // No CPU temperature in the example (`cputemp: []`): no entity.
        assert!(!v.contains_key("cpu_temperature") && view.entities.iter().all(|e| e.key != "cpu_temperature"));
    }

    #[test]
    fn sensor_metadata_agrees_with_home_assistant() {
        let view = router_view(&cfg(), &readings(), &mut Oddities::default());
        let rate = sensor(&view, "upload_rate");
        assert_eq!(
            (rate.device_class, rate.unit, rate.state_class),
            (Some(SensorClass::DataRate), Some("B/s"), Some(StateClass::Measurement))
        );
        let total = sensor(&view, "total_uploaded");
        assert_eq!(
            (total.device_class, total.unit, total.state_class),
            (Some(SensorClass::DataSize), Some("B"), Some(StateClass::TotalIncreasing))
        );
        let cpu = sensor(&view, "cpu_load");
        assert_eq!((cpu.device_class, cpu.unit, cpu.state_class), (None, Some("%"), Some(StateClass::Measurement)));
        let up = sensor(&view, "uptime");
        assert_eq!((up.device_class, up.unit), (Some(SensorClass::Duration), Some("s")));
        let uptime = view.entities.iter().find(|e| e.key == "uptime").unwrap();
        assert_eq!(uptime.category, Some(crate::hub::EntityCategory::Diagnostic));
        let users = view.entities.iter().find(|e| e.key == "online_users").unwrap();
        assert_eq!(users.category, None);
        // Every sensor: data_rate ⇔ B/s, data_size ⇔ B, units only with a matching class, no config category.
        for e in &view.entities {
            assert_ne!(e.category, Some(crate::hub::EntityCategory::Config), "{}", e.key);
            if let EntityKind::Sensor(s) = &e.kind {
                match s.device_class {
                    Some(SensorClass::DataRate) => assert_eq!(s.unit, Some("B/s"), "{}", e.key),
                    Some(SensorClass::DataSize) => assert_eq!(s.unit, Some("B"), "{}", e.key),
                    Some(SensorClass::Duration) => assert_eq!(s.unit, Some("s")),
                    Some(SensorClass::Temperature) => assert_eq!(s.unit, Some("°C")),
                    None => assert!(matches!(s.unit, None | Some("%")), "{}", e.key),
                    other => panic!("{}: unexpected class {other:?}", e.key),
                }
                if s.state_class == Some(StateClass::TotalIncreasing) {
                    assert!(matches!(s.device_class, Some(SensorClass::DataSize) | None), "{}", e.key);
                }
            }
        }
        // And the bridge's own check of what Home Assistant accepts, with app and QoS sensors on.
        let all = IkuaiConfig { app_traffic: true, qos_traffic: true, ..cfg() };
        for e in router_view(&all, &readings(), &mut Oddities::default()).entities {
            crate::hass::discovery::validate_entity(&e).unwrap_or_else(|m| panic!("{}: {m}", e.key));
        }
        let keys: std::collections::HashSet<&str> = view.entities.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys.len(), view.entities.len(), "duplicate keys");
        assert!(keys.iter().all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
    }

    #[test]
    fn wan_lines_and_lan_interfaces() {
        let view = router_view(&cfg(), &readings(), &mut Oddities::default());
        let v = &view.values;
        assert_eq!(v["wan1_connected"], json!(true));
        assert_eq!((&v["wan1_ip"], &v["wan1_gateway"]), (&json!("10.4.71.74"), &json!("10.4.64.1")));
        let attrs = &v["wan1_attributes"];
        assert_eq!(attrs["primary"], json!(true));
        assert_eq!(attrs["internet"], json!("PPPOE"));
        assert_eq!(attrs["checked_at"], json!("2025-01-08T00:28:24Z"));
        let link = view.entities.iter().find(|e| e.key == "wan1_connected").unwrap();
        assert_eq!(link.kind, Kind::Connectivity.entity_kind());
        assert_eq!(link.attributes_key.as_deref(), Some("wan1_attributes"));
        // lan1 from iface_stream: rates and totals; its connect_num "--" gives no value.
        assert_eq!((&v["lan1_upload_rate"], &v["lan1_download_rate"]), (&json!(53484), &json!(3912)));
        assert_eq!(v["lan1_total_downloaded"], json!(86_272_983_579u64));
        assert!(!v.contains_key("lan1_connections"));
        // The document shows no WAN row in iface_stream: no WAN rates, but the line is there.
        assert!(!v.contains_key("wan1_upload_rate"));

        // A line that fails its check, and one known only from snapshoot.
        let mut r = readings();
        r.iface = parse(
            &json!({"iface_check": [{"interface": "wan1", "result": "fail", "errmsg": "timeout"}],
            "iface_stream": [{"interface": "wan1", "upload": "10", "download": "20", "connect_num": "12"}]})
            .as_object()
            .cloned()
            .unwrap(),
        )
        .unwrap();
        let view = router_view(&cfg(), &r, &mut Oddities::default());
        assert_eq!(view.values["wan1_connected"], json!(false));
        assert_eq!(view.values["wan1_connections"], json!(12));
        assert_eq!(view.values["wan1_upload_rate"], json!(10));
        r.iface = MonitorIface::default();
        let view = router_view(&cfg(), &r, &mut Oddities::default());
        assert_eq!(view.values["wan1_connected"], json!(true)); // snapshoot_wan check_res 0 with an IP
    }

    #[test]
    fn lists_are_counted_with_their_rows_as_attributes() {
        let view = router_view(&cfg(), &readings(), &mut Oddities::default());
        let v = &view.values;
        for (key, count) in [
            ("static_routes", 1),
            ("routing_table_ipv4", 6),
            ("routing_table_ipv6", 9),
            ("vlans", 1),
            ("dns_config", 1),
            ("dns_proxies", 1),
            ("ip_groups", 1),
            ("ipv6_groups", 1),
            ("mac_groups", 1),
            ("ethernet_ports_up", 0),
        ] {
            assert_eq!(v[key], json!(count), "{key}");
            let e = view.entities.iter().find(|e| e.key == key).unwrap();
            assert_eq!(e.category, Some(crate::hub::EntityCategory::Diagnostic));
            let attrs = e.attributes_key.as_deref().unwrap();
            assert!(v[attrs]["items"].is_array(), "{key}");
        }
        assert_eq!(v["static_routes_attributes"]["items"][0]["comment"], json!("测试静态路由"));
        assert_eq!(v["dns_proxies_attributes"]["items"][0]["domain"], json!("ikuai.cn"));
        assert_eq!(v["ethernet_ports_up_attributes"]["items"][0]["port"], json!("veth1"));
    }

    #[test]
    fn app_and_qos_sensors_only_when_switched_on() {
        let off = router_view(&cfg(), &readings(), &mut Oddities::default());
        assert!(off.entities.iter().all(|e| !e.key.starts_with("app_") && !e.key.starts_with("qos_")));
        let on = IkuaiConfig { app_traffic: true, qos_traffic: true, ..cfg() };
        let view = router_view(&on, &readings(), &mut Oddities::default());
        let v = &view.values;
        assert_eq!(v["app_video_download_rate"], json!(409_115));
        assert_eq!(v["app_total_upload_rate"], json!(56156));
        assert_eq!(v["app_http_traffic_last_hour"], json!(212_894_332));
        let window = sensor(&view, "app_http_traffic_last_hour");
        assert_eq!(window.state_class, Some(StateClass::Measurement));
        assert_eq!(v["qos_wan1_all_download_rate"], json!(757_288));
        assert_eq!(v["qos_wan1_all_total_uploaded"], json!(76_041_903_971u64));
        let small = format!("qos_wan1_{}_upload_rate", key_part("小包数据"));
        assert_eq!(v[&small], json!(320));
        let e = view.entities.iter().find(|e| e.key == small).unwrap();
        assert_eq!(e.name.as_deref(), Some("QoS wan1 小包数据 upload rate"));
        // 13 policies × 4 sensors, all with distinct keys.
        assert_eq!(view.entities.iter().filter(|e| e.key.starts_with("qos_")).count(), 52);
    }

    #[test]
    fn odd_values_are_skipped_and_noted() {
        let mut r = readings();
        let mut sys = example_data("sysstat");
        sys["sysstat"]["memory"]["used"] = json!("lots");
        sys["sysstat"]["cputemp"] = json!([44]);
        sys["sysstat"]["online_user"] = json!("seven");
        r.home.sysstat = parse::<Homepage>(sys.as_object().unwrap()).unwrap().sysstat;
        let mut o = Oddities::default();
        let view = router_view(&cfg(), &r, &mut o);
        assert_eq!(view.values["cpu_load"], json!(9.45));
        assert_eq!(view.values["cpu_temperature"], json!(44));
        assert!(!view.values.contains_key("memory_used") && !view.values.contains_key("online_users"));
        let names: Vec<String> = o.drain().map(|(n, _)| n).collect();
        assert!(names.contains(&"homepage.sysstat.memory.used".to_owned()), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("homepage.sysstat.online_user")), "{names:?}");
        assert!(matches!(r.home.sysstat, Field::Value(_)));
    }

    #[test]
    fn the_router_device() {
        let r = readings();
        let d = router_device(&cfg(), &r, Vec::new());
        assert_eq!(d.id, "ikuai_home");
        assert_eq!(d.name, "iKuai home");
        assert_eq!(d.model.as_deref(), Some("IK-Q3000"));
        assert_eq!(d.sw_version.as_deref(), Some("3.7.17 x64 Build202412271043"));
        assert_eq!(d.serial_number.as_deref(), Some("2341245213"));
        assert_eq!(d.configuration_url.as_deref(), Some("http://192.168.9.1"));
        assert_eq!(d.connections, vec![("mac".to_owned(), "08:9b:4b:12:2b:54".to_owned())]);
        let named = IkuaiConfig { name: Some("Office router".into()), ..cfg() };
        assert_eq!(router_device(&named, &r, Vec::new()).name, "Office router");
    }

    #[test]
    fn keys_and_times() {
        assert_eq!(key_part("wan1"), "wan1");
        assert_eq!(key_part("HTTP"), "http");
        assert_eq!(key_part("ALL"), "all");
        assert!(key_part("HTTP协议").starts_with("http_") && key_part("HTTP协议").len() == 11);
        assert_eq!(key_part("小包数据").len(), 8);
        assert_ne!(key_part("小包数据"), key_part("网络视频"));
        assert_eq!(iso_utc(1_737_201_695).as_deref(), Some("2025-01-18T12:01:35Z"));
        assert_eq!(iso_utc(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(iso_utc(951_782_400).as_deref(), Some("2000-02-29T00:00:00Z"));
        assert_eq!(iso_utc(253_402_300_799).as_deref(), Some("9999-12-31T23:59:59Z"));
        assert_eq!(iso_utc(253_402_300_800), None, "year 10000: no panic, no value");
        assert_eq!(iso_utc(i64::MAX), None);
    }

    #[test]
    fn the_user_documentation_lists_every_entity() {
        let doc = include_str!("../../README.md");
        let keys = ROUTER_SENSORS
            .iter()
            .map(|s| s.key.to_owned())
            .chain(LIST_SENSORS.iter().map(|s| s.key.to_owned()))
            .chain(WAN_SENSORS.iter().map(|s| format!("wan1_{}", s.suffix)))
            .chain(LAN_SENSORS.iter().map(|s| format!("lan1_{}", s.suffix)));
        for key in keys {
            assert!(doc.contains(&format!("`{key}`")), "README.md does not list `{key}`");
        }
    }
}
