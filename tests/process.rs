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
