//! The `hub2mqtt` binary as users run it: signals, the last will, `check-config` and `healthcheck`.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{BridgeProcess, TestBroker, WAIT, Watcher};

fn config_for(broker: &TestBroker, dir: &std::path::Path) -> String {
    format!(
        "[mqtt]\nurl = \"{}\"\nclient_id = \"{}\"\nkeep_alive_s = 5\n[bridge]\nstate_dir = \"{}\"\n",
        broker.url(),
        support::unique("proc"),
        dir.join("state").display()
    )
}

#[tokio::test]
async fn sigterm_publishes_offline_and_exits_cleanly() {
    let broker = TestBroker::start();
    let mut watcher = Watcher::connect(&broker, &["hub2mqtt/bridge/state"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = BridgeProcess::start(dir.path(), &config_for(&broker, dir.path()), "info");
    watcher.expect_where("hub2mqtt/bridge/state", |m| m.text() == "online", WAIT).await;

    bridge.signal("TERM");
    let offline = watcher.expect("hub2mqtt/bridge/state", WAIT).await;
    assert_eq!(offline.text(), "offline");
    assert_eq!(bridge.wait(WAIT), Some(0), "exit code; log:\n{}", bridge.log());
    let log = bridge.log();
    assert!(log.contains("disconnected from the MQTT broker"), "{log}");
    assert!(!log.contains("did not acknowledge offline"), "the broker acked offline:\n{log}");
}

#[tokio::test]
async fn a_killed_bridge_leaves_its_last_will() {
    let broker = TestBroker::start();
    let mut watcher = Watcher::connect(&broker, &["hub2mqtt/bridge/state"]).await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = BridgeProcess::start(dir.path(), &config_for(&broker, dir.path()), "info");
    watcher.expect_where("hub2mqtt/bridge/state", |m| m.text() == "online", WAIT).await;

    bridge.signal("KILL");
    // The broker notices the dead connection (at most 1.5 keep-alives) and publishes the will.
    let will = watcher.expect("hub2mqtt/bridge/state", Duration::from_secs(30)).await;
    assert_eq!(will.text(), "offline");
    // ... retained, so a subscriber arriving later sees it too.
    let mut late = Watcher::connect(&broker, &["hub2mqtt/bridge/state"]).await;
    let seen = late.expect("hub2mqtt/bridge/state", WAIT).await;
    assert_eq!((seen.text().as_str(), seen.retain), ("offline", true));
}

#[tokio::test]
async fn healthcheck_follows_the_bridge_state() {
    let broker = TestBroker::start();
    let mut watcher = Watcher::connect(&broker, &["hub2mqtt/bridge/state"]).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = config_for(&broker, dir.path());
    let healthcheck = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_hub2mqtt")).arg("healthcheck").arg("--config").arg(path).output().unwrap()
    };
    let probe_path = dir.path().join("probe.toml");
    std::fs::write(&probe_path, &toml).unwrap();
    let out = healthcheck(&probe_path);
    assert_eq!(out.status.code(), Some(1), "nothing retained yet: {}", String::from_utf8_lossy(&out.stdout));

    let mut bridge = BridgeProcess::start(dir.path(), &toml, "info");
    watcher.expect_where("hub2mqtt/bridge/state", |m| m.text() == "online", WAIT).await;
    let out = healthcheck(&probe_path);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "online");

    bridge.signal("TERM");
    assert_eq!(bridge.wait(WAIT), Some(0));
    let out = healthcheck(&probe_path);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "offline");
}

