//! The bridge core through a real broker: a test hub (this file, holding a `HubHandle`) on one side, an
//! independent MQTT subscriber on the other, asserting what a Home Assistant or Node-RED user would see.

mod support;

use std::time::Duration;

use hub2mqtt::app::App;
use hub2mqtt::hub::{
    CommandError, CommandOp, DeviceSpec, EntityKind, EntitySpec, HubHandle, LightSpec, SensorClass, SensorSpec,
    StateClass,
};
use serde_json::{Value, json};
use support::{Message, RunningBridge, TestBroker, WAIT, Watcher, start_app, test_config};

fn values(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().expect("an object").clone()
}

/// A plug with a switch, a power sensor and a diagnostic RSSI, plus a bulb-like light.
fn plug(id: &str) -> DeviceSpec {
    let mut spec = DeviceSpec::new(id, "Kitchen plug");
    spec.manufacturer = Some("Test".into());
    spec.entities.push(EntitySpec::new("switch", None, EntityKind::Switch));
    spec.entities.push(EntitySpec::new(
        "power",
        Some("Power"),
        EntityKind::Sensor(SensorSpec::measured(Some(SensorClass::Power), Some("W"), Some(StateClass::Measurement))),
    ));
    spec.entities.push(EntitySpec::new("rssi", Some("RSSI"), EntityKind::Sensor(SensorSpec::default())).diagnostic());
    spec.entities.push(EntitySpec::new(
        "light",
        Some("Light"),
        EntityKind::Light(LightSpec {
            brightness_scale: Some(100),
            color_temp_kelvin: Some((2700, 6500)),
            ..Default::default()
        }),
    ));
    spec.extra_commands.push("timers".into());
    spec
}

struct Setup {
    broker: TestBroker,
    watcher: Watcher,
    hub: HubHandle,
    bridge: RunningBridge,
    _dir: tempfile::TempDir,
}

