//! The fault-injection soak: the `hub2mqtt` binary (a child process, so its memory, threads and file
//! descriptors can be read from `/proc` and a panic shows in its log) against the simulated iKuai router,
//! the simulated eWeLink cloud and a real broker, while a client sends commands continuously (switches,
//! channels, lights, fans, covers, timers, and commands that must be refused) and faults happen at random,
//! seeded times: the cloud WebSocket dropped, a handshake refused with 406, the access token expired, acks
//! delayed past the command timeout, devices going offline and back, the router's session expired, the
//! router unreachable, malformed router answers, the broker killed and restarted, Home Assistant's birth.
//!
//! At the end: every command is accounted for (its change shown in a published state, or a
//! `command_failed` event with a reason); once the faults have stopped and the links are back, every
//! published state matches the simulators' truth within 30 s; no panic; threads, file descriptors and memory
//! back to their steady level; logins, handshakes and HTTP calls within the cloud's published limits.
//!
//! The bridge runs with its production delays (the binary cannot be tuned), so what is measured is what
//! users get. `HUB2MQTT_SOAK_SECS` sets the length of the fault phase (default 90 s, the CI run);
//! `HUB2MQTT_SOAK_SEED` repeats a run. A second test runs the app in-process on its own runtime to count its
//! Tokio tasks, which no `/proc` file shows.

mod support;

