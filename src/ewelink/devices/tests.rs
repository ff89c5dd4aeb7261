//! Unit tests of the uiid capability table: every fixture device's entities, states and commands.

use super::spec as device_spec;
use super::*;
use crate::hub::EntityKind;
use crate::sim::ewelink::fixtures::{self, OWNER_APIKEY, USER_APIKEY, ids};

fn fixture(id: &str) -> CloudDevice {
    let d = fixtures::all().into_iter().find(|d| d.deviceid == id).unwrap();
    CloudDevice::from_json(&fixtures::device_json(&d)).unwrap()
}

fn with_params(uiid: u32, params: Value) -> CloudDevice {
    CloudDevice {
        deviceid: "1000abcdef".into(),
        name: "d".into(),
        uiid: Some(uiid),
        apikey: USER_APIKEY.into(),
        online: true,
        params: params.as_object().unwrap().clone(),
        tags: Map::new(),
        brand: None,
        model: None,
    }
}

fn keys(spec: &DeviceSpec) -> Vec<&str> {
    spec.entities.iter().map(|e| e.key.as_str()).collect()
}

fn cmd(device: &CloudDevice, key: &str, value: Value) -> Result<Value, String> {
    command(&Profile::of(device), &device.params, &[(key.to_owned(), value)]).map(Value::Object)
}

fn state_of(device: &CloudDevice) -> Map<String, Value> {
    state(&Profile::of(device), &device.params)
}

/// Sends a command's parameters back through the device (merge) and reads the state again.
fn round_trip(device: &mut CloudDevice, key: &str, value: Value) -> Map<String, Value> {
    let params = cmd(device, key, value).unwrap();
    merge_params(&mut device.params, params.as_object().unwrap());
    state_of(device)
}

#[test]
fn table_has_each_uiid_once_and_covers_the_field_notes() {
    let all = supported();
    let mut uiids: Vec<u32> = all.iter().map(|(u, _)| *u).collect();
    uiids.dedup();
    assert_eq!(uiids.len(), all.len(), "a uiid appears twice");
    for u in [
        1, 6, 14, 24, 27, 2, 7, 29, 3, 8, 30, 4, 9, 31, 77, 78, 81, 82, 83, 84, 107, 138, 160, 161, 162, 5, 32, 190,
        126, 130, 15, 181, 1770, 1771, 7014, 22, 36, 44, 59, 33, 137, 103, 135, 104, 136, 34, 11, 258, 102, 154,
    ] {
        assert!(uiids.contains(&u), "uiid {u} is missing");
    }
}

#[test]
fn every_fixture_gets_entities_and_a_state_for_each() {
    for sim in fixtures::all() {
        let d = CloudDevice::from_json(&fixtures::device_json(&sim)).unwrap();
        let profile = Profile::of(&d);
        let spec = device_spec(&d, &profile, USER_APIKEY);
        let st = state(&profile, &d.params);
        assert!(!spec.entities.is_empty(), "{}", d.deviceid);
        for e in &spec.entities {
            assert!(st.contains_key(&e.key), "{}: entity {} has no state in {st:?}", d.deviceid, e.key);
        }
        assert_eq!(spec.id, format!("ewelink_{}", d.deviceid));
        assert_eq!(spec.serial_number.as_deref(), Some(d.deviceid.as_str()));
    }
}

#[test]
fn single_switch() {
    let mut d = fixture(ids::SWITCH);
    let spec = device_spec(&d, &Profile::of(&d), USER_APIKEY);
    assert_eq!(keys(&spec), vec!["switch", "rssi", "firmware"]);
    assert_eq!(spec.entity("switch").unwrap().name, None);
    assert_eq!(spec.extra_commands, vec!["timers"]);
    assert_eq!(spec.sw_version.as_deref(), Some("3.0.1"));
    assert_eq!(spec.model.as_deref(), Some("Sonoff basic R2 (uiid 6)"));
    assert_eq!(state_of(&d)["switch"], "OFF");
    assert_eq!(state_of(&d)["rssi"], -50.0);
    assert_eq!(state_of(&d)["timers"], json!([]));
    assert_eq!(cmd(&d, "switch", json!("ON")).unwrap(), json!({"switch": "on"}));
    assert_eq!(cmd(&d, "switch", json!(false)).unwrap(), json!({"switch": "off"}));
    assert_eq!(cmd(&d, "switch", json!("TOGGLE")).unwrap(), json!({"switch": "on"}));
    assert!(cmd(&d, "switch", json!("maybe")).unwrap_err().contains("ON, OFF or TOGGLE"));
    assert!(cmd(&d, "rssi", json!(1)).unwrap_err().contains("read-only"));
    assert!(cmd(&d, "nope", json!(1)).unwrap_err().contains("no such entity"));
    assert_eq!(round_trip(&mut d, "switch", json!("ON"))["switch"], "ON");
}

