//! The iKuai adapter end to end: the simulated router on one side, the bridge and a real broker in the
//! middle, an independent MQTT subscriber on the other, asserting what Home Assistant would see.

mod support;

use std::time::{Duration, Instant};

use hub2mqtt::config::IkuaiConfig;
use hub2mqtt::secret::Secret;
use hub2mqtt::sim::ikuai::{SimOptions, SimRouter};
use serde_json::json;
use support::{Message, RunningBridge, TestBroker, WAIT, Watcher, start_bridge, test_config};

const PASSWORD: &str = "router-pw-e2e";
const STATE: &str = "hub2mqtt/ikuai_home";
const AVAILABILITY: &str = "hub2mqtt/ikuai_home/availability";
const EVENTS: &str = "hub2mqtt/bridge/event";
const REDMI: &str = "hub2mqtt/ikuai_home_366e2413ba6e";

struct Setup {
    sim: SimRouter,
    watcher: Watcher,
    bridge: RunningBridge,
    _broker: TestBroker,
    _dir: tempfile::TempDir,
}

/// A simulated router (password [`PASSWORD`]), a broker, a watcher, and the bridge polling the router
/// every second with `password` and the changes `tune` makes to the router's config.
async fn setup(password: &str, tune: impl FnOnce(&mut IkuaiConfig)) -> Setup {
    let sim = SimRouter::start(SimOptions { password: PASSWORD.into(), ..SimOptions::default() }).await.unwrap();
    let broker = TestBroker::start();
    let mut watcher = Watcher::connect(&broker, &["hub2mqtt/#", "homeassistant/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&broker, dir.path());
    let mut router = IkuaiConfig {
        id: "home".into(),
        url: sim.url(),
        password: Some(Secret::new(password)),
        poll_interval_s: 1,
        timeout_s: 2,
        ..IkuaiConfig::default()
    };
    tune(&mut router);
    config.ikuai.push(router);
    config.validate().unwrap();
    let bridge = start_bridge(config);
    watcher.expect("hub2mqtt/bridge/info", WAIT).await;
    Setup { sim, watcher, bridge, _broker: broker, _dir: dir }
}

fn is(text: &'static str) -> impl Fn(&Message) -> bool {
    move |m| m.text() == text
}

fn event_of(kind: &'static str) -> impl Fn(&Message) -> bool {
    move |m| m.json()["type"] == kind && m.json()["hub"] == "ikuai_home"
}

fn link(up: bool) -> impl Fn(&Message) -> bool {
    move |m| m.json()["type"] == "hub_link" && m.json()["hub"] == "ikuai_home" && m.json()["up"] == up
}

#[tokio::test]
async fn discovery_and_states_match_the_simulators_data() {
    let mut s = setup(PASSWORD, |r| r.track_clients = true).await;
    let w = &mut s.watcher;

    let cpu = w.expect("homeassistant/sensor/ikuai_home/cpu_load/config", WAIT).await.json();
    assert_eq!(cpu["name"], "CPU load");
    assert_eq!((&cpu["unit_of_measurement"], &cpu["state_class"]), (&json!("%"), &json!("measurement")));
    assert_eq!(cpu["state_topic"], STATE);
    assert_eq!(cpu["unique_id"], "hub2mqtt_ikuai_home_cpu_load");
    let device = &cpu["device"];
    assert_eq!((&device["name"], &device["manufacturer"]), (&json!("iKuai home"), &json!("iKuai")));
    assert_eq!((&device["model"], &device["sw_version"]), (&json!("IK-Q3000"), &json!("3.7.17 x64 Build202412271043")));
    assert_eq!(device["configuration_url"], s.sim.url());

    let rate = w.expect("homeassistant/sensor/ikuai_home/download_rate/config", WAIT).await.json();
    assert_eq!((&rate["device_class"], &rate["unit_of_measurement"]), (&json!("data_rate"), &json!("B/s")));
    let total = w.expect("homeassistant/sensor/ikuai_home/total_downloaded/config", WAIT).await.json();
    assert_eq!((&total["device_class"], &total["state_class"]), (&json!("data_size"), &json!("total_increasing")));
    let uptime = w.expect("homeassistant/sensor/ikuai_home/uptime/config", WAIT).await.json();
    assert_eq!((&uptime["device_class"], &uptime["entity_category"]), (&json!("duration"), &json!("diagnostic")));
    let link = w.expect("homeassistant/binary_sensor/ikuai_home/wan1_connected/config", WAIT).await.json();
    assert_eq!(link["device_class"], "connectivity");
    let routes = w.expect("homeassistant/sensor/ikuai_home/static_routes/config", WAIT).await.json();
    assert_eq!(routes["entity_category"], "diagnostic");
    assert_eq!(routes["json_attributes_topic"], STATE);
    let tracker = w.expect("homeassistant/device_tracker/ikuai_home_366e2413ba6e/presence/config", WAIT).await.json();
    assert_eq!(tracker["source_type"], "router");
    assert_eq!(tracker["device"]["name"], "红米Note 11T Pro");

    // The values a subscriber sees are the document's.
    let state = w.expect_latest(STATE, |m| m.json()["vlans"] == 1, WAIT).await.json();
    assert_eq!(
        (&state["cpu_load"], &state["online_users"], &state["connections"]),
        (&json!(9.45), &json!(7), &json!(158))
    );
    assert_eq!((&state["memory_used"], &state["dhcp_available"]), (&json!(47), &json!(290)));
    assert_eq!((&state["wan1_connected"], &state["wan_ip"]), (&json!(true), &json!("10.4.71.74")));
    assert_eq!(state["static_routes_attributes"]["items"][0]["comment"], "测试静态路由");
    w.expect_latest(AVAILABILITY, is("online"), WAIT).await;
    let redmi = w.expect_latest(REDMI, |m| m.json()["presence"] == "home", WAIT).await.json();
    assert_eq!(redmi["attributes"]["ip"], "192.168.9.11");
    assert_eq!(redmi["attributes"]["comment"], "红米Note 11T Pro");
    w.expect_latest(&format!("{REDMI}/availability"), is("online"), WAIT).await;

    // Counters move: a later state carries a larger uptime.
    let first = state["uptime"].as_u64().unwrap();
    w.expect_latest(STATE, |m| m.json()["uptime"].as_u64().unwrap_or(0) > first, WAIT).await;
    s.bridge.stop().await;
}

#[tokio::test]
async fn session_expiry_mid_run_is_invisible() {
    let mut s = setup(PASSWORD, |_| {}).await;
    // Fully up: states sent, then the link.
    let before = s.watcher.expect_where(EVENTS, link(true), WAIT).await;
    assert_eq!(s.watcher.latest(STATE).unwrap().json()["cpu_load"], 9.45);
    s.sim.expire_sessions();
    let uptime = s.watcher.latest(STATE).unwrap().json()["uptime"].as_u64().unwrap();
    // Polling goes on: two more updates after the router forgot the session.
    for _ in 0..2 {
        let m = s.watcher.expect_where(STATE, |m| m.json()["uptime"].as_u64().unwrap_or(0) > uptime, WAIT).await;
        assert!(m.seq > before.seq);
    }
    assert_eq!(s.sim.stats().logins_ok, 2);
    assert!(s.sim.stats().calls_unauthenticated >= 1);
    // Home Assistant saw nothing of it.
    let offline: Vec<Message> =
        s.watcher.after(before.seq, AVAILABILITY).into_iter().filter(|m| m.text() != "online").collect();
    assert!(offline.is_empty(), "{offline:?}");
    let events = s.watcher.after(before.seq, EVENTS);
    assert!(events.is_empty(), "{:?}", events.iter().map(Message::text).collect::<Vec<_>>());
    s.bridge.stop().await;
}

#[tokio::test]
async fn router_down_goes_offline_and_comes_back_with_fresh_states() {
    let mut s = setup(PASSWORD, |_| {}).await;
    s.watcher.expect_where(EVENTS, link(true), WAIT).await;
    assert_eq!(s.watcher.latest(AVAILABILITY).unwrap().text(), "online");
    s.sim.go_down().await;
    s.watcher.expect_where(AVAILABILITY, is("offline"), WAIT).await;
    let down = s.watcher.expect_where(EVENTS, link(false), WAIT).await.json();
    assert!(down["reason"].as_str().unwrap().contains("unreachable"), "{down}");
    let last = s.watcher.latest(STATE).unwrap().json()["uptime"].as_u64().unwrap();

    s.sim.come_up().await.unwrap();
    s.watcher.expect_where(AVAILABILITY, is("online"), WAIT).await;
    let fresh = s.watcher.expect_where(STATE, |m| m.json()["uptime"].as_u64().unwrap_or(0) > last, WAIT).await.json();
    assert_eq!(fresh["cpu_load"], 9.45);
    s.watcher.expect_where(EVENTS, link(true), WAIT).await;
    s.bridge.stop().await;
}

#[tokio::test]
async fn wrong_password_is_a_clear_error_with_few_login_attempts() {
    let mut s = setup("not-the-router-password", |_| {}).await;
    let problem = s.watcher.expect_where(EVENTS, event_of("hub_problem"), WAIT).await;
    let reason = problem.json()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("router `home`") && reason.contains("login as `admin` refused"), "{reason}");
    assert!(reason.contains("check the username and password"), "{reason}");
    assert!(!problem.text().contains("not-the-router-password"));
    // It keeps trying by itself...
    let deadline = Instant::now() + WAIT;
    while s.sim.stats().logins_failed < 2 {
        assert!(Instant::now() < deadline, "no second login attempt within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...but backs off: polling every second would be 6 more attempts in 6 s; a slower machine only
    // makes fewer, so this bound holds under any load.
    let before = s.sim.stats().logins_failed;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let attempts = s.sim.stats().logins_failed - before;
    assert!(attempts <= 3, "{attempts} more login attempts in 6 s");
    let problems: Vec<Message> =
        s.watcher.all(EVENTS).into_iter().filter(|m| m.json()["type"] == "hub_problem").collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    // Nothing was announced for a router never reached.
    assert!(s.watcher.latest(STATE).is_none());
    s.bridge.stop().await;
}

#[tokio::test]
async fn a_client_leaving_turns_not_home_only_after_the_grace_period() {
    let mut s = setup(PASSWORD, |r| {
        r.track_clients = true;
        r.consider_home_s = 5;
        r.client_rate_sensors = true;
    })
    .await;
    let home = s.watcher.expect_latest(REDMI, |m| m.json()["presence"] == "home", WAIT).await;
    assert_eq!(home.json()["upload_rate"], 271);
    assert!(s.sim.remove_client("36:6e:24:13:ba:6e"));
    let removed = Instant::now();
    // First the rates go unknown while the phone is still home...
    let idle = s.watcher.expect_where(REDMI, |m| m.json()["upload_rate"].is_null(), WAIT).await.json();
    assert_eq!(idle["presence"], "home");
    // ...then, the grace period over, it is away.
    s.watcher.expect_where(REDMI, |m| m.json()["presence"] == "not_home", WAIT).await;
    let waited = removed.elapsed();
    // Not before the grace period, less the time since the last poll that listed it (a poll or two).
    assert!(waited >= Duration::from_secs(3), "not_home after {waited:?}, grace 5 s, poll 1 s");
    // The other client stayed home throughout.
    let cam = s.watcher.latest("hub2mqtt/ikuai_home_607ea4779ff9").unwrap().json();
    assert_eq!(cam["presence"], "home");
    s.bridge.stop().await;
}
