//! Security as users rely on it:
//!
//! - a full session of the `hub2mqtt` binary at trace level (a router, two eWeLink accounts on API v1 and
//!   v2, MQTT with a username and password, logins, token refreshes, session renewals, a 406, failed
//!   commands) leaks no secret into its log, onto any MQTT topic, or into `check-config`'s output: not the
//!   MQTT password, the router's password, its md5 hash or the login's `pass` field, any `sess_key` the
//!   router issued, the eWeLink passwords and app secrets, nor any access or refresh token the cloud issued
//!   (all read off the wire by a recording proxy, so none is missed), in plain, JSON-escaped, Debug-escaped
//!   or URL-encoded spelling;
//! - the token state files a real session writes are readable by their owner only;
//! - MQTT username/password against a Mosquitto password file: the right one works, a wrong one is a clear
//!   error retried with backoff, not a crash loop;
//! - certificates toward the cloud are always checked: an `https` `base_url` with a self-signed certificate
//!   fails with a reason that says so, and there is no option to turn the check off. (Toward a router the
//!   check is off only with `insecure_tls`: tests/ikuai_client.rs, `https_certificates_are_checked_unless_insecure_tls`.)

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hub2mqtt::sim::ewelink::{SimCloud, ids};
use hub2mqtt::sim::ikuai::SimRouter;
use serde_json::Value;
use support::{BridgeProcess, TestBroker, WAIT, Watcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LONG: Duration = Duration::from_secs(45);

/// A TCP proxy on 127.0.0.1 that records every byte both ways (plain HTTP: what went over the wire).
struct TapProxy {
    port: u16,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl TapProxy {
    async fn start(backend: SocketAddr) -> TapProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let wire = Arc::new(Mutex::new(Vec::new()));
        let tap = wire.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let Ok(server) = TcpStream::connect(backend).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, tap.clone()));
                tokio::spawn(pump(sr, cw, tap.clone()));
            }
        });
        TapProxy { port, wire }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.wire.lock().unwrap()).into_owned()
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    tap: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tap.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// Every value following `marker` up to a character not in `[0-9A-Za-z_-]` (e.g. `sess_key=`, `"at":"`).
fn values_after(text: &str, marker: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .match_indices(marker)
        .map(|(i, _)| {
            text[i + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect()
        })
        .filter(|v: &String| v.len() >= 8)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A secret as it might be spelled in a log line or a JSON payload.
fn spellings(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap();
    let debug = format!("{secret:?}");
    let url = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut all =
        vec![secret.to_owned(), json[1..json.len() - 1].to_owned(), debug[1..debug.len() - 1].to_owned(), url];
    all.sort();
    all.dedup();
    all
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Waits for a `bridge/event` of `type` from `hub` matching `pred`.
async fn event(watcher: &mut Watcher, kind: &str, hub: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let (kind, hub) = (kind.to_owned(), hub.to_owned());
    watcher
        .expect_where(
            "hub2mqtt/bridge/event",
            move |m| {
                let e = m.json();
                e["type"] == kind.as_str() && e["hub"] == hub.as_str() && pred(&e)
            },
            LONG,
        )
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session_at_trace_level_leaks_no_secret() {
    let mqtt_user = "hub2mqtt";
    let mqtt_password = "Mqtt\"pw\\ü-9931-secret";
    let router_password = "Rtr\"pw\\ö-7731 secret";
    let (cloud_password_a, cloud_password_b) = ("Ew\"pass\\wörd-5521", "Second'pass-8812\\x");
    let (app_secret_a, app_secret_b) = ("AppSecretA-q9Z\"x\\1", "AppSecretB-k3Y/+=");

    let broker = match TestBroker::start_with_password(mqtt_user, mqtt_password) {
        Some(b) => b,
        None => {
            println!(
                "security: the embedded broker has no authentication; the MQTT password is still configured and searched for"
            );
            TestBroker::start()
        }
    };
    let mut watcher = match broker.kind {
        support::BrokerKind::Mosquitto => {
            Watcher::connect_with_credentials(broker.port, mqtt_user, mqtt_password, &["hub2mqtt/#", "homeassistant/#"])
                .await
        }
        support::BrokerKind::Embedded => Watcher::connect(&broker, &["hub2mqtt/#", "homeassistant/#"]).await,
    };
    let router = SimRouter::start(hub2mqtt::sim::ikuai::SimOptions {
        password: router_password.into(),
        clients: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let cloud_a = SimCloud::start(hub2mqtt::sim::ewelink::SimOptions {
        password: cloud_password_a.into(),
        app_secret: app_secret_a.into(),
        hb_interval_s: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    // Other devices than A's: device ids are unique across accounts.
    let cloud_b = SimCloud::start(hub2mqtt::sim::ewelink::SimOptions {
        password: cloud_password_b.into(),
        app_secret: app_secret_b.into(),
        hb_interval_s: 10,
        fixtures: false,
        extra_devices: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let issued_b = cloud_b.issue_session();
    let router_tap = TapProxy::start(router.addr()).await;
    let tap_a = TapProxy::start(cloud_a.addr()).await;
    let tap_b = TapProxy::start(cloud_b.addr()).await;

    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let (oa, ob) = (cloud_a.options().clone(), cloud_b.options().clone());
    let toml = format!(
        r#"[mqtt]
url = "{mqtt}"
client_id = "{client}"
username = "{mqtt_user}"
password = {mqtt_password}
keep_alive_s = 5

[bridge]
state_dir = "{state}"

[[ikuai]]
id = "sec"
url = "{router}"
username = "admin"
password = {router_password}
poll_interval_s = 1
slow_poll_interval_s = 5
timeout_s = 3
track_clients = true

[[ewelink]]
id = "a"
api = "v2"
base_url = "{base_a}"
app_id = "{app_a}"
app_secret = {secret_a}
email = "{email_a}"
password = {password_a}
command_timeout_s = 3

[[ewelink]]
id = "b"
api = "v1"
base_url = "{base_b}"
app_id = "{app_b}"
app_secret = {secret_b}
email = "{email_b}"
password = {password_b}
access_token = "{at_b}"
refresh_token = "{rt_b}"
api_key = "{apikey_b}"
command_timeout_s = 3
"#,
        mqtt = broker.url(),
        client = support::unique("sec"),
        mqtt_password = toml_str(mqtt_password),
        state = state_dir.display(),
        router = router_tap.url(),
        router_password = toml_str(router_password),
        base_a = tap_a.url(),
        app_a = oa.app_id,
        secret_a = toml_str(app_secret_a),
        email_a = oa.email,
        password_a = toml_str(cloud_password_a),
        base_b = tap_b.url(),
        app_b = ob.app_id,
        secret_b = toml_str(app_secret_b),
        email_b = ob.email,
        password_b = toml_str(cloud_password_b),
        at_b = issued_b.at,
        rt_b = issued_b.rt,
        apikey_b = issued_b.apikey,
    );
    let mut bridge = BridgeProcess::start(dir.path(), &toml, "trace");

    // Up: both accounts and the router linked.
    let linked = |m: &support::Message| {
        let hubs = &m.json()["hubs"];
        ["ikuai_sec", "ewelink_a", "ewelink_b"].iter().all(|h| hubs[h] == true)
    };
    watcher.expect_latest("hub2mqtt/bridge/info", linked, LONG).await;

    // Commands that work and commands that fail, on both accounts.
    for (device, cloud) in [(ids::SWITCH, &cloud_a), ("a000000001", &cloud_b)] {
        watcher.publish(&format!("hub2mqtt/ewelink_{device}/switch/set"), "ON", false).await;
        assert!(cloud.wait_until(LONG, |c| !c.updates_for(device).is_empty()).await, "{device}");
    }
    watcher.publish(&format!("hub2mqtt/ewelink_{}/switch/set", ids::OFFLINE), "ON", false).await;
    watcher.expect_where("hub2mqtt/bridge/event", |m| m.json()["code"] == "offline", LONG).await;

    // Renewals: tokens refreshed (A), a 406 (B), the router's session expired and its password refused once.
    cloud_a.expire_access_tokens();
    cloud_a.drop_sockets();
    // (B: renewed through its refresh token, then refused with 406.)
    assert!(
        cloud_a.wait_until(LONG, |c| c.counters().refreshes >= 1 && c.open_sockets() == 1).await,
        "A refreshed and reconnected"
    );
    cloud_b.expire_access_tokens();
    cloud_b.fail_handshakes_406(1);
    cloud_b.drop_sockets();
    event(&mut watcher, "hub_problem", "ewelink_b", |e| e["reason"].as_str().is_some_and(|r| r.contains("406"))).await;
    let logins_before = router.stats().logins_ok;
    router.expire_sessions();
    let router_relogged = async {
        for _ in 0..400 {
            if router.stats().logins_ok > logins_before {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert!(router_relogged.await, "the router session was renewed");
    router.set_password("another-password");
    router.expire_sessions();
    event(&mut watcher, "hub_problem", "ikuai_sec", |e| e["reason"].as_str().is_some_and(|r| r.contains("refused")))
        .await;
    router.set_password(router_password);
    watcher.expect_latest("hub2mqtt/bridge/info", linked, Duration::from_secs(120)).await;

    // check-config on the same file.
    let check = Command::new(env!("CARGO_BIN_EXE_hub2mqtt"))
        .arg("check-config")
        .arg("--config")
        .arg(&bridge.config_path)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));
    let check_output = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));

    bridge.signal("TERM");
    assert_eq!(bridge.wait(WAIT), Some(0), "{}", bridge.log());
    let log = bridge.log();
    assert!(log.contains("TRACE") && log.contains("DEBUG"), "the log really is at trace level");

    // The token state files: written by the session, readable by their owner only.
    let mut saved = Vec::new();
    for account in ["a", "b"] {
        let file = state_dir.join(format!("ewelink_{account}.json"));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        let state: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        saved.extend([state["at"].as_str(), state["rt"].as_str()].into_iter().flatten().map(str::to_owned));
    }

    // Every secret, including those only the wire saw.
    let mut secrets: Vec<(String, String)> = vec![
        ("MQTT password".into(), mqtt_password.into()),
        ("router password".into(), router_password.into()),
        ("router password md5".into(), md5_hex(router_password)),
        ("router login pass".into(), hub2mqtt::ikuai::client::pass_field(&md5_hex(router_password))),
        ("eWeLink password A".into(), cloud_password_a.into()),
        ("eWeLink password B".into(), cloud_password_b.into()),
        ("app secret A".into(), app_secret_a.into()),
        ("app secret B".into(), app_secret_b.into()),
        ("configured at B".into(), issued_b.at.clone()),
        ("configured rt B".into(), issued_b.rt.clone()),
    ];
    let router_wire = router_tap.text();
    let sess_keys = values_after(&router_wire, "sess_key=");
    assert!(sess_keys.len() >= 2, "the router issued sessions: {sess_keys:?}");
    secrets.extend(sess_keys.into_iter().map(|k| ("router sess_key".to_owned(), k)));
    for (name, tap) in [("A", &tap_a), ("B", &tap_b)] {
        let wire = tap.text();
        for field in ["\"at\":\"", "\"rt\":\""] {
            secrets.extend(values_after(&wire, field).into_iter().map(|t| (format!("token {field} {name}"), t)));
        }
    }
    secrets.extend(saved.into_iter().map(|t| ("saved token".to_owned(), t)));
    let tokens = secrets.iter().filter(|(n, _)| n.starts_with("token")).count();
    assert!(tokens >= 4, "the clouds issued tokens over the wire: {secrets:?}");

    let mut published = String::new();
    for m in watcher.all("#") {
        published.push_str(&m.topic);
        published.push(' ');
        published.push_str(&m.text());
        published.push('\n');
    }
    let mut leaks = Vec::new();
    for (name, secret) in &secrets {
        for spelling in spellings(secret) {
            for (place, text) in [("the log", &log), ("MQTT", &published), ("check-config", &check_output)] {
                if text.contains(&spelling) {
                    leaks.push(format!("{name} ({spelling}) in {place}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    println!(
        "security: searched {} secrets ({} from the wire) in {} KiB of trace log, {} MQTT messages and check-config",
        secrets.len(),
        secrets.iter().filter(|(n, _)| n.contains("sess_key") || n.starts_with("token")).count(),
        log.len() / 1024,
        watcher.all("#").len()
    );
}

#[tokio::test]
async fn mqtt_username_and_password_against_a_mosquitto_password_file() {
    let Some(broker) = TestBroker::start_with_password("hub2mqtt", "right-pw-4411") else {
        println!(
            "skipped: needs Mosquitto (HUB2MQTT_TEST_BROKER=mosquitto); the embedded broker has no authentication"
        );
        return;
    };
    let mut watcher =
        Watcher::connect_with_credentials(broker.port, "hub2mqtt", "right-pw-4411", &["hub2mqtt/#"]).await;
    let config = |dir: &Path, password: &str, client: &str| {
        format!(
            "[mqtt]\nurl = \"{}\"\nclient_id = \"{client}\"\nusername = \"hub2mqtt\"\npassword = \"{password}\"\nbase_topic = \"{client}\"\n[bridge]\nstate_dir = \"{}\"\n",
            broker.url(),
            dir.join("state").display()
        )
    };

    // The right password: online.
    let good_dir = tempfile::tempdir().unwrap();
    let mut good = BridgeProcess::start(good_dir.path(), &config(good_dir.path(), "right-pw-4411", "good"), "info");
    let mut right = Watcher::connect_with_credentials(broker.port, "hub2mqtt", "right-pw-4411", &["good/#"]).await;
    right.expect_latest("good/bridge/state", |m| m.text() == "online", WAIT).await;

    // A wrong one: a clear error, retried with growing pauses, the process still running.
    let bad_dir = tempfile::tempdir().unwrap();
    let mut bad = BridgeProcess::start(bad_dir.path(), &config(bad_dir.path(), "wrong-pw", "bad"), "info");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let log = bad.log();
    // Mosquitto 2 answers "not authorized"; older brokers "bad username or password": both are explained.
    assert!(
        log.contains("the broker refused the username or password (mqtt.username / mqtt.password)")
            || log.contains("the broker says not authorized (check mqtt.username / mqtt.password"),
        "{log}"
    );
    let attempts = log.matches("MQTT connection").count();
    // Backoff from 0.5 s doubling (jittered within [ceiling/2, ceiling]): at most 7 attempts fit in 20 s.
    assert!((2..=7).contains(&attempts), "{attempts} attempts in 20 s:\n{log}");
    assert!(bad.is_running(), "a wrong password is not a crash:\n{log}");
    assert!(watcher.all("bad/#").is_empty(), "nothing was published by the refused bridge");

    for b in [&mut good, &mut bad] {
        b.signal("TERM");
        assert_eq!(b.wait(WAIT), Some(0), "{}", b.log());
    }
}

#[tokio::test]
async fn the_clouds_certificate_is_always_checked() {
    // An https server with a self-signed certificate (the iKuai simulator's) where the cloud should be.
    let fake = SimRouter::start(hub2mqtt::sim::ikuai::SimOptions { tls: true, ..Default::default() }).await.unwrap();
    let broker = TestBroker::start();
    let mut watcher = Watcher::connect(&broker, &["hub2mqtt/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[mqtt]\nurl = \"{}\"\nclient_id = \"{}\"\n[bridge]\nstate_dir = \"{}\"\n[[ewelink]]\nid = \"tls\"\nbase_url = \"{}\"\napp_id = \"app\"\napp_secret = \"secret-1234\"\nemail = \"a@b.c\"\npassword = \"pw-123456\"\n",
        broker.url(),
        support::unique("cert"),
        dir.path().join("state").display(),
        fake.url()
    );
    let mut bridge = BridgeProcess::start(dir.path(), &toml, "info");
    let problem = event(&mut watcher, "hub_problem", "ewelink_tls", |_| true).await;
    let reason = problem["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.to_lowercase().contains("certificate"), "the reason names the certificate: {reason}");
    println!("security: a self-signed cloud: {reason}");
    assert_eq!(fake.stats().requests, 0, "no request got through the TLS handshake");
    bridge.signal("TERM");
    assert_eq!(bridge.wait(WAIT), Some(0), "{}", bridge.log());

    // And there is no switch to turn the check off for the cloud.
    let path = dir.path().join("insecure.toml");
    std::fs::write(&path, format!("{toml}insecure_tls = true\n")).unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_hub2mqtt")).arg("check-config").arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("insecure_tls: unknown field"), "{stderr}");
}
