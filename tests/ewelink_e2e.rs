//! eWeLink end to end, for both API generations: the simulated cloud ↔ the adapter ↔ the bridge ↔ a real
//! broker ↔ an independent MQTT subscriber (what Home Assistant or Node-RED sees). Every network target is
//! 127.0.0.1; the adapter runs with its default (production) delays.

mod support;

use std::time::Duration;

use hub2mqtt::config::{Config, EwelinkApi, EwelinkConfig, Region};
use hub2mqtt::secret::Secret;
use hub2mqtt::sim::ewelink::{OWNER_APIKEY, SimCloud, SimOptions, USER_APIKEY, ids};
use serde_json::{Map, Value, json};
use support::{RunningBridge, TestBroker, WAIT, Watcher, start_bridge, test_config};

/// Runs a scenario once per API generation, as two tests.
macro_rules! both_apis {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn v1() {
                super::$name(hub2mqtt::config::EwelinkApi::V1).await
            }
            #[tokio::test]
            async fn v2() {
                super::$name(hub2mqtt::config::EwelinkApi::V2).await
            }
        }
    )*};
}

both_apis!(
    discovery_covers_every_capability,
    set_becomes_the_exact_update_and_the_state_comes_back,
    timers_set_add_remove_round_trip,
    device_pushes_and_sysmsg_reach_subscribers,
    a_dropped_socket_reconnects_and_every_device_is_queried,
    commands_while_the_socket_is_down_go_over_http,
    token_expiry_mid_run_is_invisible,
    failed_commands_are_reported_with_their_reason,
    a_wrong_password_is_reported_once_not_retried_in_a_loop,
    a_pre_obtained_session_needs_no_login,
);

const LONG: Duration = Duration::from_secs(30);

struct E2e {
    sim: SimCloud,
    watcher: Watcher,
    bridge: Option<RunningBridge>,
    config: Config,
    _broker: TestBroker,
    _dir: tempfile::TempDir,
}

fn account(sim: &SimCloud, api: EwelinkApi) -> EwelinkConfig {
    let o = sim.options();
    EwelinkConfig {
        id: "test".into(),
        api,
        region: Region::Eu,
        base_url: Some(sim.base_url()),
        app_id: o.app_id.clone(),
        app_secret: Some(Secret::new(o.app_secret.clone())),
        email: Some(o.email.clone()),
        password: Some(Secret::new(o.password.clone())),
        ..EwelinkConfig::default()
    }
}

