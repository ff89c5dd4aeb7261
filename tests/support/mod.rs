//! Test harness: a real broker (Mosquitto when `HUB2MQTT_TEST_BROKER=mosquitto`, else hub2mqtt's embedded
//! broker in a child process), the bridge in-process or as a child process, and [`Watcher`], an
//! independent MQTT client that records what a subscriber sees.
//!
//! Everything listens on 127.0.0.1 on ports chosen free at start. Waits are event-driven with generous
//! timeouts; nothing here asserts on timing.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hub2mqtt::config::Config;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The default wait for anything to happen.
pub const WAIT: Duration = Duration::from_secs(20);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique within this test process.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

mod ports;
pub use ports::{free_port, wait_until_listening};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Mosquitto,
    Embedded,
}

/// Certificate files for a TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse clients without a certificate signed by `ca`.
    pub require_client_cert: bool,
}

/// A broker process on 127.0.0.1, killed when dropped. With TLS, a second listener on `tls_port`:
/// Mosquitto's own, or for the embedded broker (built without TLS) a TLS-terminating proxy in this process.
pub struct TestBroker {
    pub port: u16,
    pub kind: BrokerKind,
    pub tls_port: Option<u16>,
    tls: Option<TlsFiles>,
    proxy: Option<JoinHandle<()>>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// (Mosquitto only) a password file: anonymous clients are refused.
    password_file: Option<PathBuf>,
}

impl TestBroker {
    /// Mosquitto if `HUB2MQTT_TEST_BROKER=mosquitto`, else the embedded broker.
    pub fn start() -> TestBroker {
        Self::launch(None)
    }

    /// The kind of broker `HUB2MQTT_TEST_BROKER` asks for.
    pub fn wanted_kind() -> BrokerKind {
        match std::env::var("HUB2MQTT_TEST_BROKER").as_deref() {
            Ok("mosquitto") => BrokerKind::Mosquitto,
            _ => BrokerKind::Embedded,
        }
    }

    /// Mosquitto that lets in only `user` with `password` (a password file made with `mosquitto_passwd`).
    /// `None` with the embedded broker, which has no authentication.
    pub fn start_with_password(user: &str, password: &str) -> Option<TestBroker> {
        if Self::wanted_kind() != BrokerKind::Mosquitto {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("passwd");
        let status = Command::new(mosquitto_passwd_binary())
            .arg("-b")
            .arg("-c")
            .arg(&file)
            .arg(user)
            .arg(password)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mosquitto_passwd (installed with Mosquitto)");
        assert!(status.success(), "mosquitto_passwd failed");
        let mut broker = TestBroker {
            port: free_port(),
            kind: BrokerKind::Mosquitto,
            tls_port: None,
            tls: None,
            proxy: None,
            child: None,
            dir,
            password_file: Some(file),
        };
        broker.spawn();
        Some(broker)
    }

    /// Like [`TestBroker::start`], plus a TLS listener (call from within a Tokio runtime).
    pub fn start_with_tls(tls: TlsFiles) -> TestBroker {
        Self::launch(Some(tls))
    }

    fn launch(tls: Option<TlsFiles>) -> TestBroker {
        let kind = Self::wanted_kind();
        let mut broker = TestBroker {
            port: free_port(),
            kind,
            tls_port: tls.as_ref().map(|_| free_port()),
            tls,
            proxy: None,
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            password_file: None,
        };
        broker.spawn();
        if let (Some(tls), Some(tls_port)) = (&broker.tls, broker.tls_port) {
            if kind == BrokerKind::Embedded {
                broker.proxy = Some(tls_proxy::start(tls, tls_port, broker.port));
            }
            wait_until_listening(tls_port, "the TLS listener");
        }
        broker
    }

    /// `mqtts://127.0.0.1:<tls port>`.
    pub fn tls_url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.tls_port.expect("a broker started with TLS"))
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = match self.kind {
            BrokerKind::Mosquitto => {
                let conf = self.dir.path().join("mosquitto.conf");
                let log = self.dir.path().join("mosquitto.log");
                let mut text = format!(
                    "per_listener_settings false\nallow_anonymous true\npersistence false\nlog_dest file {}\nlistener {} 127.0.0.1\n",
                    log.display(),
                    self.port,
                );
                if let Some(file) = &self.password_file {
                    text = text.replace("allow_anonymous true", "allow_anonymous false");
                    text.push_str(&format!("password_file {}\n", file.display()));
                }
                if let (Some(tls), Some(port)) = (&self.tls, self.tls_port) {
                    text.push_str(&format!(
                        "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                        tls.ca.display(),
                        tls.cert.display(),
                        tls.key.display(),
                        tls.require_client_cert
                    ));
                }
                std::fs::write(&conf, text).expect("write mosquitto.conf");
                Command::new(mosquitto_binary())
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("HUB2MQTT_TEST_BROKER=mosquitto but mosquitto cannot be started (is it installed?)")
            }
            BrokerKind::Embedded => Command::new(env!("CARGO_BIN_EXE_hub2mqtt"))
                .args(["broker", "--listen", &format!("127.0.0.1:{}", self.port)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the embedded broker"),
        };
        self.child = Some(child);
        wait_until_listening(self.port, "the test broker");
    }

    /// Kills the broker (SIGKILL: no goodbye to clients, retained messages lost).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn();
    }

    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill();
        if let Some(proxy) = self.proxy.take() {
            proxy.abort();
        }
    }
}