#[path = "soak/faults.rs"]
mod faults;
#[path = "soak/ledger.rs"]
mod ledger;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hub2mqtt::config::IkuaiConfig;
use hub2mqtt::ikuai::client::Client as RouterClient;
use hub2mqtt::ikuai::mapping::{RouterReadings, router_view};
use hub2mqtt::ikuai::model::{Oddities, parse};
use hub2mqtt::secret::Secret;
use hub2mqtt::sim::ewelink::{SimCloud, ids};
use hub2mqtt::sim::ikuai::{Fault as RouterFault, SimRouter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use faults::{Fault, Schedule};
use ledger::{BASE, Ledger};
use support::{BridgeProcess, ProcUsage, TestBroker, Watcher};

/// Length of the fault phase without `HUB2MQTT_SOAK_SECS`.
const CI_SECS: u64 = 90;
/// Commands without faults before the baseline is taken.
const WARMUP: Duration = Duration::from_secs(20);
/// The eWeLink command timeout configured (`command_timeout_s`).
const COMMAND_TIMEOUT_S: u64 = 4;
/// Acks are delayed this long during an ack-delay fault: past the command timeout.
const ACK_DELAY: Duration = Duration::from_secs(6);
/// A device commanded while acks are delayed is not commanded again for this long (so that a late push of
/// the old command cannot arrive after the new one's).
const HOLD_AFTER_DELAYED: Duration = Duration::from_secs(12);
/// The router's poll interval configured.
const POLL_S: u64 = 2;
const SLOW_POLL_S: u64 = 30;
const ROUTER_ID: &str = "soak";
const ROUTER_DEVICE: &str = "ikuai_soak";

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn config_toml(broker: &TestBroker, router: &SimRouter, cloud: &SimCloud, api: &str, dir: &std::path::Path) -> String {
    let o = cloud.options();
    format!(
        r#"[mqtt]
url = "{mqtt}"
client_id = "{client_id}"
keep_alive_s = 5

[bridge]
state_dir = "{state}"

[[ikuai]]
id = "{ROUTER_ID}"
url = "{router}"
username = "admin"
password = "admin"
poll_interval_s = {POLL_S}
slow_poll_interval_s = {SLOW_POLL_S}
timeout_s = 3
track_clients = true

[[ewelink]]
id = "soak"
api = "{api}"
region = "eu"
base_url = "{cloud}"
app_id = "{app_id}"
app_secret = "{app_secret}"
email = "{email}"
password = "{password}"
command_timeout_s = {COMMAND_TIMEOUT_S}
"#,
        mqtt = broker.url(),
        client_id = support::unique("soak"),
        state = dir.join("state").display(),
        router = router.url(),
        cloud = cloud.base_url(),
        app_id = o.app_id,
        app_secret = o.app_secret,
        email = o.email,
        password = o.password,
    )
}

/// What the soak saw besides the ledger.
#[derive(Default)]
struct Seen {
    /// The watcher's sequence number of the last `online` on `bridge/state`.
    online_seq: Option<usize>,
    /// `(birth sequence number, re-announcement seen)`.
    births: Vec<(usize, bool)>,
    link_downs: BTreeMap<String, usize>,
    hub_problems: BTreeMap<String, usize>,
    bridge_info: Option<Value>,
    /// Devices with a published state.
    states: BTreeSet<String>,
}

/// A windowed fault's end.
enum Restore {
    AckDelay,
    DeviceOnline(String),
    RouterUp,
    RouterHealthy,
}

struct Soak {
    rng: StdRng,
    broker: TestBroker,
    router: SimRouter,
    cloud: SimCloud,
    watcher: Watcher,
    bridge: BridgeProcess,
    ledger: Ledger,
    schedule: Schedule,
    seen: Seen,
    cursor: usize,
    timeline: Vec<(Instant, Restore)>,
    ack_delay_until: Option<Instant>,
    offline: BTreeSet<String>,
    router_down: bool,
    router_faulty: bool,
    next_command: Instant,
    next_fault: Instant,
    usage: Vec<(Instant, ProcUsage)>,
    started: Instant,
    dir: tempfile::TempDir,
}

impl Soak {
    /// Reads what the watcher received since the last call into the ledger and `seen`.
    fn absorb(&mut self) {
        for m in self.watcher.since(self.cursor) {
            self.cursor = m.seq + 1;
            let topic = m.topic.as_str();
            if topic == "hub2mqtt/bridge/event" {
                let Ok(event) = serde_json::from_slice::<Value>(&m.payload) else { continue };
                match event["type"].as_str() {
                    Some("command_failed") => self.ledger.on_failure(&event),
                    Some("hub_link") if event["up"] == false => {
                        *self.seen.link_downs.entry(event["hub"].as_str().unwrap_or("?").to_owned()).or_default() += 1
                    }
                    Some("hub_problem") => {
                        *self.seen.hub_problems.entry(event["hub"].as_str().unwrap_or("?").to_owned()).or_default() += 1
                    }
                    _ => {}
                }
            } else if topic == "hub2mqtt/bridge/state" {
                if m.text() == "online" {
                    self.seen.online_seq = Some(m.seq);
                }
            } else if topic == "hub2mqtt/bridge/info" {
                self.seen.bridge_info = serde_json::from_slice(&m.payload).ok();
            } else if topic.starts_with("homeassistant/") && topic.ends_with("/config") {
                for (seq, seen) in &mut self.seen.births {
                    *seen |= m.seq > *seq;
                }
            } else if let Some(device) = topic.strip_prefix("hub2mqtt/")
                && !device.contains('/')
                && !m.payload.is_empty()
                && let Ok(state) = serde_json::from_slice::<Value>(&m.payload)
            {
                self.ledger.on_state(device, m.seq, &state);
                if !self.seen.states.contains(device) {
                    self.seen.states.insert(device.to_owned());
                }
            }
        }
        self.ledger.on_frames(&self.cloud);
    }

    fn hubs_up(&self) -> bool {
        let hubs = self.seen.bridge_info.as_ref().and_then(|i| i["hubs"].as_object());
        hubs.is_some_and(|h| h.len() == 2 && h.values().all(|up| up == true))
    }

    /// One turn of the loop: absorb, end windowed faults that are due, maybe command, maybe inject.
    async fn turn(&mut self, commands: bool, faults: bool) {
        self.absorb();
        let now = Instant::now();
        let due: Vec<Restore> = {
            let (due, later): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.timeline).into_iter().partition(|(t, _)| *t <= now);
            self.timeline = later;
            due.into_iter().map(|(_, r)| r).collect()
        };
        for r in due {
            self.restore(r).await;
        }
        if commands && now >= self.next_command {
            self.command().await;
            self.next_command = now + Duration::from_millis(self.rng.random_range(150..550));
        }
        if faults && now >= self.next_fault {
            let fault = self.schedule.next_fault(&mut self.rng);
            self.inject(fault).await;
            let gap = self.schedule.next_gap(&mut self.rng);
            println!("  next fault in {gap:.1?}");
            self.next_fault = Instant::now() + gap;
        }
        if self.usage.last().is_none_or(|(t, _)| t.elapsed() >= Duration::from_secs(10))
            && let Some(u) = self.bridge.usage()
        {
            self.usage.push((Instant::now(), u));
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }

    async fn run_for(&mut self, d: Duration, commands: bool, faults: bool) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.turn(commands, faults).await;
        }
    }

    /// Turns the loop (without new commands or faults) until `done`, at most `max`; whether it happened.
    async fn until(&mut self, max: Duration, done: impl Fn(&Soak) -> bool) -> bool {
        let until = Instant::now() + max;
        loop {
            self.turn(false, false).await;
            if done(self) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
        }
    }

    async fn command(&mut self) {
        let now = Instant::now();
        let ledger = &self.ledger;
        let free = |d: &str| ledger.is_free(d, now);
        let Some(planned) = ledger::plan(&mut self.rng, &self.cloud, ROUTER_DEVICE, &free) else { return };
        // A stale published state (a push lost with a dropped socket, until the socket is back and the state
        // re-read) that already shows the change could not confirm it: command something else this turn.
        if self.ledger.already_shown(&planned) {
            return;
        }
        let hold = self.ack_delay_until.filter(|t| *t > now).map(|_| now + HOLD_AFTER_DELAYED);
        let seq = self.watcher.next_seq();
        self.watcher.publish(&planned.topic, planned.payload.clone(), false).await;
        self.ledger.record(planned, seq, hold);
    }

    async fn inject(&mut self, fault: Fault) {
        let secs = |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo * 1000..=hi * 1000));
        println!("[{:>6.1}s] fault {fault:?}", self.started.elapsed().as_secs_f64());
        match fault {
            Fault::WsDrop => self.cloud.drop_sockets(),
            Fault::Handshake406 => {
                self.cloud.fail_handshakes_406(1);
                self.cloud.drop_sockets();
            }
            Fault::TokenExpired => {
                self.cloud.expire_access_tokens();
                if self.rng.random_bool(0.5) {
                    self.cloud.drop_sockets();
                }
            }
            Fault::AckDelay => {
                if self.ack_delay_until.is_none() {
                    let until = Instant::now() + secs(&mut self.rng, 5, 15);
                    self.cloud.set_ack_delay(ACK_DELAY);
                    self.ack_delay_until = Some(until);
                    self.ledger.hold_outstanding(Instant::now() + HOLD_AFTER_DELAYED);
                    self.timeline.push((until, Restore::AckDelay));
                }
            }
            Fault::DeviceOffline => {
                let candidates: Vec<String> = ledger::commanded_devices()
                    .into_iter()
                    .filter_map(|d| d.strip_prefix("ewelink_").map(str::to_owned))
                    .filter(|id| id != ids::OFFLINE && !self.offline.contains(id))
                    .collect();
                if !candidates.is_empty() {
                    let id = candidates[self.rng.random_range(0..candidates.len())].clone();
                    self.cloud.set_online(&id, false);
                    self.offline.insert(id.clone());
                    let until = Instant::now() + secs(&mut self.rng, 3, 15);
                    self.timeline.push((until, Restore::DeviceOnline(id)));
                }
            }
            Fault::RouterSessionExpired => self.router.expire_sessions(),
            Fault::RouterDown => {
                if !self.router_down {
                    self.router.go_down().await;
                    self.router_down = true;
                    let until = Instant::now() + secs(&mut self.rng, 3, 20);
                    self.timeline.push((until, Restore::RouterUp));
                }
            }
            Fault::RouterMalformed => {
                if !self.router_faulty {
                    let fault =
                        if self.rng.random_bool(0.7) { RouterFault::MalformedJson } else { RouterFault::Http500 };
                    self.router.set_fault(Some(fault));
                    self.router_faulty = true;
                    let until = Instant::now() + secs(&mut self.rng, 3, 10);
                    self.timeline.push((until, Restore::RouterHealthy));
                }
            }
            // Boxed: the kill turns the loop while it waits.
            Fault::BrokerKill => Box::pin(self.kill_broker()).await,
            Fault::HaBirth => {
                let seq = self.watcher.next_seq();
                self.watcher.publish("homeassistant/status", "online", false).await;
                self.seen.births.push((seq, false));
            }
        }
    }

    async fn restore(&mut self, r: Restore) {
        match r {
            Restore::AckDelay => {
                self.cloud.set_ack_delay(Duration::ZERO);
                self.ack_delay_until = None;
            }
            Restore::DeviceOnline(id) => {
                self.cloud.set_online(&id, true);
                self.offline.remove(&id);
            }
            Restore::RouterUp => {
                self.router.come_up().await.expect("the router comes back on its port");
                self.router_down = false;
            }
            Restore::RouterHealthy => {
                self.router.set_fault(None);
                self.router_faulty = false;
            }
        }
    }

    async fn restore_all(&mut self) {
        for (_, r) in std::mem::take(&mut self.timeline) {
            self.restore(r).await;
        }
    }

    /// Kills the broker once no command is in flight (a broker without persistence loses whatever it
    /// holds: that is not the bridge's to account for), starts it again, and waits for the bridge.
    async fn kill_broker(&mut self) {
        let quiet = self.until(Duration::from_secs(60), |s| s.ledger.outstanding() == 0).await;
        if !quiet {
            println!("  (commands still outstanding after 60 s; killing the broker anyway)");
        }
        let before = self.watcher.next_seq();
        self.broker.kill();
        let down = Duration::from_millis(self.rng.random_range(1000..5000));
        self.run_for(down, false, false).await;
        self.broker.start_again();
        let back = self.until(Duration::from_secs(120), |s| s.seen.online_seq.is_some_and(|q| q >= before)).await;
        assert!(back, "the bridge did not come back to the restarted broker within 120 s:\n{}", self.bridge.log());
    }

    /// The router's values that do not move between two reads, read independently of the bridge.
    async fn router_truth(&self) -> Map<String, Value> {
        let cfg = IkuaiConfig {
            id: ROUTER_ID.into(),
            url: self.router.url(),
            password: Some(Secret::new("admin")),
            track_clients: true,
            ..IkuaiConfig::default()
        };
        let client = RouterClient::new(&cfg).expect("router client");
        let read = async || {
            let types = ["sysstat", "snapshoot", "ac_status", "dhcp_addrpool_num", "ether_info"];
            let home = client.call("homepage", &types, &[]).await.expect("homepage");
            let iface = client.call("monitor_iface", &["iface_check", "iface_stream"], &[]).await.expect("iface");
            let dns = client.call("dns", &["dns_cache"], &[]).await.expect("dns");
            let readings = RouterReadings {
                home: parse(&home).unwrap_or_default(),
                iface: parse(&iface).unwrap_or_default(),
                dns_cache: parse(&dns).unwrap_or_default(),
                ..RouterReadings::default()
            };
            router_view(&cfg, &readings, &mut Oddities::default()).values
        };
        let a = read().await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let b = read().await;
        a.into_iter().filter(|(k, v)| b.get(k) == Some(v) && !v.is_object() && !v.is_null()).collect()
    }

    /// Published states that differ from the simulators' truth (empty when everything matches).
    fn mismatches(&mut self, router_truth: &Map<String, Value>) -> Vec<String> {
        let mut out = Vec::new();
        let w = &mut self.watcher;
        for id in self.cloud.device_ids() {
            let Some((state, _)) = ledger::truth(&self.cloud, &id) else { continue };
            compare(w, &format!("{BASE}/ewelink_{id}"), &state, &mut out);
            let online = self.cloud.device(&id).is_some_and(|d| d.online);
            expect_text(
                w,
                &format!("{BASE}/ewelink_{id}/availability"),
                if online { "online" } else { "offline" },
                &mut out,
            );
        }
        compare(w, &format!("{BASE}/{ROUTER_DEVICE}"), router_truth, &mut out);
        expect_text(w, &format!("{BASE}/{ROUTER_DEVICE}/availability"), "online", &mut out);
        for mac in self.router.client_macs() {
            let device = format!("{ROUTER_DEVICE}_{}", mac.replace(':', ""));
            let home = Map::from_iter([("presence".to_owned(), json!("home"))]);
            compare(w, &format!("{BASE}/{device}"), &home, &mut out);
            expect_text(w, &format!("{BASE}/{device}/availability"), "online", &mut out);
        }
        out
    }

    /// Median of `n` samples of the bridge's usage, one a second.
    async fn steady_usage(&mut self, n: usize) -> ProcUsage {
        let mut samples = Vec::new();
        for _ in 0..n {
            self.run_for(Duration::from_secs(1), false, false).await;
            samples.push(self.bridge.usage().expect("/proc of the bridge"));
        }
        let median = |f: fn(&ProcUsage) -> u64| {
            let mut v: Vec<u64> = samples.iter().map(f).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        ProcUsage { rss_kib: median(|u| u.rss_kib), threads: median(|u| u.threads), fds: median(|u| u.fds) }
    }

    fn save_for_failure(&self, what: &str) -> String {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let ledger: Vec<String> = self.ledger.entries.iter().map(|e| e.line()).collect();
        let _ = std::fs::write(dir.join("soak-ledger.txt"), ledger.join("\n"));
        let _ = std::fs::write(dir.join("soak-bridge.log"), self.bridge.log());
        format!("{what}\n(the full ledger and the bridge's log are in {})", dir.display())
    }
}

