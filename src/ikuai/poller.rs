//! One router's poll loop: reads the fast data every `poll_interval_s` and the slow data every
//! `slow_poll_interval_s`, turns them into devices and states ([`crate::ikuai::mapping`],
//! [`crate::ikuai::presence`]), and tells the bridge only what changed.
//!
//! Availability follows the poller: a failed poll (unreachable, timing out, refusing the login, answering
//! garbage) marks the router and its clients offline and the link down (once per kind of failure); the
//! next good poll marks them online again and re-sends every state. A refused login or certificate is
//! also a [`HubEvent::Problem`](crate::hub::HubEvent::Problem), once per change. Failed polls are retried
//! with [`Backoff`], so a wrong password never turns into a login storm. An odd value is logged once per
//! field; a call this firmware refuses (an API error on an optional section) is logged once and skipped.
//!
//! Knows nothing of MQTT.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::backoff::Backoff;
use crate::config::IkuaiConfig;
use crate::hub::{BridgeGone, DeviceSpec, EntitySpec, HubEvent, HubEvents};
use crate::ikuai::client::{Client, ClientError};
use crate::ikuai::mapping::{RouterReadings, SlowReadings, router_device, router_device_id, router_view};
use crate::ikuai::model::{DataList, LanClient, Oddities, parse, parse_owned};
use crate::ikuai::presence::{
    ClientFilter, ClientInfo, Presence, client_device, client_device_id, client_state, merge_lists, merge_rows,
};

/// Clients asked for per call (`limit: "offset,count"`). A page's rows are the poll's largest transient
/// memory (about 1 KB each as parsed), so pages are kept small; a call costs the router little.
const CLIENT_PAGE: usize = 250;
/// Pages read at most per list and poll (a bound on a router that keeps saying there are more: 50,000
/// clients).
const CLIENT_PAGES_MAX: usize = 200;

/// The router's link as the bridge last heard it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    /// Nothing said yet.
    Unknown,
    Up,
    /// Down, and why (a kind from [`failure_kind`]).
    Down(&'static str),
}

fn failure_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::LoginRefused { .. } => "login",
        ClientError::Certificate { .. } => "certificate",
        ClientError::Timeout { .. } => "timeout",
        ClientError::Unreachable { .. } => "unreachable",
        ClientError::Http { .. } => "http",
        ClientError::Malformed { .. } => "malformed",
        ClientError::Api { .. } => "api",
        ClientError::SessionRejected { .. } => "session",
    }
}

/// One router's poller and what the bridge has been told.
pub struct Poller {
    cfg: IkuaiConfig,
    client: Client,
    events: HubEvents,
    device_id: String,
    filter: ClientFilter,
    presence: Presence,
    slow: SlowReadings,
    next_slow: Option<Instant>,
    /// Every entity the router device has had a value for (kept when a value goes missing).
    entities: Vec<EntitySpec>,
    announced: Option<DeviceSpec>,
    sent_state: Map<String, Value>,
    link: Link,
    logged_odd: HashSet<String>,
    logged_api: HashSet<String>,
    login_backoff: Backoff,
    net_backoff: Backoff,
}

impl Poller {
    pub fn new(cfg: IkuaiConfig, client: Client, events: HubEvents) -> Self {
        let poll = Duration::from_secs(cfg.poll_interval_s.max(1));
        Poller {
            device_id: router_device_id(&cfg),
            filter: ClientFilter::new(&cfg),
            presence: Presence::from_config(&cfg),
            slow: SlowReadings::default(),
            next_slow: None,
            entities: Vec::new(),
            announced: None,
            sent_state: Map::new(),
            link: Link::Unknown,
            logged_odd: HashSet::new(),
            logged_api: HashSet::new(),
            // A refused login waits long (minutes at most); a network failure retries sooner, but never
            // faster than it would poll.
            login_backoff: Backoff::new(Duration::from_secs(2), Duration::from_secs(300)),
            net_backoff: Backoff::new(Duration::from_secs(1), poll.max(Duration::from_secs(60))),
            cfg,
            client,
            events,
        }
    }