/// A broker, a watcher subscribed to everything, and a running bridge with one test hub.
async fn setup() -> Setup {
    let broker = TestBroker::start();
    let watcher = Watcher::connect(&broker, &["hub2mqtt/#", "homeassistant/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::new(test_config(&broker, dir.path()));
    let hub = app.add_hub("test_hub", "Test hub");
    let bridge = start_app(app);
    let mut watcher = watcher;
    // The bridge publishes its info once it has taken the connection: from here on it publishes live.
    watcher.expect("hub2mqtt/bridge/info", WAIT).await;
    Setup { broker, watcher, hub, bridge, _dir: dir }
}

#[tokio::test]
async fn discovery_state_and_availability_reach_a_subscriber() {
    let mut s = setup().await;
    let online = s.watcher.expect("hub2mqtt/bridge/state", WAIT).await;
    assert_eq!((online.text().as_str(), online.retain), ("online", false));

    s.hub.events.device(plug("plug_1")).await.unwrap();
    s.hub
        .events
        .state("plug_1", values(json!({"switch": "ON", "power": 12.5, "light": {"state": "ON", "color_temp": 4000}})))
        .await
        .unwrap();

    let switch = s.watcher.expect("homeassistant/switch/plug_1/switch/config", WAIT).await.json();
    assert_eq!(switch["unique_id"], "hub2mqtt_plug_1_switch");
    assert_eq!(switch["command_topic"], "hub2mqtt/plug_1/switch/set");
    assert_eq!(switch["state_topic"], "hub2mqtt/plug_1");
    assert!(switch["name"].is_null(), "the main feature takes the device name");
    assert_eq!(switch["device"]["name"], "Kitchen plug");
    let availability: Vec<&str> =
        switch["availability"].as_array().unwrap().iter().map(|a| a["topic"].as_str().unwrap()).collect();
    assert_eq!(availability, ["hub2mqtt/bridge/state", "hub2mqtt/plug_1/availability"]);
    assert_eq!(switch["availability_mode"], "all");

    let power = s.watcher.expect("homeassistant/sensor/plug_1/power/config", WAIT).await.json();
    assert_eq!((power["device_class"].as_str(), power["unit_of_measurement"].as_str()), (Some("power"), Some("W")));
    let rssi = s.watcher.expect("homeassistant/sensor/plug_1/rssi/config", WAIT).await.json();
    assert_eq!(rssi["entity_category"], "diagnostic");

    let avail = s.watcher.expect("hub2mqtt/plug_1/availability", WAIT).await;
    assert_eq!(avail.text(), "online");
    let state = s.watcher.expect("hub2mqtt/plug_1", WAIT).await;
    assert_eq!(
        state.json(),
        json!({"switch": "ON", "power": 12.5, "rssi": null, "light": {"state": "ON", "color_temp": 4000}})
    );
    let light = s.watcher.expect("hub2mqtt/plug_1/light", WAIT).await;
    assert_eq!(light.json(), json!({"state": "ON", "color_temp": 250}), "Home Assistant's light topic speaks mireds");

    s.hub.events.availability("plug_1", false).await.unwrap();
    s.watcher.expect_where("hub2mqtt/plug_1/availability", |m| m.text() == "offline", WAIT).await;

    // The bridge device: its own entities and the device count.
    let hubs = s.watcher.expect("homeassistant/binary_sensor/hub2mqtt_bridge/hub_test_hub/config", WAIT).await.json();
    assert_eq!(hubs["name"], "Test hub");
    s.watcher.expect_latest("hub2mqtt/bridge/info", |m| m.json()["devices"] == 1, WAIT).await;
    s.bridge.stop().await;
    s.watcher.expect_latest("hub2mqtt/bridge/state", |m| m.text() == "offline", WAIT).await;
    drop(s.broker);
}

#[tokio::test]
async fn unchanged_state_is_not_republished() {
    let mut s = setup().await;
    s.hub.events.device(plug("plug_1")).await.unwrap();
    for power in [1.0, 1.0, 1.0, 2.0] {
        s.hub.events.state("plug_1", values(json!({"power": power}))).await.unwrap();
    }
    s.watcher.expect_where("hub2mqtt/plug_1", |m| m.json()["power"] == 2.0, WAIT).await;
    let states: Vec<f64> =
        s.watcher.all("hub2mqtt/plug_1").iter().map(|m| m.json()["power"].as_f64().unwrap()).collect();
    assert_eq!(states, [1.0, 2.0], "one publish per change");
    s.bridge.stop().await;
}

#[tokio::test]
async fn commands_are_routed_and_every_failure_is_reported() {
    let mut s = setup().await;
    s.hub.events.device(plug("plug_1")).await.unwrap();
    s.watcher.expect("hub2mqtt/plug_1/availability", WAIT).await;

    // An entity command reaches the hub as (key, value) and is confirmed: no event.
    s.watcher.publish("hub2mqtt/plug_1/switch/set", "ON", false).await;
    let cmd = tokio::time::timeout(WAIT, s.hub.commands.recv()).await.unwrap().unwrap();
    assert_eq!((cmd.device.as_str(), cmd.op), ("plug_1", CommandOp::Set));
    assert_eq!(cmd.changes, vec![("switch".to_owned(), json!("ON"))]);
    cmd.reply.ok();

    // A device-level JSON set carries several keys; a light command from HA is converted to Kelvin.
    s.watcher.publish("hub2mqtt/plug_1/set", r#"{"switch":"OFF","light":{"state":"ON"}}"#, false).await;
    let cmd = tokio::time::timeout(WAIT, s.hub.commands.recv()).await.unwrap().unwrap();
    assert_eq!(cmd.changes.len(), 2);
    cmd.reply.ok();
    s.watcher.publish("hub2mqtt/plug_1/light/set", r#"{"state":"ON","color_temp":370}"#, false).await;
    let cmd = tokio::time::timeout(WAIT, s.hub.commands.recv()).await.unwrap().unwrap();
    assert_eq!(cmd.changes, vec![("light".to_owned(), json!({"state": "ON", "color_temp": 2703}))]);
    cmd.reply.ok();
    s.watcher.publish("hub2mqtt/plug_1/timers/add", r#"{"type":"once"}"#, false).await;
    let cmd = tokio::time::timeout(WAIT, s.hub.commands.recv()).await.unwrap().unwrap();
    assert_eq!(cmd.op, CommandOp::Add);

    // A hub failure is reported with its code and reason.
    cmd.reply.fail(CommandError::Offline);
    let event = s.watcher.expect("hub2mqtt/bridge/event", WAIT).await.json();
    assert_eq!(event["type"], "command_failed");
    assert_eq!(event["code"], "offline");
    assert_eq!(event["topic"], "hub2mqtt/plug_1/timers/add");
    assert_eq!(event["command"], json!({"type": "once"}));

    // A reply dropped unanswered is a failure too.
    s.watcher.publish("hub2mqtt/plug_1/switch/set", "OFF", false).await;
    drop(tokio::time::timeout(WAIT, s.hub.commands.recv()).await.unwrap().unwrap());
    let event = s.watcher.expect("hub2mqtt/bridge/event", WAIT).await.json();
    assert_eq!(event["code"], "unavailable");

    // The bridge refuses what it can judge itself, and the hub never sees it.
    let refused = [
        ("hub2mqtt/plug_1/set", "not json", "invalid"),
        ("hub2mqtt/plug_1/set", r#"{"nope":"ON"}"#, "unknown_entity"),
        ("hub2mqtt/plug_1/power/set", "5", "unknown_entity"),
        ("hub2mqtt/ghost/switch/set", "ON", "unknown_device"),
        ("hub2mqtt/plug_1/switch/set", "", "invalid"),
    ];
    for (topic, payload, code) in refused {
        s.watcher.publish(topic, payload, false).await;
        let event = s.watcher.expect("hub2mqtt/bridge/event", WAIT).await.json();
        assert_eq!((event["topic"].as_str(), event["code"].as_str()), (Some(topic), Some(code)), "{event}");
        assert!(!event["reason"].as_str().unwrap_or("").is_empty());
    }
    assert!(s.hub.commands.try_recv().is_err(), "refused commands never reach the hub");
    s.bridge.stop().await;
}

#[tokio::test]
async fn a_retained_command_is_not_replayed_on_reconnect() {
    let broker = TestBroker::start();
    let mut watcher = Watcher::connect(&broker, &["hub2mqtt/#"]).await;
    // A command someone published with the retain flag before the bridge started.
    watcher.publish("hub2mqtt/plug_1/switch/set", "ON", true).await;
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::new(test_config(&broker, dir.path()));
    let mut hub = app.add_hub("test_hub", "Test hub");
    hub.events.device(plug("plug_1")).await.unwrap();
    let bridge = start_app(app);
    let event = watcher.expect_where("hub2mqtt/bridge/event", |m| m.json()["code"] == "retained", WAIT).await.json();
    assert_eq!(event["topic"], "hub2mqtt/plug_1/switch/set");
    assert!(hub.commands.try_recv().is_err());
    bridge.stop().await;
}

#[tokio::test]
async fn vanished_entities_and_removed_devices_are_cleared() {
    let mut s = setup().await;
    s.hub.events.device(plug("plug_1")).await.unwrap();
    s.hub.events.state("plug_1", values(json!({"switch": "ON"}))).await.unwrap();
    s.watcher.expect("hub2mqtt/plug_1", WAIT).await;

    let mut smaller = plug("plug_1");
    smaller.entities.retain(|e| e.key != "power");
    s.hub.events.device(smaller).await.unwrap();
    let topic = "homeassistant/sensor/plug_1/power/config";
    let first = s.watcher.expect(topic, WAIT).await;
    assert!(!first.payload.is_empty());
    let cleared = s.watcher.expect(topic, WAIT).await;
    assert!(cleared.payload.is_empty() && !cleared.retain, "an empty retained config removes the entity");
    assert!(s.watcher.all("homeassistant/switch/plug_1/switch/config").len() == 1, "unchanged configs are not re-sent");

    s.hub.events.send(hub2mqtt::hub::HubEvent::DeviceRemoved { device: "plug_1".into() }).await.unwrap();
    for topic in ["homeassistant/switch/plug_1/switch/config", "hub2mqtt/plug_1", "hub2mqtt/plug_1/availability"] {
        s.watcher.expect_where(topic, |m| m.payload.is_empty(), WAIT).await;
    }
    s.watcher.expect_latest("hub2mqtt/bridge/info", |m| m.json()["devices"] == 0, WAIT).await;
    s.bridge.stop().await;
}

#[tokio::test]
async fn home_assistant_birth_republishes_discovery_then_states() {
    let mut s = setup().await;
    s.hub.events.device(plug("plug_1")).await.unwrap();
    s.hub.events.state("plug_1", values(json!({"switch": "ON"}))).await.unwrap();
    s.watcher.expect("hub2mqtt/plug_1", WAIT).await;
    s.watcher.skip_seen();

    s.watcher.publish("homeassistant/status", "online", false).await;
    let config = s.watcher.expect("homeassistant/switch/plug_1/switch/config", WAIT).await;
    assert!(!config.payload.is_empty());
    let state = s.watcher.expect_where("hub2mqtt/plug_1", |m| m.json()["switch"] == "ON", WAIT).await;
    // Discovery first, then states.
    assert!(config.seq < state.seq);
    let late = s.watcher.after(state.seq, "homeassistant/#");
    assert!(late.is_empty(), "discovery after the state: {late:?}");
    s.bridge.stop().await;
}

#[tokio::test]
async fn hub_link_shows_on_the_bridge_device_and_as_an_event() {
    let mut s = setup().await;
    s.watcher.expect_latest("hub2mqtt/bridge/info", |m| m.json()["hubs"]["test_hub"] == false, WAIT).await;
    s.hub.events.link(true, None).await.unwrap();
    s.watcher.expect_latest("hub2mqtt/bridge/info", |m| m.json()["hubs"]["test_hub"] == true, WAIT).await;
    s.hub.events.link(false, Some("router unreachable".into())).await.unwrap();
    let event = s.watcher.expect_where("hub2mqtt/bridge/event", |m| m.json()["type"] == "hub_link", WAIT).await.json();
    assert_eq!((event["up"].as_bool(), event["reason"].as_str()), (Some(true), None));
    let event = s.watcher.expect_where("hub2mqtt/bridge/event", |m| m.json()["type"] == "hub_link", WAIT).await.json();
    assert_eq!((event["hub"].as_str(), event["reason"].as_str()), (Some("test_hub"), Some("router unreachable")));
    s.hub.events.problem(Some("plug_1"), "odd response").await.unwrap();
    let event =
        s.watcher.expect_where("hub2mqtt/bridge/event", |m| m.json()["type"] == "hub_problem", WAIT).await.json();
    assert_eq!(event["reason"], "odd response");
    s.bridge.stop().await;
}

#[tokio::test]
async fn hostile_device_ids_cannot_inject_topics() {
    let mut s = setup().await;
    for id in ["a/b #+", "", "ünïcode dévice"] {
        let mut spec = plug(id);
        spec.name = id.to_owned();
        s.hub.events.device(spec).await.unwrap();
        s.hub.events.state(id, values(json!({"switch": "ON"}))).await.unwrap();
    }
    for topic_id in ["a_b___", "_", "_n_code_d_vice"] {
        let config = s.watcher.expect(&format!("homeassistant/switch/{topic_id}/switch/config"), WAIT).await.json();
        assert_eq!(config["command_topic"], format!("hub2mqtt/{topic_id}/switch/set"));
        s.watcher.expect_latest(&format!("hub2mqtt/{topic_id}"), |m| m.json()["switch"] == "ON", WAIT).await;
    }
    // Every topic the bridge used is a plain path: no wildcard, no empty level.
    for m in s.watcher.all("#") {
        assert!(!m.topic.contains(['+', '#']) && !m.topic.contains("//"), "{}", m.topic);
    }
    // A second device whose id sanitises to a taken one is refused with a reason.
    s.hub.events.device(plug("a+b/#+")).await.unwrap();
    let event =
        s.watcher.expect_where("hub2mqtt/bridge/event", |m| m.json()["type"] == "hub_problem", WAIT).await.json();
    assert!(event["reason"].as_str().unwrap().contains("already used"), "{event}");
    s.bridge.stop().await;
}

#[tokio::test]
async fn broker_restart_reannounces_everything() {
    let mut s = setup().await;
    s.hub.events.device(plug("plug_1")).await.unwrap();
    s.hub.events.state("plug_1", values(json!({"switch": "ON"}))).await.unwrap();
    s.watcher.expect("hub2mqtt/plug_1", WAIT).await;

    // A broker without persistence forgets every retained message when it restarts.
    s.broker.restart();
    s.watcher.skip_seen();
    let online =
        s.watcher.expect_where("hub2mqtt/bridge/state", |m| m.text() == "online", Duration::from_secs(60)).await;
    assert_eq!(online.text(), "online");
    s.watcher.expect("homeassistant/switch/plug_1/switch/config", WAIT).await;
    s.watcher.expect_where("hub2mqtt/plug_1", |m: &Message| m.json()["switch"] == "ON", WAIT).await;
    s.watcher.expect_where("hub2mqtt/plug_1/availability", |m| m.text() == "online", WAIT).await;

    // Commands work again: the bridge re-subscribed.
    s.watcher.publish("hub2mqtt/plug_1/switch/set", "OFF", false).await;
    let cmd = tokio::time::timeout(WAIT, s.hub.commands.recv()).await.unwrap().unwrap();
    assert_eq!(cmd.changes, vec![("switch".to_owned(), json!("OFF"))]);
    cmd.reply.ok();
    s.bridge.stop().await;
}