#[test]
fn shared_devices_have_no_timers() {
    let d = fixture(ids::SHARED);
    assert_eq!(d.apikey, OWNER_APIKEY);
    let spec = device_spec(&d, &Profile::of(&d), USER_APIKEY);
    assert!(spec.extra_commands.is_empty());
    assert_eq!(keys(&spec), vec!["switch", "rssi", "firmware"]);
}

#[test]
fn channels_only_real_ones_named_from_tags() {
    let d = fixture(ids::TWO_CHANNEL);
    let spec = device_spec(&d, &Profile::of(&d), USER_APIKEY);
    assert_eq!(keys(&spec), vec!["switch_1", "switch_2", "rssi", "firmware"]);
    assert_eq!(spec.entity("switch_1").unwrap().name.as_deref(), Some("Lamp"));
    assert_eq!(spec.entity("switch_2").unwrap().name.as_deref(), Some("Heater"));
    let st = state_of(&d);
    assert_eq!((st["switch_1"].as_str(), st["switch_2"].as_str()), (Some("ON"), Some("OFF")));
    assert!(!st.contains_key("switch_3"));
    // Only the changed outlet is sent.
    assert_eq!(cmd(&d, "switch_2", json!("ON")).unwrap(), json!({"switches": [{"switch": "on", "outlet": 1}]}));
    let both =
        command(&Profile::of(&d), &d.params, &[("switch_2".into(), json!("ON")), ("switch_1".into(), json!("OFF"))]);
    assert_eq!(
        Value::Object(both.unwrap()),
        json!({"switches": [{"switch": "off", "outlet": 0}, {"switch": "on", "outlet": 1}]})
    );
    assert!(cmd(&d, "switch_3", json!("ON")).is_err());

    let four = fixture(ids::FOUR_CHANNEL);
    let spec = device_spec(&four, &Profile::of(&four), USER_APIKEY);
    assert_eq!(spec.entity("switch_4").unwrap().name.as_deref(), Some("Channel 4"));
    assert_eq!(state_of(&four)["switch_3"], "ON");
}

#[test]
fn one_channel_switches_device_is_a_plain_switch_entity() {
    let d = with_params(77, json!({"switches": [{"switch": "on", "outlet": 0}, {"switch": "off", "outlet": 1}]}));
    let spec = device_spec(&d, &Profile::of(&d), USER_APIKEY);
    assert_eq!(keys(&spec), vec!["switch"]);
    assert_eq!(state_of(&d)["switch"], "ON");
    assert_eq!(cmd(&d, "switch", json!("OFF")).unwrap(), json!({"switches": [{"switch": "off", "outlet": 0}]}));
}

#[test]
fn power_meters_scale_correctly() {
    let pow = fixture(ids::POWER_METER);
    let st = state_of(&pow);
    assert_eq!(
        (st["power"].as_f64(), st["voltage"].as_f64(), st["current"].as_f64()),
        (Some(120.55), Some(229.8), Some(0.52))
    );
    let spec = device_spec(&pow, &Profile::of(&pow), USER_APIKEY);
    match &spec.entity("power").unwrap().kind {
        EntityKind::Sensor(s) => assert_eq!((s.device_class, s.unit), (Some(SensorClass::Power), Some("W"))),
        other => panic!("{other:?}"),
    }

    let m190 = fixture(ids::METER_190);
    let st = state_of(&m190);
    assert_eq!(
        (st["power"].as_f64(), st["voltage"].as_f64(), st["current"].as_f64()),
        (Some(215.4), Some(230.12), Some(0.95))
    );
    assert_eq!(st["switch"], "ON");
    assert_eq!(
        cmd(&m190, "switch", json!("OFF")).unwrap(),
        json!({"switches": [{"switch": "off", "outlet": 0}], "operSide": 1})
    );

    let m126 = fixture(ids::METER_126);
    let st = state_of(&m126);
    assert_eq!(
        (st["power_1"].as_f64(), st["voltage_1"].as_f64(), st["current_1"].as_f64()),
        (Some(52.3), Some(229.5), Some(0.23))
    );
    assert_eq!(st["power_2"].as_f64(), Some(0.0));
    assert_eq!(st["switch_1"], "ON");
    let spec = device_spec(&m126, &Profile::of(&m126), USER_APIKEY);
    assert_eq!(spec.entity("power_2").unwrap().name.as_deref(), Some("Channel 2 power"));
    assert!(cmd(&m126, "power_1", json!(5)).unwrap_err().contains("read-only"));
}