/// A TLS-terminating proxy: TLS on one port, plain MQTT to the broker behind it.
mod tls_proxy {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;
    use tokio_rustls::TlsAcceptor;

    use super::TlsFiles;

    pub fn start(tls: &TlsFiles, port: u16, backend: u16) -> JoinHandle<()> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&tls.cert).expect("server cert").map(|c| c.expect("server cert")).collect();
        let key = PrivateKeyDer::from_pem_file(&tls.key).expect("server key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if tls.require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&tls.ca).expect("ca") {
                roots.add(c.expect("ca")).expect("ca");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let acceptor = TlsAcceptor::from(Arc::new(builder.with_single_cert(certs, key).expect("server config")));
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the TLS proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else { return };
                    let Ok(mut plain) = TcpStream::connect(("127.0.0.1", backend)).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        })
    }
}

fn mosquitto_passwd_binary() -> PathBuf {
    for candidate in ["/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("mosquitto_passwd")
}

fn mosquitto_binary() -> PathBuf {
    for candidate in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("mosquitto")
}

/// One message as a subscriber saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
    /// Arrival order at this watcher (0, 1, 2, ...).
    pub seq: usize,
}

impl Message {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The payload as JSON (panics with the payload if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.topic, self.text()))
    }
}

/// An independent MQTT client that records everything it receives on its filters, re-subscribing after
/// a broker restart.
///
/// Each filter passed to `expect*` has its own cursor: `expect("a")` then `expect("b")` finds `b` even if
/// it arrived before `a`. [`Watcher::skip_seen`] moves every cursor past what was seen so far.
pub struct Watcher {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Bytes, bool)>,
    seen: Vec<Message>,
    cursors: HashMap<String, usize>,
    floor: usize,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Connects and subscribes (QoS 0); returns once the subscription is acknowledged.
    pub async fn connect(broker: &TestBroker, filters: &[&str]) -> Watcher {
        Self::connect_port(broker.port, filters).await
    }

    /// Like [`Watcher::connect`], to any broker on 127.0.0.1.
    pub async fn connect_port(port: u16, filters: &[&str]) -> Watcher {
        Self::connect_as(port, None, filters).await
    }

    /// Like [`Watcher::connect_port`], logging in with a username and password.
    pub async fn connect_with_credentials(port: u16, user: &str, password: &str, filters: &[&str]) -> Watcher {
        Self::connect_as(port, Some((user, password)), filters).await
    }

    async fn connect_as(port: u16, credentials: Option<(&str, &str)>, filters: &[&str]) -> Watcher {
        let mut options = MqttOptions::new(unique("watcher"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5)).set_max_packet_size(4 << 20, 4 << 20);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let sub = client.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        // QoS 0, as Home Assistant and mosquitto_sub subscribe: the embedded broker replays
                        // every retained message to it (to a QoS 1 subscription only the first 100).
                        for f in &filters {
                            let _ = sub.subscribe(f.clone(), QoS::AtMostOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = tx.send((p.topic, p.payload, p.retain));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, ready_rx.recv()).await.expect("the watcher's subscription was not acknowledged");
        Watcher { client, rx, seen: Vec::new(), cursors: HashMap::new(), floor: 0, task }
    }

    fn push(&mut self, (topic, payload, retain): (String, Bytes, bool)) {
        let seq = self.seen.len();
        self.seen.push(Message { topic, payload, retain, seq });
    }

    fn drain(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.push(m);
        }
    }

    fn cursor(&self, filter: &str) -> usize {
        self.cursors.get(filter).copied().unwrap_or(0).max(self.floor)
    }

    /// Waits for the next message (after the cursor) on `filter` that satisfies `pred`; moves the cursor
    /// past it. Panics with what was seen on that filter if none comes within `timeout`.
    pub async fn expect_where(&mut self, filter: &str, pred: impl Fn(&Message) -> bool, timeout: Duration) -> Message {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.drain();
            let start = self.cursor(filter);
            if let Some(i) =
                (start..self.seen.len()).find(|&i| rumqttc::matches(&self.seen[i].topic, filter) && pred(&self.seen[i]))
            {
                self.cursors.insert(filter.to_owned(), i + 1);
                return self.seen[i].clone();
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => self.push(m),
                Ok(None) => panic!("the watcher stopped"),
                Err(_) => {
                    let seen: Vec<String> = self.seen[start..]
                        .iter()
                        .filter(|m| rumqttc::matches(&m.topic, filter))
                        .map(|m| format!("{} {}", m.topic, m.text()))
                        .collect();
                    panic!(
                        "no matching message on {filter} within {timeout:?}; seen since cursor:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
    }

    /// The next message on `filter` after the cursor.
    pub async fn expect(&mut self, filter: &str, timeout: Duration) -> Message {
        self.expect_where(filter, |_| true, timeout).await
    }

    /// Waits until the latest message on the exact `topic` satisfies `pred` (a subscriber's current view).
    pub async fn expect_latest(&mut self, topic: &str, pred: impl Fn(&Message) -> bool, timeout: Duration) -> Message {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(m) = self.latest(topic)
                && pred(&m)
            {
                return m;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => self.push(m),
                Ok(None) => panic!("the watcher stopped"),
                Err(_) => panic!(
                    "the latest message on {topic} did not match within {timeout:?}: {:?}",
                    self.latest(topic).map(|m| m.text())
                ),
            }
        }
    }

    /// The last message seen on the exact topic.
    pub fn latest(&mut self, topic: &str) -> Option<Message> {
        self.drain();
        self.seen.iter().rev().find(|m| m.topic == topic).cloned()
    }

    /// Every message seen so far on `filter`.
    pub fn all(&mut self, filter: &str) -> Vec<Message> {
        self.drain();
        self.seen.iter().filter(|m| rumqttc::matches(&m.topic, filter)).cloned().collect()
    }

    /// Messages on `filter` that arrived after the message with sequence number `seq`, without waiting.
    pub fn after(&mut self, seq: usize, filter: &str) -> Vec<Message> {
        self.drain();
        self.seen.iter().skip(seq + 1).filter(|m| rumqttc::matches(&m.topic, filter)).cloned().collect()
    }

    /// Every message (on any filter) from sequence number `first` on, without waiting.
    pub fn since(&mut self, first: usize) -> Vec<Message> {
        self.drain();
        self.seen.get(first..).map(<[Message]>::to_vec).unwrap_or_default()
    }

    /// The sequence number the next message will get.
    pub fn next_seq(&mut self) -> usize {
        self.drain();
        self.seen.len()
    }

    /// Moves every cursor past everything seen so far.
    pub fn skip_seen(&mut self) {
        self.drain();
        self.floor = self.seen.len();
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload).await.expect("watcher publish");
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A configuration for tests: the given broker, a unique client id, state in a fresh temp dir.
pub fn test_config(broker: &TestBroker, state_dir: &Path) -> Config {
    let mut config = Config::default();
    config.mqtt.url = broker.url();
    config.mqtt.client_id = unique("hub2mqtt-test");
    config.mqtt.keep_alive_s = 5;
    config.bridge.state_dir = state_dir.to_path_buf();
    config
}

/// The bridge running in this process.
pub struct RunningBridge {
    stop: CancellationToken,
    task: JoinHandle<Result<(), hub2mqtt::app::AppError>>,
}

impl RunningBridge {
    /// Stops it the way a signal does, and waits until it has said `offline` and disconnected.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the bridge did not stop within the wait")
            .expect("the bridge task panicked")
            .expect("the bridge returned an error");
    }
}

/// Starts an assembled app (so tests can `add_hub` first).
pub fn start_app(app: hub2mqtt::app::App) -> RunningBridge {
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run(stop.clone()));
    RunningBridge { stop, task }
}