    /// One poll; the time to wait before the next one.
    pub async fn poll_once(&mut self) -> Result<Duration, BridgeGone> {
        let started = Instant::now();
        let slow_due = self.next_slow.is_none_or(|t| t <= started);
        match self.fetch(slow_due).await {
            Ok((readings, clients)) => {
                if slow_due {
                    self.next_slow = Some(started + Duration::from_secs(self.cfg.slow_poll_interval_s));
                }
                self.publish(readings, clients, Instant::now()).await?;
                self.login_backoff.reset();
                self.net_backoff.reset();
                let interval = Duration::from_secs(self.cfg.poll_interval_s.max(1));
                Ok(interval.saturating_sub(started.elapsed()))
            }
            Err(e) => {
                self.next_slow = None;
                self.failed(&e).await?;
                Ok(if e.is_login_refused() { self.login_backoff.next_delay() } else { self.net_backoff.next_delay() })
            }
        }
    }

    /// The result of an optional section: its data, nothing when this router refuses the call (logged
    /// once), or the failure of the whole poll.
    fn optional<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &str,
        result: Result<Map<String, Value>, ClientError>,
    ) -> Result<Option<T>, ClientError> {
        match result {
            Ok(data) => match parse::<T>(&data) {
                Ok(v) => Ok(Some(v)),
                Err(e) => {
                    self.log_api_once(what, &format!("unreadable answer ({e}); skipped"));
                    Ok(None)
                }
            },
            Err(e @ ClientError::Api { .. }) => {
                self.log_api_once(what, &format!("{e}; skipped"));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn log_api_once(&mut self, what: &str, message: &str) {
        if self.logged_api.insert(what.to_owned()) {
            tracing::warn!(router = %self.cfg.id, call = what, "{message} (logged once)");
        } else {
            tracing::debug!(router = %self.cfg.id, call = what, "{message}");
        }
    }

    async fn fetch(
        &mut self,
        slow_due: bool,
    ) -> Result<(RouterReadings, Option<(Vec<ClientInfo>, Oddities)>), ClientError> {
        let cfg = &self.cfg;
        let client = &self.client;
        let mut home_types = vec!["sysstat", "snapshoot", "ac_status", "dhcp_addrpool_num", "ether_info"];
        let mut home_extra = Vec::new();
        if cfg.app_traffic {
            home_types.extend(["app_flow", "app_historical"]);
            home_extra.push(("minute", json!("60")));
        }
        let (home, iface, dns_cache, qos, clients) = tokio::join!(
            client.call("homepage", &home_types, &home_extra),
            client.call("monitor_iface", &["iface_check", "iface_stream"], &[]),
            client.call("dns", &["dns_cache"], &[]),
            async { if cfg.qos_traffic { Some(client.call("monitor_l7qos", &["data"], &[]).await) } else { None } },
            async {
                if cfg.track_clients {
                    let (v4, v6) = tokio::join!(
                        fetch_clients(client, "monitor_lanip", false),
                        fetch_clients(client, "monitor_lanipv6", true)
                    );
                    Some((v4, v6))
                } else {
                    None
                }
            },
        );
        // The homepage is what every router answers: any failure there fails the poll.
        let home = parse(&home?).unwrap_or_default();
        let mut readings = RouterReadings { home, ..RouterReadings::default() };
        readings.iface = self.optional("monitor_iface", iface)?.unwrap_or_default();
        readings.dns_cache = self.optional("dns/dns_cache", dns_cache)?.unwrap_or_default();
        if let Some(qos) = qos {
            readings.qos = self.optional("monitor_l7qos", qos)?.unwrap_or_default();
        }
        let clients = match clients {
            Some((v4, v6)) => {
                let (v4, mut odd) = self.optional_rows("monitor_lanip", v4)?;
                let (v6, odd6) = self.optional_rows("monitor_lanipv6", v6)?;
                odd.append(odd6);
                Some((merge_lists(v4, v6), odd))
            }
            None => None,
        };
        if slow_due {
            self.fetch_slow().await?;
        }
        readings.slow = self.slow.clone();
        Ok((readings, clients))
    }

    fn optional_rows(&mut self, what: &str, rows: Result<ClientList, ClientError>) -> Result<ClientList, ClientError> {
        match rows {
            Ok(rows) => Ok(rows),
            Err(e @ ClientError::Api { .. }) => {
                self.log_api_once(what, &format!("{e}; skipped"));
                Ok(ClientList::default())
            }
            Err(e) => Err(e),
        }
    }

    /// DNS configuration and proxies, groups, routes and VLANs; a section the router refuses keeps its
    /// last value.
    async fn fetch_slow(&mut self) -> Result<(), ClientError> {
        let c = &self.client;
        let (dns_config, dns_proxy, ipgroup, ipgroupv6, macgroupv6) = tokio::join!(
            c.call("dns", &["dns_config"], &[]),
            c.call("dns", &["dns_proxy", "dns_proxy_total"], &[]),
            c.call("ipgroup", &["data"], &[]),
            c.call("ipgroupv6", &["data"], &[]),
            c.call("macgroupv6", &["data"], &[]),
        );
        let (static_rt, table, table6, vlan) = tokio::join!(
            c.call("static_rt", &["data"], &[]),
            c.call("static_rt_table", &["data"], &[]),
            c.call("static_rt_table", &["data6"], &[]),
            c.call("vlan", &["data"], &[]),
        );
        macro_rules! keep {
            ($field:ident, $what:literal, $result:expr) => {
                if let Some(v) = self.optional($what, $result)? {
                    self.slow.$field = v;
                }
            };
        }
        keep!(dns_config, "dns/dns_config", dns_config);
        keep!(dns_proxy, "dns/dns_proxy", dns_proxy);
        keep!(ipgroup, "ipgroup", ipgroup);
        keep!(ipgroupv6, "ipgroupv6", ipgroupv6);
        keep!(macgroupv6, "macgroupv6", macgroupv6);
        keep!(static_rt, "static_rt", static_rt);
        keep!(route_table, "static_rt_table/data", table);
        keep!(route_table6, "static_rt_table/data6", table6);
        keep!(vlan, "vlan", vlan);
        Ok(())
    }

    /// Tells the bridge what a good poll found.
    async fn publish(
        &mut self,
        readings: RouterReadings,
        clients: Option<(Vec<ClientInfo>, Oddities)>,
        now: Instant,
    ) -> Result<(), BridgeGone> {
        let recovered = self.link != Link::Up;
        let (listed, mut odd) = match clients {
            Some((listed, odd)) => (Some(listed), odd),
            None => (None, Oddities::default()),
        };
        let listed: Option<Vec<_>> = listed.map(|l| l.into_iter().filter(|c| self.filter.allows(&c.mac)).collect());
        let view = router_view(&self.cfg, &readings, &mut odd);

        // Entities stay once they had a value; a value gone missing is `null` (unknown).
        for e in view.entities {
            match self.entities.iter_mut().find(|x| x.key == e.key) {
                Some(known) => *known = e,
                None => self.entities.push(e),
            }
        }
        let mut spec = router_device(&self.cfg, &readings, self.entities.clone());
        if let Some(old) = &self.announced {
            spec.model = spec.model.or_else(|| old.model.clone());
            spec.sw_version = spec.sw_version.or_else(|| old.sw_version.clone());
            spec.serial_number = spec.serial_number.or_else(|| old.serial_number.clone());
            if spec.connections.is_empty() {
                spec.connections = old.connections.clone();
            }
        }
        if self.announced.as_ref() != Some(&spec) {
            self.events.device(spec.clone()).await?;
            self.announced = Some(spec);
        }
        let mut values = view.values;
        for e in &self.entities {
            values.entry(e.key.clone()).or_insert(Value::Null);
        }
        let delta: Map<String, Value> = if recovered {
            values.clone()
        } else {
            values
                .iter()
                .filter(|(k, v)| self.sent_state.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        if !delta.is_empty() {
            self.events.state(&self.device_id, delta).await?;
        }
        self.sent_state.extend(values);

        if recovered {
            self.events.availability(&self.device_id, true).await?;
        }
        if let Some(listed) = listed {
            self.publish_clients(listed, now, recovered).await?;
        }
        if recovered {
            tracing::info!(router = %self.cfg.id, "router reachable; polling every {} s", self.cfg.poll_interval_s);
            self.events.link(true, None).await?;
            self.link = Link::Up;
        }
        for (name, raw) in odd.drain() {
            if self.logged_odd.insert(name.clone()) {
                tracing::warn!(router = %self.cfg.id, field = %name, value = %raw, "odd value from the router skipped (logged once per field)");
            }
        }
        Ok(())
    }

    async fn publish_clients(
        &mut self,
        listed: Vec<ClientInfo>,
        now: Instant,
        recovered: bool,
    ) -> Result<(), BridgeGone> {
        let changes = self.presence.update(now, listed);
        for mac in &changes.pruned {
            let device = client_device_id(&self.cfg, mac);
            tracing::info!(router = %self.cfg.id, client = %mac, "client unseen for {} days: removed", self.cfg.prune_clients_after_days);
            self.events.send(HubEvent::DeviceRemoved { device }).await?;
        }
        let new: HashSet<&str> = changes.new.iter().map(String::as_str).collect();
        let macs: Vec<String> =
            if recovered { self.presence.macs().cloned().collect() } else { changes.changed.clone() };
        for mac in macs {
            let (Some(info), Some(home)) = (self.presence.info(&mac), self.presence.is_home(&mac)) else { continue };
            let device = client_device_id(&self.cfg, &mac);
            let spec = client_device(&self.cfg, info);
            let state = client_state(&self.cfg, info, home);
            let first = new.contains(mac.as_str());
            // The bridge is told of every change, so what it last got for a client follows from what presence
            // knew before this update (or knows now, if the client did not change): no copy is kept here.
            let (spec_changed, state_changed) = match changes.previous.get(&mac) {
                _ if first => (true, true),
                Some((before, was_home)) => {
                    (client_device(&self.cfg, before) != spec, client_state(&self.cfg, before, *was_home) != state)
                }
                None => (false, false),
            };
            if spec_changed {
                self.events.device(spec).await?;
            }
            if recovered || state_changed {
                self.events.state(&device, state).await?;
            }
            if first || recovered {
                self.events.availability(&device, true).await?;
            }
        }
        Ok(())
    }

    /// Tells the bridge a poll failed, once per kind of failure.
    async fn failed(&mut self, e: &ClientError) -> Result<(), BridgeGone> {
        let kind = failure_kind(e);
        let reason = e.to_string();
        if self.link == Link::Down(kind) {
            tracing::debug!(router = %self.cfg.id, "poll failed again: {reason}");
            return Ok(());
        }
        tracing::warn!(router = %self.cfg.id, "poll failed: {reason}");
        if self.link == Link::Up || self.link == Link::Unknown {
            if self.announced.is_some() {
                self.events.availability(&self.device_id, false).await?;
            }
            // Every client presence knows was announced when it was first seen.
            let clients: Vec<String> = self.presence.macs().cloned().collect();
            for mac in clients {
                self.events.availability(&client_device_id(&self.cfg, &mac), false).await?;
            }
        }
        self.events.link(false, Some(reason.clone())).await?;
        if matches!(kind, "login" | "certificate") {
            self.events.problem(Some(&self.device_id), reason).await?;
        }
        self.link = Link::Down(kind);
        Ok(())
    }
}

/// One client list merged by MAC, and what was odd in it.
type ClientList = (BTreeMap<String, ClientInfo>, Oddities);

/// Every row of a client list, page by page; each page is merged by MAC and dropped, so that thousands of
/// raw rows are never held together.
async fn fetch_clients(client: &Client, func: &str, is_v6: bool) -> Result<ClientList, ClientError> {
    let (mut by_mac, mut odd) = ClientList::default();
    let mut read = 0;
    for page in 0..CLIENT_PAGES_MAX {
        let limit = json!(format!("{},{CLIENT_PAGE}", page * CLIENT_PAGE));
        let data = client.call(func, &["data", "total"], &[("limit", limit)]).await?;
        let list: DataList<LanClient> = parse_owned(data).unwrap_or_default();
        let got = list.rows().len();
        merge_rows(&mut by_mac, list.rows(), is_v6, &mut odd);
        read += got;
        let total = list.total.get().map(|t| t.0 as usize).unwrap_or(0);
        if got < CLIENT_PAGE || read >= total {
            break;
        }
    }
    Ok((by_mac, odd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubHandle;
    use crate::secret::Secret;
    use crate::sim::ikuai::{Fault, SimOptions, SimRouter};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    struct Running {
        events: mpsc::Receiver<(usize, HubEvent)>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        async fn next(&mut self) -> HubEvent {
            match tokio::time::timeout(Duration::from_secs(20), self.events.recv()).await {
                Ok(Some((_, e))) => e,
                other => panic!("no event: {other:?}"),
            }
        }

        /// Skips events until one matches.
        async fn until(&mut self, what: &str, pred: impl Fn(&HubEvent) -> bool) -> HubEvent {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, self.events.recv()).await {
                    Ok(Some((_, e))) if pred(&e) => return e,
                    Ok(Some(_)) => continue,
                    _ => panic!("timed out waiting for {what}"),
                }
            }
        }

        async fn stop(self) {
            self.shutdown.cancel();
            let _ = self.task.await;
        }
    }

    fn cfg(sim: &SimRouter, password: &str) -> IkuaiConfig {
        IkuaiConfig {
            id: "home".into(),
            url: sim.url(),
            password: Some(Secret::new(password)),
            poll_interval_s: 1,
            slow_poll_interval_s: 60,
            timeout_s: 2,
            ..IkuaiConfig::default()
        }
    }

    fn start(cfg: IkuaiConfig) -> Running {
        let (tx, rx) = mpsc::channel(10_000);
        let (_cmd_tx, cmd_rx) = mpsc::channel(4);
        let hub = HubHandle { id: "ikuai_home".into(), events: HubEvents::new(0, tx), commands: cmd_rx };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(crate::ikuai::run(cfg, hub, shutdown.clone()));
        Running { events: rx, shutdown, task }
    }

    fn is_state_of(e: &HubEvent, device: &str) -> bool {
        matches!(e, HubEvent::State { device: d, .. } if d == device)
    }

    #[tokio::test]
    async fn first_poll_announces_and_reports_the_router() {
        let sim = SimRouter::start(SimOptions { password: "pw-1234".into(), ..SimOptions::default() }).await.unwrap();
        let mut run = start(IkuaiConfig { track_clients: true, ..cfg(&sim, "pw-1234") });
        let HubEvent::Device(router) = run.next().await else { panic!("first event is not the router device") };
        assert_eq!(router.id, "ikuai_home");
        assert_eq!(router.model.as_deref(), Some("IK-Q3000"));
        for key in
            ["cpu_load", "online_users", "connections", "wan1_connected", "static_routes", "vlans", "dns_proxies"]
        {
            assert!(router.entity(key).is_some(), "no {key}");
        }
        let HubEvent::State { device, values } = run.next().await else { panic!("no state") };
        assert_eq!(device, "ikuai_home");
        assert_eq!(
            (&values["cpu_load"], &values["online_users"], &values["connections"]),
            (&json!(9.45), &json!(7), &json!(158))
        );
        assert_eq!(run.next().await, HubEvent::Availability { device: "ikuai_home".into(), online: true });
        // The document's two clients, each a device with its tracker, home.
        let mut homes = HashSet::new();
        while homes.len() < 2 {
            if let HubEvent::State { device, values } = run.next().await
                && device != "ikuai_home"
            {
                assert_eq!(values["presence"], "home");
                homes.insert(device);
            }
        }
        assert!(homes.contains("ikuai_home_366e2413ba6e") && homes.contains("ikuai_home_607ea4779ff9"));
        run.until("link up", |e| matches!(e, HubEvent::Link { up: true, .. })).await;
        // Later polls send only what changed (uptime and totals move; CPU does not).
        let HubEvent::State { values, .. } = run.until("a second router state", |e| is_state_of(e, "ikuai_home")).await
        else {
            unreachable!()
        };
        assert!(values.contains_key("uptime") && !values.contains_key("cpu_load"), "{values:?}");
        run.stop().await;
    }

    #[tokio::test]
    async fn session_expiry_mid_run_is_invisible() {
        let sim = SimRouter::start(SimOptions { password: "pw-1234".into(), ..SimOptions::default() }).await.unwrap();
        let mut run = start(cfg(&sim, "pw-1234"));
        run.until("link up", |e| matches!(e, HubEvent::Link { up: true, .. })).await;
        sim.expire_sessions();
        for _ in 0..2 {
            let e = run
                .until("a state", |e| {
                    is_state_of(e, "ikuai_home") || matches!(e, HubEvent::Availability { .. } | HubEvent::Link { .. })
                })
                .await;
            assert!(is_state_of(&e, "ikuai_home"), "{e:?}");
        }
        let stats = sim.stats();
        assert_eq!(stats.logins_ok, 2);
        assert!(stats.calls_unauthenticated >= 1);
        run.stop().await;
    }

    #[tokio::test]
    async fn router_down_goes_offline_and_comes_back_with_fresh_states() {
        let sim = SimRouter::start(SimOptions { password: "pw-1234".into(), ..SimOptions::default() }).await.unwrap();
        let mut run = start(cfg(&sim, "pw-1234"));
        run.until("link up", |e| matches!(e, HubEvent::Link { up: true, .. })).await;
        sim.go_down().await;
        let e = run.until("offline", |e| matches!(e, HubEvent::Availability { .. })).await;
        assert_eq!(e, HubEvent::Availability { device: "ikuai_home".into(), online: false });
        let HubEvent::Link { up: false, reason } = run.next().await else { panic!("no link down") };
        assert!(reason.unwrap().contains("unreachable"));
        sim.come_up().await.unwrap();
        let HubEvent::State { values, .. } = run.until("fresh state", |e| is_state_of(e, "ikuai_home")).await else {
            unreachable!()
        };
        // All of it again, not only what changed.
        assert_eq!(values["cpu_load"], json!(9.45));
        assert_eq!(run.next().await, HubEvent::Availability { device: "ikuai_home".into(), online: true });
        run.stop().await;
    }

    #[tokio::test]
    async fn wrong_password_is_one_problem_and_few_logins() {
        let sim = SimRouter::start(SimOptions { password: "pw-1234".into(), ..SimOptions::default() }).await.unwrap();
        let mut run = start(cfg(&sim, "wrong-pw"));
        let HubEvent::Link { up: false, reason } = run.next().await else { panic!("no link down") };
        assert!(reason.unwrap().contains("login as `admin` refused"));
        let HubEvent::Problem { device, reason } = run.next().await else { panic!("no problem") };
        assert_eq!(device.as_deref(), Some("ikuai_home"));
        assert!(reason.contains("router `home`") && reason.contains("check the username and password"), "{reason}");
        // Polling every second, but logins back off: a few attempts, one problem.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let failed = sim.stats().logins_failed;
        assert!((2..=5).contains(&failed), "{failed} login attempts in about 6 s");
        assert!(run.events.try_recv().is_err(), "more events after the first problem");
        // The password is fixed on the router side: back up on its own.
        sim.set_password("wrong-pw");
        run.until("link up", |e| matches!(e, HubEvent::Link { up: true, .. })).await;
        run.stop().await;
    }

    #[tokio::test]
    async fn a_client_leaves_after_the_grace_period() {
        let sim = SimRouter::start(SimOptions { password: "pw-1234".into(), ..SimOptions::default() }).await.unwrap();
        let mut run = start(IkuaiConfig { track_clients: true, consider_home_s: 4, ..cfg(&sim, "pw-1234") });
        let redmi = "ikuai_home_366e2413ba6e";
        run.until(
            "redmi home",
            |e| matches!(e, HubEvent::State { device, values } if device == redmi && values["presence"] == "home"),
        )
        .await;
        sim.remove_client("36:6e:24:13:ba:6e");
        let removed = Instant::now();
        let e = run.until("redmi away", |e| matches!(e, HubEvent::State { device, values } if device == redmi && values["presence"] == "not_home")).await;
        // Not before the grace period, less the time since the last poll that listed it (a poll or two).
        assert!(removed.elapsed() >= Duration::from_secs(2), "{e:?} after {:?}", removed.elapsed());
        run.stop().await;
    }

    #[tokio::test]
    async fn only_clients_that_changed_are_sent_again() {
        let options = SimOptions { password: "pw-1234".into(), clients: Some(3), ..SimOptions::default() };
        let sim = SimRouter::start(options).await.unwrap();
        let mut run = start(IkuaiConfig { track_clients: true, ..cfg(&sim, "pw-1234") });
        run.until("link up", |e| matches!(e, HubEvent::Link { up: true, .. })).await;
        // Two more polls: the router's state moves, the clients' do not.
        for _ in 0..2 {
            let e = run.until("a poll", |e| is_state_of(e, "ikuai_home") || !matches!(e, HubEvent::State { .. })).await;
            assert!(is_state_of(&e, "ikuai_home"), "{e:?}");
        }
        // One client is renamed on the router: its device and its state, nothing of the others.
        let synthetic = crate::sim::ikuai::SimClient::synthetic(2);
        let device = client_device_id(&cfg(&sim, "pw-1234"), &synthetic.mac);
        sim.add_client(crate::sim::ikuai::SimClient::new(&synthetic.mac, "10.20.0.2", "renamed"));
        let HubEvent::Device(spec) = run.until("a client event", |e| !is_state_of(e, "ikuai_home")).await else {
            panic!("the renamed client's device is not announced first")
        };
        assert_eq!((spec.id.as_str(), spec.name.as_str()), (device.as_str(), "renamed phone"));
        let HubEvent::State { device: d, values } = run.next().await else { panic!("no state after the device") };
        assert_eq!((d.as_str(), &values["attributes"]["hostname"]), (device.as_str(), &json!("renamed")));
        let e =
            run.until("the next poll", |e| is_state_of(e, "ikuai_home") || !matches!(e, HubEvent::State { .. })).await;
        assert!(is_state_of(&e, "ikuai_home"), "{e:?}");
        run.stop().await;
    }

    #[tokio::test]
    async fn thousands_of_clients_are_read_page_by_page() {
        let options = SimOptions { password: "pw-1234".into(), clients: Some(3000), ..SimOptions::default() };
        let sim = SimRouter::start(options).await.unwrap();
        let mut run = start(IkuaiConfig { track_clients: true, ..cfg(&sim, "pw-1234") });
        let mut devices = HashSet::new();
        let mut homes = HashSet::new();
        while homes.len() < 3000 {
            match run.next().await {
                HubEvent::Device(d) if d.id != "ikuai_home" => {
                    devices.insert(d.id.clone());
                }
                HubEvent::State { device, values } if device != "ikuai_home" && values["presence"] == "home" => {
                    homes.insert(device);
                }
                _ => {}
            }
        }
        assert_eq!(devices.len(), 3000);
        // 2999 IPv4 rows in 12 pages of 250 (the last short), 750 IPv6 rows in 3 (the total reached), merged
        // by MAC.
        let by_func = sim.stats().calls_by_func;
        // (Four IPv4 calls per IPv6 call, however many polls have run by now.)
        let (v4, v6) = (by_func["monitor_lanip"], by_func["monitor_lanipv6"]);
        assert!(v6 >= 3 && v4 == 4 * v6, "{by_func:?}");
        run.stop().await;
    }

    #[tokio::test]
    async fn hanging_router_times_out_to_offline() {
        let sim = SimRouter::start(SimOptions { password: "pw-1234".into(), ..SimOptions::default() }).await.unwrap();
        let mut run = start(IkuaiConfig { timeout_s: 1, ..cfg(&sim, "pw-1234") });
        run.until("link up", |e| matches!(e, HubEvent::Link { up: true, .. })).await;
        sim.set_fault(Some(Fault::Hang));
        let HubEvent::Link { reason, .. } =
            run.until("link down", |e| matches!(e, HubEvent::Link { up: false, .. })).await
        else {
            unreachable!()
        };
        assert!(reason.unwrap().contains("did not answer within 1 s"));
        sim.set_fault(None);
        run.until("link up", |e| matches!(e, HubEvent::Link { up: true, .. })).await;
        run.stop().await;
    }

    #[tokio::test]
    async fn commands_are_refused_clearly() {
        let sim = SimRouter::start(SimOptions { password: "pw-1234".into(), ..SimOptions::default() }).await.unwrap();
        let (tx, _rx) = mpsc::channel(100);
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let hub = HubHandle { id: "ikuai_home".into(), events: HubEvents::new(0, tx), commands: cmd_rx };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(crate::ikuai::run(cfg(&sim, "pw-1234"), hub, shutdown.clone()));
        let (reply, outcome) = crate::hub::CommandReply::channel();
        let cmd = crate::hub::Command {
            id: 1,
            device: "ikuai_home".into(),
            op: crate::hub::CommandOp::Set,
            changes: vec![("cpu_load".into(), json!(1))],
            reply,
        };
        cmd_tx.send(cmd).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), outcome).await.unwrap().unwrap();
        assert!(matches!(outcome, Err(crate::hub::CommandError::Invalid(_))), "{outcome:?}");
        shutdown.cancel();
        let _ = task.await;
    }
}
