//! `hub2mqtt demo` as a newcomer runs it: within seconds a subscriber sees discovery and live state of
//! both simulated hubs, a command from the shell works, and Ctrl-C stops it cleanly.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{WAIT, Watcher};

#[tokio::test]
async fn the_demo_shows_discovery_live_state_and_takes_commands() {
    let port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("demo.log")).unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_hub2mqtt"))
        .args(["demo", "--port", &port.to_string(), "--duration", "300"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default();
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the demo's broker never listened:\n{}", read_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut watcher = Watcher::connect_port(port, &["hub2mqtt/#", "homeassistant/#"]).await;

    // Discovery and live state of the router and of the cloud's devices.
    watcher.expect("homeassistant/sensor/ikuai_demo/cpu_load/config", WAIT).await;
    let router = watcher.expect_latest("hub2mqtt/ikuai_demo", |m| m.json()["cpu_load"].is_number(), WAIT).await;
    assert!(router.json()["online_users"].is_number());
    watcher.expect("homeassistant/switch/ewelink_1000000001/switch/config", WAIT).await;
    watcher.expect("homeassistant/light/ewelink_1000000104/light/config", WAIT).await;
    let plug = watcher.expect_latest("hub2mqtt/ewelink_1000000001", |m| m.json()["switch"].is_string(), WAIT).await;
    let both_hubs_up =
        |m: &support::Message| m.json()["hubs"] == serde_json::json!({"ewelink_demo": true, "ikuai_demo": true});
    watcher.expect_latest("hub2mqtt/bridge/info", both_hubs_up, WAIT).await;

    // The printed instructions are true: toggling the plug from the shell works.
    let printed = read_log();
    assert!(printed.contains(&format!("mqtt://127.0.0.1:{port}")), "{printed}");
    assert!(printed.contains("hub2mqtt/ewelink_1000000001/switch/set' -m TOGGLE"), "{printed}");
    let before = plug.json()["switch"].as_str().unwrap().to_owned();
    watcher.publish("hub2mqtt/ewelink_1000000001/switch/set", "TOGGLE", false).await;
    let after = if before == "ON" { "OFF" } else { "ON" };
    watcher.expect_latest("hub2mqtt/ewelink_1000000001", |m| m.json()["switch"] == after, WAIT).await;

    // Ctrl-C: a clean stop, `offline` said first.
    let status = Command::new("kill").arg("-INT").arg(demo.id().to_string()).status().unwrap();
    assert!(status.success());
    watcher.expect_latest("hub2mqtt/bridge/state", |m| m.text() == "offline", WAIT).await;
    let deadline = std::time::Instant::now() + WAIT;
    let code = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status.code();
        }
        assert!(std::time::Instant::now() < deadline, "the demo did not stop:\n{}", read_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(0), "{}", read_log());
    assert!(!read_log().contains("panicked"));
}