#[test]
fn check_config_masks_secrets_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[mqtt]\nusername = \"ha\"\npassword = \"mqtt-pass-9871\"\n\n[[ikuai]]\nid = \"home\"\nurl = \"http://192.168.9.1\"\npassword = \"router-pass-5522\"\n",
    )
    .unwrap();
    let run = |path: &std::path::Path, env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hub2mqtt"));
        cmd.arg("check-config").arg("--config").arg(path);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&path, &[("HUB2MQTT_IKUAI__HOME__POLL_INTERVAL_S", "30")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("poll_interval_s = 30"), "{stdout}");
    for secret in ["mqtt-pass-9871", "router-pass-5522"] {
        assert!(!stdout.contains(secret) && !String::from_utf8_lossy(&out.stderr).contains(secret));
    }
    assert!(stdout.contains("password = \"********\""));

    std::fs::write(&path, "[mqtt]\nurl = \"http://broker\"\n").unwrap();
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config.toml: mqtt.url: expected mqtt:// or mqtts://"), "{stderr}");

    std::fs::write(&path, "[mqtt]\nbase_topik = \"x\"\n").unwrap();
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mqtt.base_topik: unknown field"));
}

#[tokio::test]
async fn the_embedded_broker_runs_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let toml = format!(
        "[mqtt]\nurl = \"embedded\"\nembedded_listen = \"127.0.0.1:{port}\"\n[bridge]\nstate_dir = \"{}\"\n",
        dir.path().join("state").display()
    );
    let mut bridge = BridgeProcess::start(dir.path(), &toml, "info");
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "no broker on {port}:\n{}", bridge.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut watcher = Watcher::connect_port(port, &["hub2mqtt/#", "homeassistant/#"]).await;
    let state = watcher.expect_latest("hub2mqtt/bridge/state", |m| m.text() == "online", WAIT).await;
    assert!(state.retain, "the embedded broker keeps retained messages");
    let config = watcher.expect("homeassistant/sensor/hub2mqtt_bridge/version/config", WAIT).await;
    assert_eq!(config.json()["state_topic"], "hub2mqtt/bridge/info");
    bridge.signal("INT");
    assert_eq!(bridge.wait(WAIT), Some(0), "{}", bridge.log());
}

#[tokio::test]
async fn secrets_never_reach_the_log_even_at_trace_level() {
    let broker = TestBroker::start();
    let mut watcher = Watcher::connect(&broker, &["hub2mqtt/bridge/state"]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "MqttSecret-4242-xyz";
    let toml = config_for(&broker, dir.path()).replacen(
        "[mqtt]\n",
        &format!("[mqtt]\nusername = \"hub2mqtt\"\npassword = \"{secret}\"\n"),
        1,
    );
    let mut bridge = BridgeProcess::start(dir.path(), &toml, "trace");
    watcher.expect_where("hub2mqtt/bridge/state", |m| m.text() == "online", WAIT).await;
    bridge.signal("TERM");
    assert_eq!(bridge.wait(WAIT), Some(0), "{}", bridge.log());
    let log = bridge.log();
    assert!(log.contains("DEBUG rumqttc"), "the log really is verbose (protocol-level lines):\n{log}");
    assert!(log.contains("readable by every user"), "a world-readable config with a password is warned about");
    assert!(!log.contains(secret), "the MQTT password leaked into the log:\n{log}");
}

#[cfg(unix)]
#[tokio::test]
async fn systemd_hears_ready_watchdog_and_stopping() {
    let broker = TestBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut bridge = BridgeProcess::start_with_env(
        dir.path(),
        &config_for(&broker, dir.path()),
        "info",
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "1000000")],
    );
    let mut heard = Vec::new();
    let mut buf = [0u8; 512];
    let mut next = async |heard: &mut Vec<String>| {
        let n = tokio::time::timeout(WAIT, socket.recv(&mut buf)).await.expect("a notification").unwrap();
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        heard.last().unwrap().clone()
    };
    assert_eq!(next(&mut heard).await.trim(), "READY=1");
    assert_eq!(next(&mut heard).await.trim(), "WATCHDOG=1");
    bridge.signal("TERM");
    while !next(&mut heard).await.contains("STOPPING=1") {}
    assert_eq!(bridge.wait(WAIT), Some(0), "{}", bridge.log());
}

#[test]
fn run_with_an_invalid_config_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\ntypo = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hub2mqtt")).arg("run").arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mqtt.typo: unknown field"));
}