/// Starts the bridge for `config` with its configured hubs.
pub fn start_bridge(config: Config) -> RunningBridge {
    start_app(hub2mqtt::app::App::new(config))
}

/// The `hub2mqtt` binary running as a child process with a config file; killed when dropped.
pub struct BridgeProcess {
    pub child: Child,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
}

impl BridgeProcess {
    /// Writes `toml` to a file in `dir` and starts `hub2mqtt run` with it (logs to a file in `dir`).
    pub fn start(dir: &Path, toml: &str, log_level: &str) -> BridgeProcess {
        Self::start_with_env(dir, toml, log_level, &[])
    }

    /// Like [`BridgeProcess::start`], with extra environment variables.
    pub fn start_with_env(dir: &Path, toml: &str, log_level: &str, env: &[(&str, &str)]) -> BridgeProcess {
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, toml).expect("write config");
        let log_path = dir.join("hub2mqtt.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_hub2mqtt"))
            .args(["run", "--config"])
            .arg(&config_path)
            .args(["--log-level", log_level])
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start hub2mqtt");
        BridgeProcess { child, config_path, log_path }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its resident memory, threads and open file descriptors, from `/proc` (Linux).
    pub fn usage(&self) -> Option<ProcUsage> {
        ProcUsage::of(self.child.id())
    }

    /// Sends a signal (`"TERM"`, `"KILL"`, `"INT"`).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit (at most `timeout`) and returns its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }
}

/// What a process holds, read from `/proc/<pid>` (Linux only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcUsage {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    pub threads: u64,
    pub fds: u64,
}

impl ProcUsage {
    pub fn of(pid: u32) -> Option<ProcUsage> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some(ProcUsage { rss_kib: field("VmRSS:")?, threads: field("Threads:")?, fds })
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