#[test]
fn temperature_and_humidity() {
    let th = fixture(ids::TH_RELAY);
    let st = state_of(&th);
    assert_eq!((st["temperature"].as_f64(), st["humidity"].as_f64()), (Some(21.5), Some(48.0)));
    // Switching the relay by hand leaves the thermostat mode.
    assert_eq!(
        cmd(&th, "switch", json!("ON")).unwrap(),
        json!({"switch": "on", "mainSwitch": "off", "deviceType": "normal"})
    );
    let unavailable =
        with_params(15, json!({"switch": "off", "currentTemperature": "unavailable", "currentHumidity": "60"}));
    assert_eq!(state_of(&unavailable)["temperature"], Value::Null);
    let newer = fixture(ids::TH_181);
    assert_eq!(state_of(&newer)["temperature"].as_f64(), Some(19.8));
    assert_eq!(cmd(&newer, "switch", json!("ON")).unwrap(), json!({"switch": "on"}));
    let zigbee = fixture(ids::ZIGBEE_TH);
    let st = state_of(&zigbee);
    assert_eq!(
        (st["temperature"].as_f64(), st["humidity"].as_f64(), st["battery"].as_f64()),
        (Some(12.34), Some(65.5), Some(87.0))
    );
    let spec = device_spec(&zigbee, &Profile::of(&zigbee), USER_APIKEY);
    assert!(spec.extra_commands.is_empty(), "a sensor has no timers");
}

#[test]
fn door_sensor() {
    let mut door = fixture(ids::DOOR_102);
    assert_eq!(state_of(&door)["door"], false);
    merge_params(&mut door.params, json!({"switch": "on"}).as_object().unwrap());
    assert_eq!(state_of(&door)["door"], true);
    let spec = device_spec(&door, &Profile::of(&door), USER_APIKEY);
    assert!(matches!(
        spec.entity("door").unwrap().kind,
        EntityKind::BinarySensor { device_class: Some(BinarySensorClass::Door), .. }
    ));
    assert!(cmd(&door, "door", json!(true)).unwrap_err().contains("read-only"));
}

