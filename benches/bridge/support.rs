//! What every scenario needs: a Mosquitto of its own, the bridge as a child process with its CPU time and
//! memory read from `/proc`, a subscriber that timestamps every message it sees, and small statistics.
//! Everything listens on 127.0.0.1 on ports chosen free at start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::mpsc;

/// Largest MQTT packet the bench's clients take (the bridge's own limit).
const MAX_PACKET: usize = 16 * 1024 * 1024;

#[path = "../../tests/support/ports.rs"]
mod ports;
pub use ports::{free_port, wait_until_listening};

/// The machine's 1-minute load average (from `/proc/loadavg`), noted with every figure.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// A Mosquitto of our own on 127.0.0.1, killed when dropped. Persistence off, no queue limit for online
/// subscribers (the default 1000 would drop part of a 10,000-message burst to a QoS 0 subscriber and the
/// bench could never see "the last" message).
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        let text = format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n\
             log_dest file {}\nlog_type error\nlog_type warning\nlistener {port} 127.0.0.1\n",
            dir.path().join("mosquitto.log").display()
        );
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let binary = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto cannot be started (is it installed?)");
        wait_until_listening(port, "mosquitto");
        Mosquitto { port, child, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// rumqttc options for a client of this broker.
    pub fn options(&self, client_id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", self.port);
        options.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(MAX_PACKET, MAX_PACKET);
        options
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as the subscriber saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub topic: String,
    pub payload: Bytes,
}

/// An independent MQTT client subscribed to `filters` (QoS 0), timestamping every message on arrival.
pub struct Subscriber {
    pub rx: mpsc::UnboundedReceiver<Seen>,
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connects and returns once the broker acknowledged the subscriptions.
    pub async fn connect(broker: &Mosquitto, id: &str, filters: &[&str]) -> Subscriber {
        let (client, mut eventloop) = AsyncClient::new(broker.options(id), 1024);
        for f in filters {
            client.subscribe(*f, QoS::AtMostOnce).await.expect("subscribe");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut acks_left = filters.len();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let seen = Seen { at: Instant::now(), topic: p.topic, payload: p.payload };
                        if tx.send(seen).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        acks_left = acks_left.saturating_sub(1);
                        if acks_left == 0
                            && let Some(r) = ready.take()
                        {
                            let _ = r.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("bench subscriber: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("the subscriber's SubAck within 10 s")
            .expect("the subscriber task");
        Subscriber { rx, client, task }
    }

    /// The next message, or `None` after `wait` without one.
    pub async fn next(&mut self, wait: Duration) -> Option<Seen> {
        tokio::time::timeout(wait, self.rx.recv()).await.ok().flatten()
    }

    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        self.task.abort();
    }
}

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User + system time, all threads (including finished ones).
    pub cpu: Duration,
    /// Peak resident set (VmHWM), bytes.
    pub peak_rss: u64,
    /// Resident set now (VmRSS), bytes.
    pub rss: u64,
    /// Of which anonymous memory (heap, stacks), bytes; the rest is mostly the binary's own pages.
    pub rss_anon: u64,
    pub threads: u64,
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn sample(pid: u32) -> ProcSample {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) closed by ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); utime is field 14, stime 15.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(14) + field(15);
    let hz = clock_ticks_per_second();
    let cpu = Duration::from_nanos(ticks * 1_000_000_000 / hz);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    ProcSample {
        cpu,
        peak_rss: kb("VmHWM:"),
        rss: kb("VmRSS:"),
        rss_anon: kb("RssAnon:"),
        threads: kb("Threads:") / 1024,
    }
}

/// The release binary next to this bench (Cargo builds it for benches; `CARGO_BIN_EXE_hub2mqtt`), or
/// `BENCH_BRIDGE_BINARY` (a build with symbols, for profiles).
pub fn bridge_binary() -> PathBuf {
    match std::env::var_os("BENCH_BRIDGE_BINARY") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_hub2mqtt")),
    }
}

/// `target/bench/`, where reports are written.
pub fn report_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_hub2mqtt"));
    // target/release/hub2mqtt → target/bench
    let target = exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench")
}