/// A simulated cloud, a broker, a subscriber, and the bridge with one `[[ewelink]]` account, connected.
async fn start(api: EwelinkApi) -> E2e {
    let sim = SimCloud::start(SimOptions::default()).await.unwrap();
    let broker = TestBroker::start();
    let mut watcher = Watcher::connect(&broker, &["hub2mqtt/#", "homeassistant/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&broker, dir.path());
    config.ewelink.push(account(&sim, api));
    let bridge = start_bridge(config.clone());
    link(&mut watcher, true).await;
    let mut e = E2e { sim, watcher, bridge: Some(bridge), config, _broker: broker, _dir: dir };
    // Every device announced and its first state out.
    e.state_where(ids::UNKNOWN_RAW, |_| true).await;
    e
}

impl E2e {
    async fn stop(mut self) {
        if let Some(b) = self.bridge.take() {
            b.stop().await;
        }
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.watcher.publish(topic, payload, false).await;
    }

    /// Waits until the device's retained state satisfies `pred`; returns it.
    async fn state_where(&mut self, deviceid: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let topic = format!("hub2mqtt/ewelink_{deviceid}");
        self.watcher.expect_latest(&topic, |m| pred(&m.json()), LONG).await.json()
    }

    /// Waits for the `n`th `update` frame the cloud received for a device; returns it.
    async fn update_frame(&self, deviceid: &str, n: usize) -> Value {
        let got = self.sim.wait_until(LONG, |s| s.updates_for(deviceid).len() >= n).await;
        assert!(
            got,
            "the cloud received {} update(s) for {deviceid}, expected {n}",
            self.sim.updates_for(deviceid).len()
        );
        self.sim.updates_for(deviceid)[n - 1].clone()
    }

    fn failures(&mut self) -> Vec<Value> {
        self.watcher
            .all("hub2mqtt/bridge/event")
            .iter()
            .map(|m| m.json())
            .filter(|e| e["type"] == "command_failed")
            .collect()
    }

    async fn failure(&mut self, topic: &str) -> Value {
        let t = topic.to_owned();
        self.watcher
            .expect_where(
                "hub2mqtt/bridge/event",
                move |m| m.json()["type"] == "command_failed" && m.json()["topic"] == t.as_str(),
                LONG,
            )
            .await
            .json()
    }
}

/// Waits for the account's link to go up or down (a `hub_link` event).
async fn link(watcher: &mut Watcher, up: bool) -> Value {
    watcher
        .expect_where(
            "hub2mqtt/bridge/event",
            |m| {
                let e = m.json();
                e["type"] == "hub_link" && e["hub"] == "ewelink_test" && e["up"] == up
            },
            LONG,
        )
        .await
        .json()
}

fn assert_frame(frame: &Value, deviceid: &str, owner: &str, params: Value) {
    assert_eq!(frame["action"], "update");
    assert_eq!(frame["deviceid"], deviceid);
    assert_eq!(frame["apikey"], owner, "the device owner's apikey");
    assert_eq!(frame["selfApikey"], USER_APIKEY);
    assert_eq!(frame["userAgent"], "app");
    assert_eq!(frame["ts"], 0);
    assert!(frame["sequence"].as_str().is_some_and(|s| s.len() >= 13 && s.bytes().all(|b| b.is_ascii_digit())));
    assert_eq!(frame["params"], params, "the exact params sent");
}

/// The discovery config on `homeassistant/<path>/config`.
async fn config(w: &mut Watcher, path: &str) -> Value {
    w.expect(&format!("homeassistant/{path}/config"), WAIT).await.json()
}

fn params(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn discovery_covers_every_capability(api: EwelinkApi) {
    let mut e = start(api).await;
    let w = &mut e.watcher;

    let switch = config(w, "switch/ewelink_1000213ac8/switch").await;
    assert!(switch["name"].is_null(), "the switch is the device's main feature");
    assert_eq!(switch["device"]["name"], "我的设备213ac8");
    assert_eq!(switch["command_topic"], "hub2mqtt/ewelink_1000213ac8/switch/set");
    let lamp = config(w, "switch/ewelink_1000000002/switch_1").await;
    assert_eq!(lamp["name"], "Lamp", "channel names come from tags.ck_channel_name");
    assert_eq!(config(w, "switch/ewelink_1000000002/switch_2").await["name"], "Heater");
    let power = config(w, "sensor/ewelink_1000000005/power").await;
    assert_eq!((power["device_class"].as_str(), power["unit_of_measurement"].as_str()), (Some("power"), Some("W")));
    let temperature = config(w, "sensor/ewelink_1000000015/temperature").await;
    assert_eq!(temperature["unit_of_measurement"], "°C");
    assert_eq!(config(w, "sensor/ewelink_1000001770/humidity").await["device_class"], "humidity");
    let rgbw = config(w, "light/ewelink_1000000104/light").await;
    assert_eq!(rgbw["schema"], "json");
    assert_eq!(rgbw["supported_color_modes"], json!(["color_temp", "rgb"]));
    assert_eq!((rgbw["brightness_scale"].as_u64(), rgbw["min_mireds"].as_u64()), (Some(100), Some(154)));
    assert_eq!(config(w, "light/ewelink_1000000022/light").await["brightness_scale"], 255);
    assert_eq!(config(w, "light/ewelink_1000000059/light").await["effect_list"].as_array().unwrap().len(), 12);
    assert_eq!(config(w, "light/ewelink_1000000036/light").await["supported_color_modes"], json!(["brightness"]));
    let fan = config(w, "fan/ewelink_1000000034/fan").await;
    assert_eq!(fan["preset_modes"], json!(["low", "medium", "high"]));
    assert_eq!(config(w, "light/ewelink_1000000034/light").await["supported_color_modes"], json!(["onoff"]));
    let cover = config(w, "cover/ewelink_1000000011/cover").await;
    assert_eq!(cover["set_position_topic"], "hub2mqtt/ewelink_1000000011/cover/position/set");
    assert_eq!(config(w, "binary_sensor/ewelink_1000000102/door").await["device_class"], "door");
    assert_eq!(config(w, "sensor/ewelink_1000000126/power_1").await["unit_of_measurement"], "W");
    assert_eq!(config(w, "sensor/ewelink_1000000190/voltage").await["unit_of_measurement"], "V");
    assert_eq!(config(w, "sensor/ewelink_1000213ac8/rssi").await["entity_category"], "diagnostic");
    config(w, "switch/ewelink_1000009999/switch").await;
    config(w, "sensor/ewelink_1000009998/uiid").await;
    // Only real channels: the 2-channel device reports 4 outlets.
    let channels = w.all("homeassistant/switch/ewelink_1000000002/+/config");
    assert_eq!(channels.len(), 2, "{:?}", channels.iter().map(|m| m.topic.clone()).collect::<Vec<_>>());

    // States in the contract's units; timers are part of the state.
    let b05 = e.state_where(ids::RGBW_104, |s| s.get("light").is_some()).await;
    assert_eq!(
        b05["light"],
        json!({"state": "OFF", "brightness": 60, "color_mode": "rgb", "color": {"r": 0, "g": 128, "b": 255}})
    );
    let basic = e.state_where(ids::SWITCH, |s| s.get("switch").is_some()).await;
    assert_eq!((basic["switch"].as_str(), basic["timers"].clone()), (Some("OFF"), json!([])));
    let meter = e.state_where(ids::METER_190, |s| s.get("power").is_some()).await;
    assert_eq!(meter["power"], 215.4);
    let w = &mut e.watcher;
    w.expect_latest("hub2mqtt/ewelink_10000000ff/availability", |m| m.text() == "offline", WAIT).await;
    w.expect_latest("hub2mqtt/ewelink_1000213ac8/availability", |m| m.text() == "online", WAIT).await;
    w.expect_latest("hub2mqtt/bridge/info", |m| m.json()["hubs"]["ewelink_test"] == true, WAIT).await;
    let c = e.sim.counters();
    assert_eq!((c.logins, c.bad_requests, c.rate_violations), (1, 0, 0), "{c:?}");
    e.stop().await;
}

async fn set_becomes_the_exact_update_and_the_state_comes_back(api: EwelinkApi) {
    let mut e = start(api).await;

    // One channel: only the changed outlet is sent.
    e.publish("hub2mqtt/ewelink_1000000002/switch_2/set", "ON").await;
    let f = e.update_frame(ids::TWO_CHANNEL, 1).await;
    assert_frame(&f, ids::TWO_CHANNEL, USER_APIKEY, json!({"switches": [{"switch": "on", "outlet": 1}]}));
    e.state_where(ids::TWO_CHANNEL, |s| s["switch_2"] == "ON").await;

    // A device-level JSON set with the state's keys; uiid 44 needs switch:on and mode:0 with brightness.
    e.publish("hub2mqtt/ewelink_1000000044/set", r#"{"light":{"state":"ON","brightness":50}}"#).await;
    let f = e.update_frame(ids::DIMMER_44, 1).await;
    assert_frame(&f, ids::DIMMER_44, USER_APIKEY, json!({"switch": "on", "brightness": 50, "mode": 0}));
    let s = e.state_where(ids::DIMMER_44, |s| s["light"]["state"] == "ON").await;
    assert_eq!(s["light"]["brightness"], 50);

    // Home Assistant's light topic speaks mireds: 250 mired = 4000 K on a 0..255 ct scale.
    e.publish("hub2mqtt/ewelink_1000000103/light/set", r#"{"state":"ON","color_temp":250,"brightness":80}"#).await;
    let f = e.update_frame(ids::WHITE_103, 1).await;
    assert_frame(
        &f,
        ids::WHITE_103,
        USER_APIKEY,
        json!({"switch": "on", "ltype": "white", "white": {"br": 80, "ct": 87}}),
    );
    e.state_where(ids::WHITE_103, |s| s["light"]["brightness"] == 80).await;

    // Fan preset and cover position through their field topics.
    e.publish("hub2mqtt/ewelink_1000000034/fan/preset_mode/set", "high").await;
    let f = e.update_frame(ids::FAN_34, 1).await;
    let outlets = json!({"switches": [{"switch": "on", "outlet": 1}, {"switch": "off", "outlet": 2}, {"switch": "on", "outlet": 3}]});
    assert_frame(&f, ids::FAN_34, USER_APIKEY, outlets);
    e.state_where(ids::FAN_34, |s| s["fan"]["preset_mode"] == "high").await;
    e.publish("hub2mqtt/ewelink_1000000011/cover/position/set", "30").await;
    let f = e.update_frame(ids::COVER_11, 1).await;
    assert_frame(&f, ids::COVER_11, USER_APIKEY, json!({"setclose": 70}));
    e.state_where(ids::COVER_11, |s| s["cover"]["position"] == 30).await;

    // A shared device is commanded with its owner's apikey.
    e.publish("hub2mqtt/ewelink_10000000aa/switch/set", "ON").await;
    let f = e.update_frame(ids::SHARED, 1).await;
    assert_frame(&f, ids::SHARED, OWNER_APIKEY, json!({"switch": "on"}));
    e.state_where(ids::SHARED, |s| s["switch"] == "ON").await;

    assert!(e.failures().is_empty(), "{:?}", e.failures());
    let c = e.sim.counters();
    assert_eq!((c.bad_requests, c.rate_violations), (0, 0), "{c:?}");
    e.stop().await;
}

async fn timers_set_add_remove_round_trip(api: EwelinkApi) {
    let mut e = start(api).await;
    let topic = "hub2mqtt/ewelink_1000213ac8/timers";
    e.publish(
        &format!("{topic}/set"),
        r#"[{"coolkit_timer_type":"once","at":"2030-01-01T07:00:00.000Z","do":{"switch":"on"}}]"#,
    )
    .await;
    let f = e.update_frame(ids::SWITCH, 1).await;
    let timers = f["params"]["timers"].as_array().unwrap().clone();
    assert_eq!(timers.len(), 1);
    let first = timers[0].clone();
    assert_eq!((first["type"].as_str(), first["enabled"].as_u64()), (Some("once"), Some(1)));
    let mid = first["mId"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&mid).is_ok(), "a UUID mId is generated: {mid}");
    e.state_where(ids::SWITCH, |s| s["timers"].as_array().is_some_and(|t| t.len() == 1)).await;

    e.publish(&format!("{topic}/add"), r#"{"coolkit_timer_type":"repeat","at":"0 7 * * 1-5","do":{"switch":"off"}}"#)
        .await;
    let f = e.update_frame(ids::SWITCH, 2).await;
    let timers = f["params"]["timers"].as_array().unwrap().clone();
    assert_eq!(timers.len(), 2, "add sends the whole array");
    assert_eq!(timers[0], first, "the existing timer is kept as it was");
    assert_eq!(timers[1]["type"], "repeat");
    let s = e.state_where(ids::SWITCH, |s| s["timers"].as_array().is_some_and(|t| t.len() == 2)).await;
    assert_eq!(s["timers"][1]["at"], "0 7 * * 1-5");

    e.publish(&format!("{topic}/remove"), &mid).await;
    let f = e.update_frame(ids::SWITCH, 3).await;
    assert_eq!(f["params"]["timers"], json!([timers[1].clone()]), "remove sends the array without it");
    e.state_where(ids::SWITCH, |s| s["timers"].as_array().is_some_and(|t| t.len() == 1 && t[0]["type"] == "repeat"))
        .await;

    // An invalid timer never reaches the cloud; the reason says why.
    e.publish(&format!("{topic}/add"), r#"{"coolkit_timer_type":"once","at":"tomorrow","do":{"switch":"on"}}"#).await;
    let failure = e.failure(&format!("{topic}/add")).await;
    assert_eq!(failure["code"], "invalid");
    assert!(failure["reason"].as_str().unwrap().contains("ISO"), "{failure}");
    e.publish(&format!("{topic}/remove"), "95303c64-fbb4-f497-1341-c592432d1d0d").await;
    let failure = e.failure(&format!("{topic}/remove")).await;
    assert!(failure["reason"].as_str().unwrap().contains("no timer"), "{failure}");
    assert_eq!(e.sim.updates_for(ids::SWITCH).len(), 3);
    e.stop().await;
}

async fn device_pushes_and_sysmsg_reach_subscribers(api: EwelinkApi) {
    let mut e = start(api).await;
    e.sim.push_from_device(ids::TH_RELAY, params(json!({"currentTemperature": "25.5", "currentHumidity": "61"})));
    let s = e.state_where(ids::TH_RELAY, |s| s["temperature"] == 25.5).await;
    assert_eq!(s["humidity"], 61.0);
    e.sim.push_from_device(ids::POWER_METER, params(json!({"power": "1500.25"})));
    e.state_where(ids::POWER_METER, |s| s["power"] == 1500.25).await;
    // Someone presses the physical button.
    e.sim.press_button(ids::SWITCH_UIID1);
    e.state_where(ids::SWITCH_UIID1, |s| s["switch"] == "OFF").await;
    e.sim.press_button(ids::TWO_CHANNEL);
    e.state_where(ids::TWO_CHANNEL, |s| s["switch_1"] == "OFF").await;
    e.sim.push_from_device(ids::DOOR_102, params(json!({"switch": "on"})));
    e.state_where(ids::DOOR_102, |s| s["door"] == true).await;

    e.sim.set_online(ids::SWITCH, false);
    let w = &mut e.watcher;
    w.expect_latest("hub2mqtt/ewelink_1000213ac8/availability", |m| m.text() == "offline", LONG).await;
    e.sim.set_online(ids::SWITCH, true);
    w.expect_latest("hub2mqtt/ewelink_1000213ac8/availability", |m| m.text() == "online", LONG).await;
    e.stop().await;
}

async fn a_dropped_socket_reconnects_and_every_device_is_queried(api: EwelinkApi) {
    let mut e = start(api).await;
    e.sim.refuse_sockets(true);
    e.sim.drop_sockets();
    let down = link(&mut e.watcher, false).await;
    assert!(!down["reason"].as_str().unwrap_or("").is_empty(), "{down}");
    // A change the adapter cannot hear about while it is disconnected.
    e.sim.push_from_device(ids::DIMMER_36, params(json!({"bright": 15})));
    e.sim.clear_records();
    e.sim.refuse_sockets(false);
    link(&mut e.watcher, true).await;
    e.state_where(ids::DIMMER_36, |s| s["light"]["brightness"] == 15).await;
    let every = e.sim.wait_until(LONG, |s| {
        let queried: std::collections::HashSet<String> =
            s.queries().iter().filter_map(|q| q["deviceid"].as_str().map(str::to_owned)).collect();
        s.device_ids().iter().all(|id| queried.contains(id))
    });
    assert!(every.await, "every device is queried after the reconnection");
    let c = e.sim.counters();
    assert!(c.handshakes >= 2 && c.dispatches >= 2, "a new dispatch and handshake: {c:?}");
    assert_eq!((c.logins, c.rate_violations), (1, 0), "{c:?}");
    // The offline device answered 503 to its query and stays offline.
    let w = &mut e.watcher;
    w.expect_latest("hub2mqtt/ewelink_10000000ff/availability", |m| m.text() == "offline", WAIT).await;
    e.stop().await;
}

async fn commands_while_the_socket_is_down_go_over_http(api: EwelinkApi) {
    let mut e = start(api).await;
    e.sim.refuse_sockets(true);
    e.sim.drop_sockets();
    link(&mut e.watcher, false).await;
    e.publish("hub2mqtt/ewelink_1000000001/switch/set", "OFF").await;
    let sent = e.sim.wait_until(LONG, |s| !s.http_updates().is_empty()).await;
    assert!(sent, "the command went over the HTTP status endpoint");
    assert_eq!(e.sim.http_updates(), vec![(ids::SWITCH_UIID1.to_owned(), params(json!({"switch": "off"})))]);
    assert!(e.sim.updates().is_empty());
    e.state_where(ids::SWITCH_UIID1, |s| s["switch"] == "OFF").await;
    assert!(e.failures().is_empty(), "{:?}", e.failures());
    e.sim.refuse_sockets(false);
    link(&mut e.watcher, true).await;
    e.stop().await;
}

async fn token_expiry_mid_run_is_invisible(api: EwelinkApi) {
    let mut e = start(api).await;
    e.sim.expire_access_tokens();
    e.publish("hub2mqtt/ewelink_1000213ac8/switch/set", "ON").await;
    e.state_where(ids::SWITCH, |s| s["switch"] == "ON").await;
    // The next connection needs a new token: refreshed, not a new login.
    e.sim.drop_sockets();
    link(&mut e.watcher, false).await;
    link(&mut e.watcher, true).await;
    e.publish("hub2mqtt/ewelink_1000213ac8/switch/set", "OFF").await;
    e.state_where(ids::SWITCH, |s| s["switch"] == "OFF").await;
    let c = e.sim.counters();
    assert_eq!((c.logins, c.refreshes, c.rate_violations), (1, 1, 0), "{c:?}");
    let problems: Vec<Value> = e
        .watcher
        .all("hub2mqtt/bridge/event")
        .iter()
        .map(|m| m.json())
        .filter(|v| v["type"] == "hub_problem")
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(e.failures().is_empty(), "{:?}", e.failures());

    // A restart reuses the refreshed session from the state file: still one login.
    let config = e.config.clone();
    if let Some(b) = e.bridge.take() {
        b.stop().await;
    }
    e.watcher.skip_seen();
    e.bridge = Some(start_bridge(config));
    link(&mut e.watcher, true).await;
    assert_eq!(e.sim.counters().logins, 1);
    e.stop().await;
}

async fn failed_commands_are_reported_with_their_reason(api: EwelinkApi) {
    let mut e = start(api).await;
    e.publish("hub2mqtt/ewelink_10000000ff/switch/set", "ON").await;
    let f = e.failure("hub2mqtt/ewelink_10000000ff/switch/set").await;
    assert_eq!((f["code"].as_str(), f["device"].as_str()), (Some("offline"), Some("ewelink_10000000ff")), "{f}");
    assert_eq!(f["command"], "ON");

    e.sim.set_responsive(ids::SWITCH, false);
    e.publish("hub2mqtt/ewelink_1000213ac8/switch/set", "ON").await;
    let f = e.failure("hub2mqtt/ewelink_1000213ac8/switch/set").await;
    assert_eq!(f["code"], "timeout", "{f}");
    assert!(f["reason"].as_str().unwrap().contains("504"), "{f}");

    e.publish("hub2mqtt/ewelink_1000000022/light/set", r#"{"effect":"Disco"}"#).await;
    let f = e.failure("hub2mqtt/ewelink_1000000022/light/set").await;
    assert_eq!(f["code"], "invalid", "{f}");
    assert!(e.sim.updates_for(ids::BULB_22).is_empty(), "an invalid command never reaches the cloud");

    // Logged in elsewhere: a clear problem event, and no new login.
    e.sim.fail_handshakes_406(1);
    e.sim.drop_sockets();
    let w = &mut e.watcher;
    let problem = w.expect_where("hub2mqtt/bridge/event", |m| m.json()["type"] == "hub_problem", LONG).await.json();
    assert!(problem["reason"].as_str().unwrap().contains("logged in elsewhere"), "{problem}");
    assert_eq!(e.sim.counters().logins, 1);
    e.stop().await;
}

/// A broker, a subscriber and the bridge with `account`, not waiting for anything.
async fn start_with(account: EwelinkConfig) -> (TestBroker, Watcher, RunningBridge, tempfile::TempDir) {
    let broker = TestBroker::start();
    let watcher = Watcher::connect(&broker, &["hub2mqtt/#", "homeassistant/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&broker, dir.path());
    config.ewelink.push(account);
    let bridge = start_bridge(config);
    (broker, watcher, bridge, dir)
}

async fn a_wrong_password_is_reported_once_not_retried_in_a_loop(api: EwelinkApi) {
    let sim = SimCloud::start(SimOptions::default()).await.unwrap();
    let mut wrong = account(&sim, api);
    wrong.password = Some(Secret::new("Wrong-Pass-987"));
    let (_broker, mut watcher, bridge, _dir) = start_with(wrong).await;
    let problem =
        watcher.expect_where("hub2mqtt/bridge/event", |m| m.json()["type"] == "hub_problem", LONG).await.json();
    assert_eq!(problem["hub"], "ewelink_test");
    let reason = problem["reason"].as_str().unwrap();
    assert!(reason.contains("wrong e-mail/phone or password"), "{reason}");
    assert!(!watcher.all("#").iter().any(|m| m.text().contains("Wrong-Pass-987")), "the password never leaks");
    // The next attempt is minutes away: one refused login, not a loop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sim.counters().login_failures, 1);
    bridge.stop().await;
}

async fn a_pre_obtained_session_needs_no_login(api: EwelinkApi) {
    let sim = SimCloud::start(SimOptions::default()).await.unwrap();
    let issued = sim.issue_session();
    let mut session = account(&sim, api);
    session.email = None;
    session.password = None;
    session.access_token = Some(Secret::new(issued.at));
    session.refresh_token = Some(Secret::new(issued.rt));
    session.api_key = Some(issued.apikey);
    let (_broker, mut watcher, bridge, _dir) = start_with(session).await;
    link(&mut watcher, true).await;
    watcher.publish("hub2mqtt/ewelink_1000000001/switch/set", "OFF", false).await;
    watcher.expect_latest("hub2mqtt/ewelink_1000000001", |m| m.json()["switch"] == "OFF", LONG).await;
    assert_eq!(sim.counters().logins, 0);
    bridge.stop().await;
}