#[test]
fn b1_bulb_white_and_colour() {
    let mut b1 = fixture(ids::BULB_22);
    let spec = device_spec(&b1, &Profile::of(&b1), USER_APIKEY);
    match &spec.entity("light").unwrap().kind {
        EntityKind::Light(l) => {
            assert_eq!((l.brightness_scale, l.color_temp_kelvin, l.rgb), (Some(255), Some((2700, 6500)), true))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        state_of(&b1)["light"],
        json!({"state": "ON", "brightness": 128, "color_mode": "color_temp", "color_temp": 4600})
    );
    let st = round_trip(&mut b1, "light", json!({"brightness": 200, "color_temp": 6500}));
    assert_eq!(st["light"], json!({"state": "ON", "brightness": 200, "color_mode": "color_temp", "color_temp": 6500}));
    assert_eq!(b1.params["channel0"], "200");
    assert_eq!(b1.params["channel1"], "0");
    let st = round_trip(&mut b1, "light", json!({"color": {"r": 255, "g": 0, "b": 0}, "brightness": 128}));
    assert_eq!(
        st["light"],
        json!({"state": "ON", "brightness": 128, "color_mode": "rgb", "color": {"r": 255, "g": 0, "b": 0}})
    );
    assert_eq!((b1.params["zyx_mode"].as_u64(), b1.params["channel2"].as_str()), (Some(2), Some("128")));
    // Brightness alone in colour mode keeps the colour.
    let st = round_trip(&mut b1, "light", json!({"brightness": 255}));
    assert_eq!(st["light"]["color"], json!({"r": 255, "g": 0, "b": 0}));
    assert_eq!(cmd(&b1, "light", json!("OFF")).unwrap(), json!({"state": "off"}));
    assert_eq!(cmd(&b1, "light", json!({"state": "ON"})).unwrap(), json!({"state": "on"}));
    assert!(cmd(&b1, "light", json!({"effect": "Party"})).is_err());
    assert!(cmd(&b1, "light", json!({"color": {"h": 1, "s": 2}})).is_err());
    assert!(cmd(&b1, "light", json!({"flash": "long"})).unwrap_err().contains("unknown light field"));
}

#[test]
fn dimmers() {
    let mut d36 = fixture(ids::DIMMER_36);
    assert_eq!(state_of(&d36)["light"], json!({"state": "ON", "brightness": 60, "color_mode": "brightness"}));
    assert_eq!(cmd(&d36, "light", json!({"brightness": 5})).unwrap(), json!({"switch": "on", "bright": 10}));
    assert_eq!(round_trip(&mut d36, "light", json!({"brightness": 75}))["light"]["brightness"], 75);
    assert!(cmd(&d36, "light", json!({"color_temp": 3000})).is_err());

    let d44 = fixture(ids::DIMMER_44);
    assert_eq!(state_of(&d44)["light"]["state"], "OFF");
    assert_eq!(
        cmd(&d44, "light", json!({"state": "ON", "brightness": 50})).unwrap(),
        json!({"switch": "on", "brightness": 50, "mode": 0})
    );
    assert_eq!(cmd(&d44, "light", json!("ON")).unwrap(), json!({"switch": "on"}));
}

#[test]
fn rgb_strip_with_effects() {
    let mut strip = fixture(ids::STRIP_59);
    assert_eq!(
        state_of(&strip)["light"],
        json!({"state": "ON", "brightness": 80, "color_mode": "rgb", "color": {"r": 255, "g": 64, "b": 0}, "effect": "Colorful"})
    );
    assert_eq!(
        cmd(&strip, "light", json!({"color": {"r": 1, "g": 2, "b": 3}, "brightness": 40})).unwrap(),
        json!({"switch": "on", "bright": 40, "colorR": 1, "colorG": 2, "colorB": 3, "mode": 1})
    );
    let st = round_trip(&mut strip, "light", json!({"effect": "RGB Pulse"}));
    assert_eq!(strip.params["mode"], 9);
    assert_eq!(st["light"]["effect"], "RGB Pulse");
    assert!(cmd(&strip, "light", json!({"effect": "Disco"})).unwrap_err().contains("unknown effect"));
    let spec = device_spec(&strip, &Profile::of(&strip), USER_APIKEY);
    match &spec.entity("light").unwrap().kind {
        EntityKind::Light(l) => assert_eq!((l.effects.len(), l.rgb, l.color_temp_kelvin), (12, true, None)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tunable_white_and_rgbw() {
    let mut b02 = fixture(ids::WHITE_103);
    assert_eq!(
        state_of(&b02)["light"],
        json!({"state": "ON", "brightness": 70, "color_mode": "color_temp", "color_temp": 4607})
    );
    assert_eq!(
        cmd(&b02, "light", json!({"color_temp": 2700})).unwrap(),
        json!({"switch": "on", "ltype": "white", "white": {"br": 70, "ct": 0}})
    );
    let st = round_trip(&mut b02, "light", json!({"color_temp": 6500, "brightness": 100}));
    assert_eq!(st["light"]["color_temp"], 6500);
    assert_eq!(b02.params["white"], json!({"br": 100, "ct": 255}));
    // Mireds from a client that does not speak Kelvin: 370 mired ≈ 2703 K.
    assert_eq!(cmd(&b02, "light", json!({"color_temp": 370})).unwrap()["white"]["ct"], 0);
    assert!(cmd(&b02, "light", json!({"color": {"r": 1, "g": 2, "b": 3}})).unwrap_err().contains("no colour"));

    let mut b05 = fixture(ids::RGBW_104);
    assert_eq!(
        state_of(&b05)["light"],
        json!({"state": "OFF", "brightness": 60, "color_mode": "rgb", "color": {"r": 0, "g": 128, "b": 255}})
    );
    let st = round_trip(&mut b05, "light", json!({"state": "ON", "color_temp": 4600}));
    assert_eq!(st["light"]["color_mode"], "color_temp");
    assert_eq!(b05.params["ltype"], "white");
    let st = round_trip(&mut b05, "light", json!({"color": {"r": 10, "g": 20, "b": 30}, "brightness": 90}));
    assert_eq!(
        st["light"],
        json!({"state": "ON", "brightness": 90, "color_mode": "rgb", "color": {"r": 10, "g": 20, "b": 30}})
    );

    let b136 = with_params(136, json!({"switch": "on", "ltype": "white", "white": {"br": 50, "ct": 100}}));
    assert_eq!(state_of(&b136)["light"]["color_temp"], 6500);
    assert_eq!(cmd(&b136, "light", json!({"color_temp": 4600})).unwrap()["white"]["ct"], 50);
}

#[test]
fn fan_with_light() {
    let mut fan = fixture(ids::FAN_34);
    let spec = device_spec(&fan, &Profile::of(&fan), USER_APIKEY);
    assert_eq!(keys(&spec), vec!["fan", "light", "rssi", "firmware"]);
    let st = state_of(&fan);
    assert_eq!(st["fan"], json!({"state": "ON", "percentage": 67, "preset_mode": "medium"}));
    assert_eq!(st["light"], json!({"state": "ON"}));
    assert_eq!(
        cmd(&fan, "fan", json!({"preset_mode": "high"})).unwrap(),
        json!({"switches": [{"switch": "on", "outlet": 1}, {"switch": "off", "outlet": 2}, {"switch": "on", "outlet": 3}]})
    );
    assert_eq!(round_trip(&mut fan, "fan", json!({"percentage": 20}))["fan"]["preset_mode"], "low");
    assert_eq!(
        round_trip(&mut fan, "fan", json!("OFF"))["fan"],
        json!({"state": "OFF", "percentage": 0, "preset_mode": null})
    );
    // ON again keeps the last speed.
    assert_eq!(round_trip(&mut fan, "fan", json!("ON"))["fan"]["preset_mode"], "low");
    assert_eq!(
        cmd(&fan, "light", json!({"state": "OFF"})).unwrap(),
        json!({"switches": [{"switch": "off", "outlet": 0}]})
    );
    assert!(cmd(&fan, "fan", json!({"preset_mode": "turbo"})).is_err());
    assert!(cmd(&fan, "fan", json!({"percentage": 150})).is_err());
}

#[test]
fn cover() {
    let mut cover = fixture(ids::COVER_11);
    assert_eq!(state_of(&cover)["cover"], json!({"state": "open", "position": 60}));
    assert_eq!(cmd(&cover, "cover", json!("OPEN")).unwrap(), json!({"switch": "on"}));
    assert_eq!(cmd(&cover, "cover", json!("stop")).unwrap(), json!({"switch": "pause"}));
    assert_eq!(cmd(&cover, "cover", json!({"position": 30})).unwrap(), json!({"setclose": 70}));
    assert_eq!(
        round_trip(&mut cover, "cover", json!({"position": 0}))["cover"],
        json!({"state": "closed", "position": 0})
    );
    merge_params(&mut cover.params, json!({"switch": "on", "setclose": 50}).as_object().unwrap());
    assert_eq!(state_of(&cover)["cover"]["state"], "opening");
    assert!(cmd(&cover, "cover", json!("WIGGLE")).is_err());
}

#[test]
fn unknown_uiids_fall_back_on_their_parameters() {
    let sw = fixture(ids::UNKNOWN_SWITCH);
    let p = Profile::of(&sw);
    assert!(!p.known);
    assert_eq!(p.caps, vec![Cap::Switch]);
    assert_eq!(cmd(&sw, "switch", json!("OFF")).unwrap(), json!({"switch": "off"}));

    let multi = with_params(
        4242,
        json!({"switches": [{"switch": "on", "outlet": 0}, {"switch": "off", "outlet": 1}, {"switch": "off", "outlet": 2}]}),
    );
    assert_eq!(Profile::of(&multi).caps, vec![Cap::Channels(3)]);

    let raw = fixture(ids::UNKNOWN_RAW);
    let spec = device_spec(&raw, &Profile::of(&raw), USER_APIKEY);
    assert_eq!(keys(&spec), vec!["uiid", "rssi", "firmware"]);
    assert_eq!(spec.entity("uiid").unwrap().attributes_key.as_deref(), Some("params"));
    let st = state_of(&raw);
    assert_eq!(st["uiid"], 9998);
    assert_eq!(st["params"]["mode"], "eco");
    assert!(spec.extra_commands.is_empty());
    assert!(cmd(&raw, "uiid", json!(1)).unwrap_err().contains("read-only"));
}

#[test]
fn merging_pushes() {
    let mut p = json!({"switches": [{"switch": "on", "outlet": 0}, {"switch": "on", "outlet": 1}], "white": {"br": 1, "ct": 2}, "x": 1})
        .as_object()
        .unwrap()
        .clone();
    merge_params(
        &mut p,
        json!({"switches": [{"switch": "off", "outlet": 1}], "white": {"br": 9}, "x": 2}).as_object().unwrap(),
    );
    assert_eq!(
        Value::Object(p),
        json!({"switches": [{"switch": "on", "outlet": 0}, {"switch": "off", "outlet": 1}], "white": {"br": 9, "ct": 2}, "x": 2})
    );
}