/// The bridge as a child process with a generated configuration; stopped (SIGTERM) when dropped.
pub struct BridgeProcess {
    pub child: Child,
    pub started: Instant,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl BridgeProcess {
    /// Writes `config` (TOML) and starts `hub2mqtt run --config <it>`; logs go to a file.
    /// `BENCH_BRIDGE_WRAPPER` (e.g. `heaptrack -o /tmp/h` or `valgrind --tool=callgrind`) prefixes the
    /// command, for profiles; CPU and memory figures are then the wrapper's.
    pub fn spawn(config: &str) -> BridgeProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).expect("write the bridge's config");
        // It holds the simulated router's password: readable by us only, or the bridge warns.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod the config");
        let log = dir.path().join("bridge.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let wrapper: Vec<String> = std::env::var("BENCH_BRIDGE_WRAPPER")
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bridge_binary());
                c
            }
            None => Command::new(bridge_binary()),
        };
        command.arg("run").arg("--config").arg(&path).current_dir(dir.path());
        // `BENCH_BRIDGE_LOG=debug` (any --log-level), for looking into a figure; the log is the bridge.log
        // below, kept while the process runs.
        if let Ok(level) = std::env::var("BENCH_BRIDGE_LOG") {
            command.arg("--log-level").arg(level);
        }
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("HUB2MQTT_") || k == "RUST_LOG") {
            command.env_remove(key);
        }
        let started = Instant::now();
        let child = command.stdout(Stdio::null()).stderr(log_file).spawn().expect("start hub2mqtt");
        BridgeProcess { child, started, log, _dir: dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn sample(&self) -> ProcSample {
        sample(self.pid())
    }

    /// Log lines at WARN or ERROR (a clean run has none, or the few the scenario provokes).
    pub fn warnings(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }

    /// SIGTERM, then up to 10 s for a clean exit, then SIGKILL.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// The bridge's configuration for a broker and some hub sections.
pub fn bridge_config(broker: &Mosquitto, hubs: &str) -> String {
    format!(
        "[mqtt]\nurl = \"{}\"\nclient_id = \"hub2mqtt-bench\"\nbase_topic = \"hub2mqtt\"\n\n[bridge]\nstate_dir = \"state\"\n\n{hubs}",
        broker.url()
    )
}

/// What a topic is, for counting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `homeassistant/<component>/<device>/<key>/config`
    Discovery { device: String },
    /// `hub2mqtt/<device>`
    State { device: String },
    /// `hub2mqtt/<device>/availability`
    Availability { device: String },
    /// Anything else (`hub2mqtt/bridge/...`, entity states).
    Other,
}

pub fn classify(topic: &str) -> Kind {
    if let Some(rest) = topic.strip_prefix("homeassistant/")
        && rest.ends_with("/config")
    {
        let device = rest.split('/').nth(1).unwrap_or_default().to_owned();
        return Kind::Discovery { device };
    }
    if let Some(rest) = topic.strip_prefix("hub2mqtt/") {
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            ["bridge", ..] => return Kind::Other,
            [device] => return Kind::State { device: (*device).to_owned() },
            [device, "availability"] => return Kind::Availability { device: (*device).to_owned() },
            _ => {}
        }
    }
    Kind::Other
}

/// Counts of a message stream: per kind, and how many repeated the previous payload of their topic.
#[derive(Debug, Default)]
pub struct Tally {
    last: HashMap<String, Bytes>,
    pub messages: u64,
    pub discovery: u64,
    pub state: u64,
    pub availability: u64,
    pub other: u64,
    /// Same payload as the previous message on the same topic: a publish that carried no change.
    pub duplicates: u64,
    pub bytes: u64,
}

impl Tally {
    /// Remembers payloads without counting (what was retained before the window opened).
    pub fn prime(&mut self, seen: &Seen) {
        self.last.insert(seen.topic.clone(), seen.payload.clone());
    }

    pub fn count(&mut self, seen: &Seen) {
        self.messages += 1;
        self.bytes += seen.payload.len() as u64;
        match classify(&seen.topic) {
            Kind::Discovery { .. } => self.discovery += 1,
            Kind::State { .. } => self.state += 1,
            Kind::Availability { .. } => self.availability += 1,
            Kind::Other => self.other += 1,
        }
        if self.last.get(&seen.topic) == Some(&seen.payload) {
            self.duplicates += 1;
        }
        self.last.insert(seen.topic.clone(), seen.payload.clone());
    }

    /// Messages that carried a change.
    pub fn changes(&self) -> u64 {
        self.messages - self.duplicates
    }
}

/// Percentile (0–100) of sorted values, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    percentile(&v, 50.0)
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.1} ms") }
}

/// Megabytes (10^6 bytes, the stricter reading of the targets' "MB").
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