/// Notes every key of `expected` that the latest state on `topic` does not have.
fn compare(w: &mut Watcher, topic: &str, expected: &Map<String, Value>, out: &mut Vec<String>) {
    let state = w.latest(topic).and_then(|m| serde_json::from_slice::<Value>(&m.payload).ok()).unwrap_or(Value::Null);
    for (k, v) in expected {
        if state.get(k) != Some(v) {
            out.push(format!("{topic}: {k} is {} but the simulator says {v}", state.get(k).unwrap_or(&Value::Null)));
        }
    }
}

fn expect_text(w: &mut Watcher, topic: &str, expected: &str, out: &mut Vec<String>) {
    let got = w.latest(topic).map(|m| m.text());
    if got.as_deref() != Some(expected) {
        out.push(format!("{topic}: {got:?}, the simulator says {expected}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_soak() {
    let secs = env_u64("HUB2MQTT_SOAK_SECS").unwrap_or(CI_SECS);
    let seed = env_u64("HUB2MQTT_SOAK_SEED").unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let api = if seed % 2 == 0 { "v2" } else { "v1" };
    let broker = TestBroker::start();
    println!(
        "soak: seed {seed} (HUB2MQTT_SOAK_SEED={seed} repeats it), eWeLink API {api}, {secs} s of faults, broker {:?}",
        broker.kind
    );
    if broker.kind == support::BrokerKind::Embedded {
        println!(
            "soak: the embedded broker is killed and restarted in place of Mosquitto (HUB2MQTT_TEST_BROKER=mosquitto for Mosquitto)"
        );
    }
    let router = SimRouter::start(hub2mqtt::sim::ikuai::SimOptions { clients: Some(6), ..Default::default() })
        .await
        .expect("router simulator");
    let cloud = SimCloud::start(hub2mqtt::sim::ewelink::SimOptions { hb_interval_s: 20, ..Default::default() })
        .await
        .expect("cloud simulator");
    let watcher = Watcher::connect(&broker, &["hub2mqtt/#", "homeassistant/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = config_toml(&broker, &router, &cloud, api, dir.path());
    let bridge = BridgeProcess::start(dir.path(), &toml, "info,hub2mqtt=debug");
    let mean_gap = Duration::from_secs(if secs <= 300 { 6 } else { 20 });
    let schedule = Schedule::new(&mut rng, mean_gap);
    let now = Instant::now();
    let mut s = Soak {
        rng,
        broker,
        router,
        cloud,
        watcher,
        bridge,
        ledger: Ledger::default(),
        schedule,
        seen: Seen::default(),
        cursor: 0,
        timeline: Vec::new(),
        ack_delay_until: None,
        offline: BTreeSet::new(),
        router_down: false,
        router_faulty: false,
        next_command: now,
        next_fault: now,
        usage: Vec::new(),
        started: now,
        dir,
    };

    // Up: both hubs linked, every commanded device announced.
    let devices = ledger::commanded_devices();
    let ready =
        s.until(Duration::from_secs(60), |s| s.hubs_up() && devices.iter().all(|d| s.watcher_has_state(d))).await;
    assert!(ready, "the bridge did not come up within 60 s:\n{}", s.bridge.log());

    // Warm-up without faults, then the baseline.
    s.run_for(WARMUP, true, false).await;
    s.until(Duration::from_secs(30), |s| s.ledger.outstanding() == 0).await;
    let baseline = s.steady_usage(5).await;
    println!("soak: baseline after warm-up {baseline:?}");
    let cloud_at_start = s.cloud.counters();
    let router_at_start = s.router.stats();

    // Faults.
    let fault_phase = Instant::now();
    s.next_fault = Instant::now() + Duration::from_secs(2);
    s.run_for(Duration::from_secs(secs), true, true).await;
    let faulted_for = fault_phase.elapsed();
    s.restore_all().await;
    println!("[{:>6.1}s] faults stopped", s.started.elapsed().as_secs_f64());

    // Every command answered, the links back.
    s.until(Duration::from_secs(120), |s| s.ledger.outstanding() == 0).await;
    let links_from = Instant::now();
    let linked = s.until(Duration::from_secs(400), Soak::hubs_up).await;
    assert!(linked, "{}", s.save_for_failure(&format!("the hubs did not link again: {:?}", s.seen.bridge_info)));
    let relink = links_from.elapsed();

    // States match the simulators within 30 s.
    let router_truth = s.router_truth().await;
    assert!(router_truth.len() >= 10, "too few stable router values to compare: {router_truth:?}");
    let converge_from = Instant::now();
    let mut mismatches = s.mismatches(&router_truth);
    while !mismatches.is_empty() && converge_from.elapsed() < Duration::from_secs(30) {
        s.run_for(Duration::from_millis(500), false, false).await;
        mismatches = s.mismatches(&router_truth);
    }
    let converged = converge_from.elapsed();

    // Leaks: the bridge idle again, as at the baseline.
    let end = s.steady_usage(5).await;
    let elapsed = fault_phase.elapsed();
    let cloud_c = s.cloud.counters();
    let router_c = s.router.stats();
    s.absorb();

    // The report.
    println!(
        "soak: fault phase {faulted_for:.0?}; links back {relink:.1?} after the faults stopped; states matched after {converged:.1?}"
    );
    println!("soak: faults injected {:?}", s.schedule.injected);
    println!(
        "soak: {} commands; by kind (sent, confirmed, reported): {:?}",
        s.ledger.entries.len(),
        s.ledger.by_kind()
    );
    println!("soak: reported codes {:?}", s.ledger.codes());
    println!("soak: link downs {:?}, hub problems {:?}", s.seen.link_downs, s.seen.hub_problems);
    println!("soak: cloud counters {cloud_c:?}");
    println!("soak: router stats {router_c:?}");
    println!("soak: usage baseline {baseline:?}, end {end:?}");
    let series: Vec<String> = s
        .usage
        .iter()
        .map(|(t, u)| {
            format!("{:.0}s:{}KiB/{}t/{}fd", t.duration_since(s.started).as_secs_f64(), u.rss_kib, u.threads, u.fds)
        })
        .collect();
    println!("soak: usage every 10 s: {}", series.join(" "));

    // Every check, all reported together.
    let mut problems: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };

    // Every command accounted for.
    let unaccounted: Vec<String> = s.ledger.unaccounted().iter().map(|e| e.line()).collect();
    let total = s.ledger.entries.len();
    check(
        unaccounted.is_empty(),
        format!("{} of {total} commands unaccounted:\n{}", unaccounted.len(), unaccounted.join("\n")),
    );
    let unmatched = &s.ledger.unmatched_events;
    check(unmatched.is_empty(), format!("command_failed events for no command sent:\n{}", unmatched.join("\n")));
    check(total as u64 >= secs, format!("a few commands a second: only {total}"));

    // Home Assistant's births were answered.
    check(s.seen.births.iter().all(|(_, seen)| *seen), "a birth message was not answered with discovery".into());

    // States.
    check(mismatches.is_empty(), format!("states differ from the simulators after 30 s:\n{}", mismatches.join("\n")));

    // No panic, no crash, still running.
    let log = s.bridge.log();
    check(s.bridge.is_running(), "the bridge exited".into());
    for bad in ["panicked", "crashed", "stopped on its own"] {
        check(!log.contains(bad), format!("`{bad}` in the bridge's log"));
    }

    // Leaks.
    check(end.threads <= baseline.threads + 4, format!("threads {} → {}", baseline.threads, end.threads));
    check(end.fds <= baseline.fds + 8, format!("file descriptors {} → {}", baseline.fds, end.fds));
    let rss_limit = baseline.rss_kib + (baseline.rss_kib / 2).max(8 * 1024);
    check(
        end.rss_kib <= rss_limit,
        format!("memory {} KiB → {} KiB (limit {rss_limit})", baseline.rss_kib, end.rss_kib),
    );

    // Within the cloud's published limits, and the router not stormed.
    let minutes = elapsed.as_secs_f64() / 60.0;
    let ws_faults = (s.schedule.count(Fault::WsDrop)
        + s.schedule.count(Fault::Handshake406)
        + s.schedule.count(Fault::TokenExpired)) as u64;
    let handshakes = cloud_c.handshake_attempts - cloud_at_start.handshake_attempts;
    check(
        cloud_c.rate_violations == 0,
        format!("{} HTTP calls faster than 500 ms per endpoint or beyond 300 per 5 minutes", cloud_c.rate_violations),
    );
    check(
        cloud_c.bad_requests == 0,
        format!("the strict cloud refused {} requests as malformed", cloud_c.bad_requests),
    );
    check(cloud_c.heartbeat_kills == 0, "the cloud closed a socket for missing heartbeats".into());
    check(cloud_c.logins <= 1 + minutes.ceil() as u64, format!("{} logins in {minutes:.1} min", cloud_c.logins));
    check(handshakes <= 2 * (ws_faults + 1) + 2, format!("{handshakes} handshakes for {ws_faults} socket faults"));
    check(router_c.logins_failed == 0, format!("{} router logins refused", router_c.logins_failed));
    check(router_c.bad_requests == 0, format!("the router refused {} requests as malformed", router_c.bad_requests));
    check(router_c.max_in_flight <= 2, format!("{} calls in flight to the router at once", router_c.max_in_flight));
    let router_requests = router_c.requests - router_at_start.requests;
    let budget = (elapsed.as_secs() / POLL_S * 6 + elapsed.as_secs() / SLOW_POLL_S * 10) * 3 / 2 + 60;
    check(router_requests <= budget, format!("{router_requests} router requests in {elapsed:.0?} (budget {budget})"));
    assert!(problems.is_empty(), "{}", s.save_for_failure(&problems.join("\n")));

    // A clean stop.
    s.bridge.signal("TERM");
    assert_eq!(s.bridge.wait(Duration::from_secs(20)), Some(0), "{}", s.save_for_failure("exit code"));
    drop(s.dir);
}

impl Soak {
    fn watcher_has_state(&self, device: &str) -> bool {
        self.seen.states.contains(device)
    }
}

// ----- Tokio tasks: the app in-process, on a runtime of its own -----

mod tasks {
    //! `/proc` shows threads, descriptors and memory but not Tokio tasks, so this test runs the app
    //! in-process on a runtime of its own (the simulators and the broker client live on another) and counts
    //! that runtime's live tasks while each fault repeats. The eWeLink adapter gets short delays
    //! (`ewelink::run_with`) so that a fault and the recovery from it take seconds, not minutes.

    use std::time::Duration;

    use hub2mqtt::config::{EwelinkApi, EwelinkConfig, IkuaiConfig, Region};
    use hub2mqtt::ewelink::Tuning;
    use hub2mqtt::ewelink::pace::PaceRules;
    use hub2mqtt::ewelink::session::SessionTuning;
    use hub2mqtt::secret::Secret;
    use hub2mqtt::sim::ewelink::{SimCloud, ids};
    use hub2mqtt::sim::ikuai::{Fault as RouterFault, SimRouter};
    use serde_json::Value;
    use tokio::runtime::Runtime;
    use tokio_util::sync::CancellationToken;

    use super::support::{TestBroker, Watcher, test_config};

    /// Each fault is repeated this often between two counts; a task left behind per fault shows as a growth
    /// of at least this much.
    const REPEAT: usize = 3;

    fn fast() -> Tuning {
        Tuning {
            session: SessionTuning {
                reconnect: (Duration::from_millis(200), Duration::from_secs(2)),
                logged_in_elsewhere: (Duration::from_millis(300), Duration::from_secs(2)),
                needs_user: (Duration::from_secs(1), Duration::from_secs(5)),
                stable_after: Duration::from_secs(1),
                handshake_timeout: Duration::from_secs(5),
            },
            http_pace: PaceRules::cloud_http(),
            socket_wait: Duration::from_secs(1),
            startup_retry: (Duration::from_millis(500), Duration::from_secs(5)),
            min_login_gap: Duration::from_secs(1),
            confirm_after: Duration::from_millis(300),
            ..Tuning::default()
        }
    }

    struct Rig {
        app: Runtime,
        router: SimRouter,
        cloud: SimCloud,
        broker: TestBroker,
        watcher: Watcher,
        commands: usize,
    }

    impl Rig {
        fn tasks(&self) -> usize {
            self.app.metrics().num_alive_tasks()
        }

        /// Both hubs linked, the socket up, nothing moving: then the lowest of a few counts.
        async fn settled_count(&mut self) -> usize {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let info = self.watcher.latest("hub2mqtt/bridge/info").map(|m| m.json()).unwrap_or(Value::Null);
                let linked = info["hubs"].as_object().is_some_and(|h| h.len() == 2 && h.values().all(|v| v == true));
                if linked && self.cloud.open_sockets() == 1 {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "not linked again within 60 s: {info}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            let mut lowest = usize::MAX;
            for _ in 0..6 {
                lowest = lowest.min(self.tasks());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            lowest
        }

        async fn command(&mut self, device: &str, on: bool) {
            self.commands += 1;
            let payload = if on { "ON" } else { "OFF" };
            self.watcher.publish(&format!("hub2mqtt/ewelink_{device}/switch/set"), payload, false).await;
        }

        /// A few commands, and the wait for their outcome.
        async fn some_commands(&mut self) {
            for (i, d) in [ids::SWITCH, ids::SWITCH_UIID1, ids::SHARED].into_iter().enumerate() {
                self.command(d, (self.commands + i) % 2 == 0).await;
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }

        async fn fault(&mut self, name: &str) {
            match name {
                "ws drop" => self.cloud.drop_sockets(),
                "406" => {
                    self.cloud.fail_handshakes_406(1);
                    self.cloud.drop_sockets();
                }
                "token expired" => {
                    self.cloud.expire_access_tokens();
                    self.cloud.drop_sockets();
                }
                "ack delay" => {
                    self.cloud.set_ack_delay(Duration::from_millis(2500));
                    self.some_commands().await;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    self.cloud.set_ack_delay(Duration::ZERO);
                }
                "device offline" => {
                    self.cloud.set_online(ids::SWITCH, false);
                    self.command(ids::SWITCH, true).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    self.cloud.set_online(ids::SWITCH, true);
                }
                "commands over http" => {
                    self.cloud.refuse_sockets(true);
                    self.cloud.drop_sockets();
                    self.some_commands().await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.cloud.refuse_sockets(false);
                }
                "router session" => {
                    self.router.expire_sessions();
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                "router down" => {
                    self.router.go_down().await;
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                    self.router.come_up().await.unwrap();
                }
                "router malformed" => {
                    self.router.set_fault(Some(RouterFault::MalformedJson));
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                    self.router.set_fault(None);
                }
                "broker restart" => {
                    self.broker.kill();
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    self.broker.start_again();
                }
                "ha birth" => {
                    self.watcher.publish("homeassistant/status", "online", false).await;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                "commands" => self.some_commands().await,
                other => panic!("unknown fault {other}"),
            }
        }
    }

    #[test]
    fn tokio_tasks_return_to_their_level_after_every_fault() {
        let app = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("app-under-test")
            .enable_all()
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let router = SimRouter::start(hub2mqtt::sim::ikuai::SimOptions { clients: Some(4), ..Default::default() })
                .await
                .unwrap();
            let cloud = SimCloud::start(hub2mqtt::sim::ewelink::SimOptions { hb_interval_s: 5, ..Default::default() })
                .await
                .unwrap();
            let broker = TestBroker::start();
            let watcher = Watcher::connect(&broker, &["hub2mqtt/#", "homeassistant/#"]).await;
            let dir = tempfile::tempdir().unwrap();
            let mut config = test_config(&broker, dir.path());
            config.ikuai.push(IkuaiConfig {
                id: "tasks".into(),
                url: router.url(),
                password: Some(Secret::new("admin")),
                poll_interval_s: 1,
                slow_poll_interval_s: 5,
                timeout_s: 2,
                track_clients: true,
                ..IkuaiConfig::default()
            });
            let o = cloud.options().clone();
            let account = EwelinkConfig {
                id: "tasks".into(),
                api: EwelinkApi::V2,
                region: Region::Eu,
                base_url: Some(cloud.base_url()),
                app_id: o.app_id.clone(),
                app_secret: Some(Secret::new(o.app_secret.clone())),
                email: Some(o.email.clone()),
                password: Some(Secret::new(o.password.clone())),
                command_timeout_s: 2,
                ..EwelinkConfig::default()
            };
            let state_file = account.state_file(&config.bridge);
            // Built inside the app's runtime: the configured adapters are spawned right away.
            let mut assembled = {
                let _inside = app.enter();
                hub2mqtt::app::App::new(config)
            };
            let hub = assembled.add_hub("ewelink_tasks", "eWeLink tasks");
            let stop = CancellationToken::new();
            let adapter_stop = CancellationToken::new();
            let app_task = app.spawn(assembled.run(stop.clone()));
            let adapter =
                app.spawn(hub2mqtt::ewelink::run_with(account, state_file, hub, adapter_stop.clone(), fast()));
            let mut rig = Rig { app, router, cloud, broker, watcher, commands: 0 };

            rig.some_commands().await;
            let baseline = rig.settled_count().await;
            let mut growth = Vec::new();
            for fault in [
                "commands",
                "ws drop",
                "406",
                "token expired",
                "ack delay",
                "device offline",
                "commands over http",
                "router session",
                "router down",
                "router malformed",
                "broker restart",
                "ha birth",
            ] {
                let before = rig.settled_count().await;
                let mut after = before;
                for _ in 0..REPEAT {
                    rig.fault(fault).await;
                    after = rig.settled_count().await;
                }
                println!("tasks: {fault:<20} {before:>4} → {after:>4}");
                growth.push((fault, before, after));
            }
            let end = rig.settled_count().await;
            println!("tasks: baseline {baseline}, end {end}, commands {}", rig.commands);
            for (fault, before, after) in &growth {
                assert!(
                    after < &(before + REPEAT),
                    "{fault}: {before} tasks before {REPEAT} repetitions, {after} after"
                );
            }
            assert!(end <= baseline + 6, "tasks {baseline} at the start, {end} at the end");

            adapter_stop.cancel();
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(20), adapter).await;
            let stopped = tokio::time::timeout(Duration::from_secs(20), app_task).await;
            let Rig { app, .. } = rig;
            app.shutdown_background();
            assert!(matches!(stopped, Ok(Ok(Ok(())))), "the app did not stop cleanly: {stopped:?}");
        });
    }
}
