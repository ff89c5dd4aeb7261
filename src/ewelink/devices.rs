//! The uiid capability table (field notes, section 2) and the mapping between a device's cloud
//! parameters and the bridge's entities: `params` → state values, and entity commands → the `params` of an
//! `update` (only what changes: one outlet for one channel).
//!
//! Lights are Home Assistant JSON-schema lights: brightness on the device's own scale (1–100 or 0–255),
//! colour temperature in Kelvin (2700–6500 K mapped onto the device's `ct` range), RGB where the device
//! has it. An unknown uiid falls back on its parameters (`switch` → switch, `switches` → channels,
//! otherwise raw attributes) and is logged once.
//!
//! Pure functions over JSON: knows nothing of sockets, tokens or MQTT.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value, json};

use crate::hub::{
    BinarySensorClass, CoverSpec, DeviceSpec, EntityKind, EntitySpec, FanSpec, LightSpec, SensorClass, SensorSpec,
    StateClass,
};

use super::http::CloudDevice;

/// Colour temperature range we expose for every tunable-white device (warmest, coldest), in Kelvin.
pub const KELVIN: (u32, u32) = (2700, 6500);

/// What a device can do; a device has one or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `switch` on/off (thermostat relays also get `mainSwitch: off` when switched by hand).
    Switch,
    /// `switches[{switch, outlet}]`, this many real channels (extra reported outlets are ignored).
    Channels(u8),
    /// uiid 190: `switches[outlet 0]` with `operSide: 1`; `power`/`voltage`/`current` integers × 0.01.
    Meter190,
    /// `power`, `voltage`, `current` as strings with 2 decimals.
    PowerText,
    /// `actPow_0N`, `voltage_0N`, `current_0N` integers × 0.01 per channel.
    ChannelMeters(u8),
    /// `currentTemperature` / `currentHumidity` strings (or newer `temperature` / `humidity`).
    ClimateText,
    /// Zigbee sensors: `temperature`, `humidity` × 0.01, `battery` %.
    ClimateCenti,
    /// `switch` on = open; `battery`.
    Door,
    Light(LightModel),
    /// uiid 34: outlet 0 the light, outlets 1–3 the fan speed.
    Fan34,
    /// `switch` on/off/pause, `setclose` 0–100 (100 = closed).
    Cover,
    /// Nothing known: the parameters as attributes.
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LightModel {
    /// uiid 22: `state`, `zyx_mode` 1 (white) / 2 (colour), `channel0..4` "0".."255" (cold, warm, r, g, b).
    B1,
    /// uiid 36: `switch`, `bright` 10–100.
    Bright36,
    /// uiid 44: `switch`, `brightness` 0–100, sent with `switch: on` and `mode: 0`.
    Bright44,
    /// uiid 59 and kin: `switch`, `bright` 1–100, `colorR/G/B`, `mode` 1–12.
    Strip59,
    /// uiid 103 and kin: `switch`, `ltype: white`, `white {br 1..100, ct 0..ct_max}`.
    White { ct_max: u8 },
    /// uiid 104 and kin: as White plus `ltype: color`, `color {br, r, g, b}`.
    ColorWhite { ct_max: u8 },
}

struct Row {
    uiids: &'static [u32],
    caps: &'static [Cap],
    kind: &'static str,
}

/// The capability table. Order does not matter; a uiid appears once.
const TABLE: &[Row] = &[
    Row { uiids: &[1, 6, 14, 24, 27], caps: &[Cap::Switch], kind: "single switch" },
    Row { uiids: &[2, 7, 29, 82, 161], caps: &[Cap::Channels(2)], kind: "2-channel switch" },
    Row { uiids: &[3, 8, 30, 83, 162], caps: &[Cap::Channels(3)], kind: "3-channel switch" },
    Row { uiids: &[4, 9, 31, 84], caps: &[Cap::Channels(4)], kind: "4-channel switch" },
    Row { uiids: &[77, 78, 81, 107, 138, 160], caps: &[Cap::Channels(1)], kind: "1-channel switch (switches)" },
    Row { uiids: &[5, 32], caps: &[Cap::Switch, Cap::PowerText], kind: "switch with power meter" },
    Row { uiids: &[190], caps: &[Cap::Meter190], kind: "switch with power meter (×0.01)" },
    Row { uiids: &[126], caps: &[Cap::Channels(2), Cap::ChannelMeters(2)], kind: "2-channel meter" },
    Row { uiids: &[130], caps: &[Cap::Channels(4), Cap::ChannelMeters(4)], kind: "4-channel meter" },
    Row { uiids: &[15, 181], caps: &[Cap::Switch, Cap::ClimateText], kind: "relay with temperature/humidity" },
    Row { uiids: &[1770, 1771, 7014], caps: &[Cap::ClimateCenti], kind: "Zigbee temperature/humidity" },
    Row { uiids: &[22], caps: &[Cap::Light(LightModel::B1)], kind: "RGB + white bulb" },
    Row { uiids: &[36], caps: &[Cap::Light(LightModel::Bright36)], kind: "dimmer (10–100)" },
    Row { uiids: &[44], caps: &[Cap::Light(LightModel::Bright44)], kind: "dimmer (0–100)" },
    Row { uiids: &[59, 33, 137], caps: &[Cap::Light(LightModel::Strip59)], kind: "RGB strip" },
    Row { uiids: &[103, 135], caps: &[Cap::Light(LightModel::White { ct_max: 255 })], kind: "tunable white" },
    Row { uiids: &[104], caps: &[Cap::Light(LightModel::ColorWhite { ct_max: 255 })], kind: "RGB + tunable white" },
    Row { uiids: &[136], caps: &[Cap::Light(LightModel::ColorWhite { ct_max: 100 })], kind: "RGB + tunable white" },
    Row { uiids: &[34], caps: &[Cap::Fan34], kind: "fan with light" },
    Row { uiids: &[11, 258], caps: &[Cap::Cover], kind: "cover" },
    Row { uiids: &[102, 154], caps: &[Cap::Door], kind: "door sensor" },
];

/// Every uiid in the table with what it is (for documentation and tests).
pub fn supported() -> Vec<(u32, &'static str)> {
    let mut all: Vec<_> = TABLE.iter().flat_map(|r| r.uiids.iter().map(move |u| (*u, r.kind))).collect();
    all.sort();
    all
}

/// Names of the uiid 59 strip's `mode`s 1–12, its effects.
const STRIP_EFFECTS: [&str; 12] = [
    "Colorful",
    "Colorful Gradient",
    "Colorful Breath",
    "DIY Gradient",
    "DIY Pulse",
    "DIY Breath",
    "DIY Strobe",
    "RGB Gradient",
    "RGB Pulse",
    "RGB Breath",
    "RGB Strobe",
    "Music",
];

/// A device's capabilities and what they need to know (channel names).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub uiid: Option<u32>,
    pub caps: Vec<Cap>,
    /// Whether the uiid is in the table.
    pub known: bool,
    /// Names of the channels, from `tags.ck_channel_name` or "Channel N".
    pub channel_names: Vec<String>,
}

impl Profile {
    pub fn of(device: &CloudDevice) -> Profile {
        let row = device.uiid.and_then(|u| TABLE.iter().find(|r| r.uiids.contains(&u)));
        let names = device.tags.get("ck_channel_name").and_then(Value::as_object);
        let caps = match row {
            Some(r) => r.caps.to_vec(),
            None => {
                warn_unknown_once(device);
                if device.params.contains_key("switch") {
                    vec![Cap::Switch]
                } else if let Some(outlets) = device.params.get("switches").and_then(Value::as_array) {
                    let n = names.map(|n| n.len()).filter(|n| *n > 0).unwrap_or(outlets.len()).clamp(1, 8);
                    vec![Cap::Channels(n as u8)]
                } else {
                    vec![Cap::Raw]
                }
            }
        };
        let count = caps.iter().find_map(|c| if let Cap::Channels(n) = c { Some(*n) } else { None }).unwrap_or(0);
        let channel_names = (0..count)
            .map(|i| {
                names
                    .and_then(|n| n.get(&i.to_string()))
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("Channel {}", i + 1))
            })
            .collect();
        Profile { uiid: device.uiid, caps, known: row.is_some(), channel_names }
    }

    fn channels(&self) -> u8 {
        self.caps.iter().find_map(|c| if let Cap::Channels(n) = c { Some(*n) } else { None }).unwrap_or(0)
    }

    /// Whether the device is controlled (and so has timers).
    pub fn controllable(&self) -> bool {
        self.caps.iter().any(|c| {
            matches!(c, Cap::Switch | Cap::Channels(_) | Cap::Meter190 | Cap::Light(_) | Cap::Fan34 | Cap::Cover)
        })
    }
}

fn warn_unknown_once(device: &CloudDevice) {
    static SEEN: OnceLock<Mutex<HashSet<Option<u32>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    if seen.lock().unwrap_or_else(|e| e.into_inner()).insert(device.uiid) {
        let keys: Vec<&str> = device.params.keys().map(String::as_str).collect();
        tracing::warn!(
            uiid = ?device.uiid,
            device = %device.deviceid,
            params = ?keys,
            "unknown eWeLink device type; exposing what its parameters show (please report the uiid and parameters)"
        );
    }
}

/// The bridge-wide id of a device.
pub fn device_id(deviceid: &str) -> String {
    format!("ewelink_{deviceid}")
}

fn channel_key(i: u8, n: u8) -> String {
    if n == 1 { "switch".to_owned() } else { format!("switch_{}", i + 1) }
}

fn sensor(key: &str, name: &str, class: SensorClass, unit: &'static str, precision: u8) -> EntitySpec {
    let mut spec = SensorSpec::measured(Some(class), Some(unit), Some(StateClass::Measurement));
    spec.precision = Some(precision);
    EntitySpec::new(key, Some(name), EntityKind::Sensor(spec))
}

/// The device as the bridge should announce it.
pub fn spec(device: &CloudDevice, profile: &Profile, own_apikey: &str) -> DeviceSpec {
    let mut d = DeviceSpec::new(device_id(&device.deviceid), device.name.clone());
    d.manufacturer = Some(device.brand.clone().unwrap_or_else(|| "eWeLink".to_owned()));
    d.model = Some(match (&device.model, device.uiid) {
        (Some(m), Some(u)) => format!("{m} (uiid {u})"),
        (Some(m), None) => m.clone(),
        (None, Some(u)) => format!("uiid {u}"),
        (None, None) => "eWeLink device".to_owned(),
    });
    d.sw_version = device.params.get("fwVersion").and_then(Value::as_str).map(str::to_owned);
    d.serial_number = Some(device.deviceid.clone());
    if let Some(mac) = device.params.get("staMac").and_then(Value::as_str).and_then(crate::config::normalize_mac) {
        d.connections.push(("mac".to_owned(), mac));
    }
    let e = &mut d.entities;
    for cap in &profile.caps {
        match *cap {
            Cap::Switch | Cap::Meter190 => e.push(EntitySpec::new("switch", None, EntityKind::Switch)),
            Cap::Channels(n) => {
                for i in 0..n {
                    let name = (n > 1).then(|| profile.channel_names[i as usize].as_str());
                    e.push(EntitySpec::new(channel_key(i, n), name, EntityKind::Switch));
                }
            }
            _ => {}
        }
        match *cap {
            Cap::Meter190 | Cap::PowerText => {
                e.push(sensor("power", "Power", SensorClass::Power, "W", 1));
                e.push(sensor("voltage", "Voltage", SensorClass::Voltage, "V", 1));
                e.push(sensor("current", "Current", SensorClass::Current, "A", 2));
            }
            Cap::ChannelMeters(n) => {
                for i in 0..n as usize {
                    let ch = profile.channel_names.get(i).cloned().unwrap_or_else(|| format!("Channel {}", i + 1));
                    let k = i + 1;
                    e.push(sensor(&format!("power_{k}"), &format!("{ch} power"), SensorClass::Power, "W", 1));
                    e.push(sensor(&format!("voltage_{k}"), &format!("{ch} voltage"), SensorClass::Voltage, "V", 1));
                    e.push(sensor(&format!("current_{k}"), &format!("{ch} current"), SensorClass::Current, "A", 2));
                }
            }
            Cap::ClimateText | Cap::ClimateCenti => {
                e.push(sensor("temperature", "Temperature", SensorClass::Temperature, "°C", 1));
                e.push(sensor("humidity", "Humidity", SensorClass::Humidity, "%", 0));
                if *cap == Cap::ClimateCenti {
                    e.push(sensor("battery", "Battery", SensorClass::Battery, "%", 0).diagnostic());
                }
            }
            Cap::Door => {
                let kind = EntityKind::BinarySensor { device_class: Some(BinarySensorClass::Door), expire_after: None };
                e.push(EntitySpec::new("door", None, kind));
                e.push(sensor("battery", "Battery", SensorClass::Battery, "%", 0).diagnostic());
            }
            Cap::Light(model) => e.push(EntitySpec::new("light", None, EntityKind::Light(light_spec(model)))),
            Cap::Fan34 => {
                let fan =
                    FanSpec { speed_count: Some(3), preset_modes: vec!["low".into(), "medium".into(), "high".into()] };
                e.push(EntitySpec::new("fan", None, EntityKind::Fan(fan)));
                e.push(EntitySpec::new("light", Some("Light"), EntityKind::Light(LightSpec::default())));
            }
            Cap::Cover => {
                let cover = CoverSpec { position: true, device_class: Some("curtain") };
                e.push(EntitySpec::new("cover", None, EntityKind::Cover(cover)));
            }
            Cap::Raw => {
                let raw = EntitySpec::new("uiid", Some("Device type"), EntityKind::Sensor(SensorSpec::default()))
                    .diagnostic()
                    .icon("mdi:help-box")
                    .attributes("params");
                e.push(raw);
            }
            Cap::Switch | Cap::Channels(_) => {}
        }
    }
    if device.params.contains_key("rssi") {
        let signal = sensor("rssi", "Wi-Fi signal", SensorClass::SignalStrength, "dBm", 0).diagnostic();
        e.push(signal);
    }
    if device.params.contains_key("fwVersion") {
        let fw = EntitySpec::new("firmware", Some("Firmware"), EntityKind::Sensor(SensorSpec::default()))
            .diagnostic()
            .icon("mdi:chip");
        e.push(fw);
    }
    let shared = !device.apikey.is_empty() && device.apikey != own_apikey;
    if profile.controllable() && !shared {
        d.extra_commands.push("timers".to_owned());
    }
    d
}

pub fn light_spec(model: LightModel) -> LightSpec {
    let kelvin = Some((KELVIN.0 as u16, KELVIN.1 as u16));
    match model {
        LightModel::B1 => {
            LightSpec { brightness_scale: Some(255), color_temp_kelvin: kelvin, rgb: true, effects: vec![] }
        }
        LightModel::Bright36 | LightModel::Bright44 => {
            LightSpec { brightness_scale: Some(100), ..LightSpec::default() }
        }
        LightModel::Strip59 => LightSpec {
            brightness_scale: Some(100),
            color_temp_kelvin: None,
            rgb: true,
            effects: STRIP_EFFECTS.iter().map(|s| (*s).to_owned()).collect(),
        },
        LightModel::White { .. } => {
            LightSpec { brightness_scale: Some(100), color_temp_kelvin: kelvin, rgb: false, effects: vec![] }
        }
        LightModel::ColorWhite { .. } => {
            LightSpec { brightness_scale: Some(100), color_temp_kelvin: kelvin, rgb: true, effects: vec![] }
        }
    }
}

// ----- parameters → state -----

/// A number from a number or a numeric string (`"229.80"`); `None` for `"unavailable"` and the like.
fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// A reading as JSON: whole numbers as integers (`-55`, not `-55.0`), others as they are.
fn reading(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 { json!(x as i64) } else { json!(x) }
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn on_off(v: Option<&Value>) -> Option<&'static str> {
    match v.and_then(Value::as_str)? {
        "on" => Some("ON"),
        "off" => Some("OFF"),
        _ => None,
    }
}

/// `switches[outlet]` as "on"/"off".
fn outlet_state(params: &Map<String, Value>, outlet: u64) -> Option<&str> {
    params
        .get("switches")?
        .as_array()?
        .iter()
        .find(|o| o.get("outlet").and_then(Value::as_u64) == Some(outlet))?
        .get("switch")?
        .as_str()
}

/// The state values of everything the parameters say (the bridge merges and de-duplicates).
pub fn state(profile: &Profile, params: &Map<String, Value>) -> Map<String, Value> {
    let mut s = Map::new();
    let put_num = |s: &mut Map<String, Value>, key: &str, v: Option<f64>| {
        s.insert(key.to_owned(), v.map_or(Value::Null, reading));
    };
    for cap in &profile.caps {
        match *cap {
            Cap::Switch => {
                if let Some(v) = on_off(params.get("switch")) {
                    s.insert("switch".into(), json!(v));
                }
            }
            Cap::Channels(n) => {
                for i in 0..n {
                    if let Some(v) = outlet_state(params, i as u64) {
                        s.insert(channel_key(i, n), json!(if v == "on" { "ON" } else { "OFF" }));
                    }
                }
            }
            Cap::Meter190 => {
                let v = outlet_state(params, 0).or_else(|| params.get("switch").and_then(Value::as_str));
                if let Some(v) = v {
                    s.insert("switch".into(), json!(if v == "on" { "ON" } else { "OFF" }));
                }
                for key in ["power", "voltage", "current"] {
                    if params.contains_key(key) {
                        put_num(&mut s, key, num(params.get(key)).map(|x| round(x / 100.0, 2)));
                    }
                }
            }
            Cap::PowerText => {
                for key in ["power", "voltage", "current"] {
                    if params.contains_key(key) {
                        put_num(&mut s, key, num(params.get(key)).map(|x| round(x, 2)));
                    }
                }
            }
            Cap::ChannelMeters(n) => {
                for i in 0..n {
                    for (param, key) in [("actPow", "power"), ("voltage", "voltage"), ("current", "current")] {
                        let p = format!("{param}_{i:02}");
                        if params.contains_key(&p) {
                            put_num(
                                &mut s,
                                &format!("{key}_{}", i + 1),
                                num(params.get(&p)).map(|x| round(x / 100.0, 2)),
                            );
                        }
                    }
                }
            }
            Cap::ClimateText => {
                for (old, new, key) in
                    [("currentTemperature", "temperature", "temperature"), ("currentHumidity", "humidity", "humidity")]
                {
                    let source = params.get(new).or_else(|| params.get(old));
                    if source.is_some() {
                        put_num(&mut s, key, num(source).map(|x| round(x, 1)));
                    }
                }
            }
            Cap::ClimateCenti => {
                for key in ["temperature", "humidity"] {
                    if params.contains_key(key) {
                        put_num(&mut s, key, num(params.get(key)).map(|x| round(x / 100.0, 2)));
                    }
                }
                if params.contains_key("battery") {
                    put_num(&mut s, "battery", num(params.get("battery")));
                }
            }
            Cap::Door => {
                if let Some(v) = params.get("switch").and_then(Value::as_str) {
                    s.insert("door".into(), json!(v == "on"));
                }
                if params.contains_key("battery") {
                    put_num(&mut s, "battery", num(params.get("battery")));
                }
            }
            Cap::Light(model) => {
                if let Some(light) = light_state(model, params) {
                    s.insert("light".into(), light);
                }
            }
            Cap::Fan34 => {
                if let Some(light) = outlet_state(params, 0) {
                    s.insert("light".into(), json!({"state": if light == "on" { "ON" } else { "OFF" }}));
                }
                if let Some(fan) = fan_state(params) {
                    s.insert("fan".into(), fan);
                }
            }
            Cap::Cover => {
                if let Some(cover) = cover_state(params) {
                    s.insert("cover".into(), cover);
                }
            }
            Cap::Raw => {
                s.insert("uiid".into(), profile.uiid.map_or(Value::Null, |u| json!(u)));
                let raw: Map<String, Value> = params
                    .iter()
                    .filter(|(k, _)| k.as_str() != "timers")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                s.insert("params".into(), Value::Object(raw));
            }
        }
    }
    if let Some(rssi) = num(params.get("rssi")) {
        s.insert("rssi".into(), reading(rssi));
    }
    if let Some(fw) = params.get("fwVersion").and_then(Value::as_str) {
        s.insert("firmware".into(), json!(fw));
    }
    if let Some(timers) = params.get("timers").filter(|t| t.is_array()) {
        s.insert("timers".into(), timers.clone());
    }
    s
}

fn kelvin_from_ct(ct: f64, ct_max: u8) -> u32 {
    let f = (ct / ct_max as f64).clamp(0.0, 1.0);
    (KELVIN.0 as f64 + f * (KELVIN.1 - KELVIN.0) as f64).round() as u32
}

fn ct_from_kelvin(kelvin: u32, ct_max: u8) -> u64 {
    let f = (kelvin.clamp(KELVIN.0, KELVIN.1) - KELVIN.0) as f64 / (KELVIN.1 - KELVIN.0) as f64;
    (f * ct_max as f64).round() as u64
}

fn channel(params: &Map<String, Value>, i: u8) -> f64 {
    num(params.get(&format!("channel{i}"))).unwrap_or(0.0).clamp(0.0, 255.0)
}

/// B1 white mode: brightness (0–255) and Kelvin from the cold/warm channels.
fn b1_white(params: &Map<String, Value>) -> (u32, u32) {
    let (cw, ww) = (channel(params, 0), channel(params, 1));
    let br = cw.max(ww).round() as u32;
    let f = if cw + ww > 0.0 { cw / (cw + ww) } else { 0.5 };
    (br, kelvin_from_ct(f * 255.0, 255))
}

/// B1 colour mode: brightness (0–255) and the colour at full brightness.
fn b1_color(params: &Map<String, Value>) -> (u32, [u32; 3]) {
    let rgb = [channel(params, 2), channel(params, 3), channel(params, 4)];
    let br = rgb.iter().cloned().fold(0.0, f64::max);
    let full = if br > 0.0 { rgb.map(|c| (c * 255.0 / br).round() as u32) } else { [255, 255, 255] };
    (br.round() as u32, full)
}

fn light_state(model: LightModel, p: &Map<String, Value>) -> Option<Value> {
    let on = |key: &str| on_off(p.get(key));
    let light = match model {
        LightModel::B1 => {
            let state = on("state")?;
            if num(p.get("zyx_mode")) == Some(2.0) {
                let (br, [r, g, b]) = b1_color(p);
                json!({"state": state, "brightness": br, "color_mode": "rgb", "color": {"r": r, "g": g, "b": b}})
            } else {
                let (br, k) = b1_white(p);
                json!({"state": state, "brightness": br, "color_mode": "color_temp", "color_temp": k})
            }
        }
        LightModel::Bright36 => {
            json!({"state": on("switch")?, "brightness": num(p.get("bright")).map(|b| b.round() as u32),
                   "color_mode": "brightness"})
        }
        LightModel::Bright44 => {
            json!({"state": on("switch")?, "brightness": num(p.get("brightness")).map(|b| b.round() as u32),
                   "color_mode": "brightness"})
        }
        LightModel::Strip59 => {
            let c = |k: &str| num(p.get(k)).unwrap_or(0.0).clamp(0.0, 255.0).round() as u32;
            let effect = num(p.get("mode")).and_then(|m| STRIP_EFFECTS.get((m as usize).checked_sub(1)?).copied());
            json!({"state": on("switch")?, "brightness": num(p.get("bright")).map(|b| b.round() as u32),
                   "color_mode": "rgb", "color": {"r": c("colorR"), "g": c("colorG"), "b": c("colorB")},
                   "effect": effect})
        }
        LightModel::White { ct_max } => white_state(on("switch")?, p, ct_max),
        LightModel::ColorWhite { ct_max } => {
            let state = on("switch")?;
            if p.get("ltype").and_then(Value::as_str) == Some("color") {
                let color = p.get("color").and_then(Value::as_object);
                let c = |k: &str| num(color.and_then(|o| o.get(k))).unwrap_or(0.0).clamp(0.0, 255.0).round() as u32;
                json!({"state": state, "brightness": num(color.and_then(|o| o.get("br"))).map(|b| b.round() as u32),
                       "color_mode": "rgb", "color": {"r": c("r"), "g": c("g"), "b": c("b")}})
            } else {
                white_state(state, p, ct_max)
            }
        }
    };
    Some(light)
}

fn white_state(state: &str, p: &Map<String, Value>, ct_max: u8) -> Value {
    let white = p.get("white").and_then(Value::as_object);
    let br = num(white.and_then(|w| w.get("br"))).map(|b| b.round() as u32);
    let k = num(white.and_then(|w| w.get("ct"))).map(|ct| kelvin_from_ct(ct, ct_max));
    json!({"state": state, "brightness": br, "color_mode": "color_temp", "color_temp": k})
}

const FAN_SPEEDS: [(&str, u64); 3] = [("low", 33), ("medium", 67), ("high", 100)];

fn fan_speed(p: &Map<String, Value>) -> usize {
    match (outlet_state(p, 2) == Some("on"), outlet_state(p, 3) == Some("on")) {
        (_, true) => 2,
        (true, false) => 1,
        _ => 0,
    }
}

fn fan_state(p: &Map<String, Value>) -> Option<Value> {
    let on = outlet_state(p, 1)? == "on";
    let (name, pct) = FAN_SPEEDS[fan_speed(p)];
    Some(if on {
        json!({"state": "ON", "percentage": pct, "preset_mode": name})
    } else {
        json!({"state": "OFF", "percentage": 0, "preset_mode": null})
    })
}

fn cover_state(p: &Map<String, Value>) -> Option<Value> {
    let closed_pct = num(p.get("setclose"))?.clamp(0.0, 100.0).round() as i64;
    let position = 100 - closed_pct;
    let state = match p.get("switch").and_then(Value::as_str) {
        Some("on") if position < 100 => "opening",
        Some("off") if position > 0 => "closing",
        _ if position == 0 => "closed",
        _ => "open",
    };
    Some(json!({"state": state, "position": position}))
}

// ----- commands → parameters -----

/// Applies an `update`'s parameters to the cached ones the way the device does: `switches` by outlet,
/// nested objects (`white`, `color`) field by field, everything else replaced.
pub fn merge_params(cache: &mut Map<String, Value>, update: &Map<String, Value>) {
    for (key, value) in update {
        match (key.as_str(), value, cache.get_mut(key)) {
            ("switches", Value::Array(changes), Some(Value::Array(current))) => {
                for change in changes {
                    let outlet = change.get("outlet").and_then(Value::as_u64);
                    match current
                        .iter_mut()
                        .find(|o| outlet.is_some() && o.get("outlet").and_then(Value::as_u64) == outlet)
                    {
                        Some(o) => *o = change.clone(),
                        None => current.push(change.clone()),
                    }
                }
            }
            (_, Value::Object(fields), Some(Value::Object(current))) => {
                for (k, v) in fields {
                    current.insert(k.clone(), v.clone());
                }
            }
            _ => {
                cache.insert(key.clone(), value.clone());
            }
        }
    }
}

/// `ON`/`OFF` (any case), `true`/`false`, `TOGGLE` (against `current`).
pub fn parse_on_off(v: &Value, current: bool) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.to_ascii_uppercase().as_str() {
            "ON" | "TRUE" | "1" => Ok(true),
            "OFF" | "FALSE" | "0" => Ok(false),
            "TOGGLE" => Ok(!current),
            _ => Err(format!("expected ON, OFF or TOGGLE, got {s:?}")),
        },
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        other => Err(format!("expected ON, OFF or TOGGLE, got {other}")),
    }
}

fn word(on: bool) -> Value {
    json!(if on { "on" } else { "off" })
}

/// Adds `change` to the outgoing parameters (merging `switches` by outlet).
fn add(out: &mut Map<String, Value>, change: Map<String, Value>) {
    for (k, v) in change {
        match (k.as_str(), v, out.get_mut(&k)) {
            ("switches", Value::Array(new), Some(Value::Array(old))) => {
                for n in new {
                    let outlet = n.get("outlet").and_then(Value::as_u64);
                    old.retain(|o| o.get("outlet").and_then(Value::as_u64) != outlet);
                    old.push(n);
                }
                old.sort_by_key(|o| o.get("outlet").and_then(Value::as_u64));
            }
            (_, v, _) => {
                out.insert(k, v);
            }
        }
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The parameters of an `update` carrying out `changes` (entity key → command value), given the device's
/// current parameters. The `timers` key is not handled here (see `timers`).
pub fn command(
    profile: &Profile,
    current: &Map<String, Value>,
    changes: &[(String, Value)],
) -> Result<Map<String, Value>, String> {
    if changes.is_empty() {
        return Err("nothing to change".into());
    }
    let mut out = Map::new();
    for (key, value) in changes {
        let change = entity_command(profile, current, key, value).map_err(|e| format!("{key}: {e}"))?;
        add(&mut out, change);
    }
    Ok(out)
}

fn entity_command(
    profile: &Profile,
    p: &Map<String, Value>,
    key: &str,
    value: &Value,
) -> Result<Map<String, Value>, String> {
    let n = profile.channels();
    if n > 0
        && let Some(i) = (0..n).find(|i| channel_key(*i, n) == key)
    {
        let on = parse_on_off(value, outlet_state(p, i as u64) == Some("on"))?;
        return Ok(obj(json!({"switches": [{"switch": word(on), "outlet": i}]})));
    }
    for cap in &profile.caps {
        match (*cap, key) {
            (Cap::Switch, "switch") => {
                let on = parse_on_off(value, p.get("switch").and_then(Value::as_str) == Some("on"))?;
                let mut m = obj(json!({"switch": word(on)}));
                // A thermostat relay switched by hand leaves automatic mode, as the eWeLink app does.
                if p.contains_key("mainSwitch") {
                    m.insert("mainSwitch".into(), json!("off"));
                    m.insert("deviceType".into(), json!("normal"));
                }
                return Ok(m);
            }
            (Cap::Meter190, "switch") => {
                let on = parse_on_off(value, outlet_state(p, 0) == Some("on"))?;
                return Ok(obj(json!({"switches": [{"switch": word(on), "outlet": 0}], "operSide": 1})));
            }
            (Cap::Light(model), "light") => return light_command(model, p, value),
            (Cap::Fan34, "light") => {
                let on = parse_on_off(light_on_value(value)?, outlet_state(p, 0) == Some("on"))?;
                return Ok(obj(json!({"switches": [{"switch": word(on), "outlet": 0}]})));
            }
            (Cap::Fan34, "fan") => return fan_command(p, value),
            (Cap::Cover, "cover") => return cover_command(value),
            _ => {}
        }
    }
    let readable = state(profile, p);
    if readable.contains_key(key)
        || ["power", "voltage", "current", "temperature", "humidity", "battery", "door", "rssi", "firmware"]
            .contains(&key)
    {
        Err("read-only".into())
    } else {
        Err("this device has no such entity".into())
    }
}

/// An on/off light's command may be a plain value or `{"state": ...}`.
fn light_on_value(v: &Value) -> Result<&Value, String> {
    match v {
        Value::Object(o) => o.get("state").ok_or_else(|| "expected {\"state\": \"ON\"|\"OFF\"}".to_owned()),
        other => Ok(other),
    }
}

/// A JSON-schema light command, parsed.
#[derive(Debug, Default, PartialEq)]
struct LightCmd {
    on: Option<bool>,
    brightness: Option<f64>,
    kelvin: Option<u32>,
    rgb: Option<[f64; 3]>,
    effect: Option<String>,
}

fn parse_light(v: &Value, currently_on: bool) -> Result<LightCmd, String> {
    let o = match v {
        Value::Object(o) => o,
        plain => return Ok(LightCmd { on: Some(parse_on_off(plain, currently_on)?), ..LightCmd::default() }),
    };
    let mut cmd = LightCmd::default();
    if let Some(s) = o.get("state") {
        cmd.on = Some(parse_on_off(s, currently_on)?);
    }
    if let Some(b) = o.get("brightness") {
        cmd.brightness = Some(num(Some(b)).filter(|b| *b >= 0.0).ok_or("brightness must be a number")?);
    }
    if let Some(t) = o.get("color_temp") {
        let t = num(Some(t)).filter(|t| *t > 0.0).ok_or("color_temp must be a number (Kelvin)")?;
        // Small values are mireds (a client not speaking Kelvin).
        let kelvin = if t < 1000.0 { 1_000_000.0 / t } else { t };
        cmd.kelvin = Some(kelvin.round() as u32);
    }
    if let Some(c) = o.get("color") {
        let part = |k: &str| num(c.get(k)).filter(|x| (0.0..=255.0).contains(x));
        match (part("r"), part("g"), part("b")) {
            (Some(r), Some(g), Some(b)) => cmd.rgb = Some([r, g, b]),
            _ => return Err("color must be {\"r\",\"g\",\"b\"} with values 0–255".into()),
        }
    }
    if let Some(e) = o.get("effect") {
        cmd.effect = Some(e.as_str().ok_or("effect must be a string")?.to_owned());
    }
    for k in o.keys() {
        if !["state", "brightness", "color_temp", "color", "effect", "transition", "color_mode"].contains(&k.as_str()) {
            return Err(format!("unknown light field {k:?}"));
        }
    }
    Ok(cmd)
}

fn clamp_round(x: f64, lo: f64, hi: f64) -> u64 {
    x.clamp(lo, hi).round() as u64
}

fn light_command(model: LightModel, p: &Map<String, Value>, value: &Value) -> Result<Map<String, Value>, String> {
    let on_key = if model == LightModel::B1 { "state" } else { "switch" };
    let currently_on = p.get(on_key).and_then(Value::as_str) == Some("on");
    let cmd = parse_light(value, currently_on)?;
    if cmd.on == Some(false) {
        return Ok(obj(json!({on_key: "off"})));
    }
    let adjusts = cmd.brightness.is_some() || cmd.kelvin.is_some() || cmd.rgb.is_some() || cmd.effect.is_some();
    if !adjusts {
        return match cmd.on {
            Some(true) => Ok(obj(json!({on_key: "on"}))),
            _ => Err("nothing to change".into()),
        };
    }
    let unsupported = |what: &str| Err(format!("this light has no {what}"));
    match model {
        LightModel::B1 => {
            if cmd.effect.is_some() {
                return unsupported("effects");
            }
            let color_mode = num(p.get("zyx_mode")) == Some(2.0);
            let to_color = cmd.rgb.is_some() || (color_mode && cmd.kelvin.is_none());
            let mut m = obj(json!({"state": "on"}));
            if to_color {
                let (cur_br, cur_rgb) = if color_mode { b1_color(p) } else { (255, [255, 255, 255]) };
                let br = cmd.brightness.unwrap_or(cur_br as f64).clamp(1.0, 255.0);
                let rgb = cmd.rgb.unwrap_or(cur_rgb.map(f64::from));
                let max = rgb.iter().cloned().fold(0.0, f64::max);
                let scaled = if max > 0.0 { rgb.map(|c| clamp_round(c * br / max, 0.0, 255.0)) } else { [0, 0, 0] };
                m.insert("zyx_mode".into(), json!(2));
                for (i, v) in [0, 0, scaled[0], scaled[1], scaled[2]].iter().enumerate() {
                    m.insert(format!("channel{i}"), json!(v.to_string()));
                }
            } else {
                let (cur_br, cur_k) = if color_mode { (255, 4600) } else { b1_white(p) };
                let br = cmd.brightness.unwrap_or(if cur_br == 0 { 255.0 } else { cur_br as f64 }).clamp(1.0, 255.0);
                let k = cmd.kelvin.unwrap_or(cur_k).clamp(KELVIN.0, KELVIN.1);
                let f = (k - KELVIN.0) as f64 / (KELVIN.1 - KELVIN.0) as f64;
                let peak = f.max(1.0 - f);
                let (cw, ww) = (clamp_round(br * f / peak, 0.0, 255.0), clamp_round(br * (1.0 - f) / peak, 0.0, 255.0));
                m.insert("zyx_mode".into(), json!(1));
                for (i, v) in [cw, ww, 0, 0, 0].iter().enumerate() {
                    m.insert(format!("channel{i}"), json!(v.to_string()));
                }
            }
            Ok(m)
        }
        LightModel::Bright36 | LightModel::Bright44 => {
            if cmd.kelvin.is_some() || cmd.rgb.is_some() || cmd.effect.is_some() {
                return unsupported("colour or effects");
            }
            let Some(br) = cmd.brightness else { return Ok(obj(json!({"switch": "on"}))) };
            Ok(if model == LightModel::Bright36 {
                obj(json!({"switch": "on", "bright": clamp_round(br, 10.0, 100.0)}))
            } else {
                obj(json!({"switch": "on", "brightness": clamp_round(br, 1.0, 100.0), "mode": 0}))
            })
        }
        LightModel::Strip59 => {
            if cmd.kelvin.is_some() {
                return unsupported("colour temperature");
            }
            let mut m = obj(json!({"switch": "on"}));
            if let Some(br) = cmd.brightness {
                m.insert("bright".into(), json!(clamp_round(br, 1.0, 100.0)));
            }
            if let Some([r, g, b]) = cmd.rgb {
                m.insert("colorR".into(), json!(r.round() as u64));
                m.insert("colorG".into(), json!(g.round() as u64));
                m.insert("colorB".into(), json!(b.round() as u64));
                m.insert("mode".into(), json!(1));
            }
            if let Some(effect) = &cmd.effect {
                let i = STRIP_EFFECTS
                    .iter()
                    .position(|e| e.eq_ignore_ascii_case(effect))
                    .ok_or_else(|| format!("unknown effect {effect:?} (one of {})", STRIP_EFFECTS.join(", ")))?;
                m.insert("mode".into(), json!(i + 1));
            }
            Ok(m)
        }
        LightModel::White { ct_max } | LightModel::ColorWhite { ct_max } => {
            if cmd.effect.is_some() {
                return unsupported("effects");
            }
            let color_capable = matches!(model, LightModel::ColorWhite { .. });
            if cmd.rgb.is_some() && !color_capable {
                return unsupported("colour");
            }
            let in_color = p.get("ltype").and_then(Value::as_str) == Some("color");
            let to_color = color_capable && (cmd.rgb.is_some() || (in_color && cmd.kelvin.is_none()));
            if to_color {
                let cur = p.get("color").and_then(Value::as_object);
                let cur_part = |k: &str| num(cur.and_then(|c| c.get(k))).unwrap_or(255.0);
                let [r, g, b] = cmd.rgb.unwrap_or([cur_part("r"), cur_part("g"), cur_part("b")]);
                let br = cmd.brightness.unwrap_or(num(cur.and_then(|c| c.get("br"))).unwrap_or(100.0));
                Ok(obj(json!({"switch": "on", "ltype": "color", "color": {
                    "br": clamp_round(br, 1.0, 100.0), "r": r.round() as u64, "g": g.round() as u64, "b": b.round() as u64}})))
            } else {
                let cur = p.get("white").and_then(Value::as_object);
                let br = cmd.brightness.unwrap_or(num(cur.and_then(|w| w.get("br"))).unwrap_or(100.0));
                let ct = match cmd.kelvin {
                    Some(k) => ct_from_kelvin(k, ct_max),
                    None => num(cur.and_then(|w| w.get("ct"))).map_or(ct_max as u64 / 2, |c| c.round() as u64),
                };
                Ok(obj(
                    json!({"switch": "on", "ltype": "white", "white": {"br": clamp_round(br, 1.0, 100.0), "ct": ct}}),
                ))
            }
        }
    }
}

fn fan_command(p: &Map<String, Value>, value: &Value) -> Result<Map<String, Value>, String> {
    let currently_on = outlet_state(p, 1) == Some("on");
    let (mut on, mut speed) = (None, None);
    match value {
        Value::Object(o) => {
            for k in o.keys() {
                if !["state", "percentage", "preset_mode"].contains(&k.as_str()) {
                    return Err(format!("unknown fan field {k:?}"));
                }
            }
            if let Some(s) = o.get("state") {
                on = Some(parse_on_off(s, currently_on)?);
            }
            if let Some(pct) = o.get("percentage") {
                let pct = num(Some(pct)).filter(|x| (0.0..=100.0).contains(x)).ok_or("percentage must be 0–100")?;
                if pct == 0.0 {
                    on = Some(false);
                } else {
                    speed = Some(if pct <= 34.0 {
                        0
                    } else if pct <= 67.0 {
                        1
                    } else {
                        2
                    });
                    on.get_or_insert(true);
                }
            }
            if let Some(mode) = o.get("preset_mode") {
                let mode = mode.as_str().unwrap_or("");
                speed = Some(
                    FAN_SPEEDS.iter().position(|(n, _)| *n == mode).ok_or("preset_mode must be low, medium or high")?,
                );
                on.get_or_insert(true);
            }
        }
        plain => on = Some(parse_on_off(plain, currently_on)?),
    }
    let on = on.ok_or("nothing to change")?;
    if !on {
        return Ok(obj(json!({"switches": [{"switch": "off", "outlet": 1}]})));
    }
    let speed = speed.unwrap_or_else(|| fan_speed(p));
    let (two, three) = match speed {
        0 => (false, false),
        1 => (true, false),
        _ => (false, true),
    };
    Ok(obj(json!({"switches": [
        {"switch": "on", "outlet": 1}, {"switch": word(two), "outlet": 2}, {"switch": word(three), "outlet": 3}]})))
}

fn cover_command(value: &Value) -> Result<Map<String, Value>, String> {
    let action = |s: &str| match s.to_ascii_uppercase().as_str() {
        "OPEN" => Ok(obj(json!({"switch": "on"}))),
        "CLOSE" => Ok(obj(json!({"switch": "off"}))),
        "STOP" => Ok(obj(json!({"switch": "pause"}))),
        _ => Err(format!("expected OPEN, CLOSE, STOP or {{\"position\": 0–100}}, got {s:?}")),
    };
    match value {
        Value::String(s) => action(s),
        Value::Object(o) => {
            if let Some(pos) = o.get("position") {
                let pos = num(Some(pos)).filter(|x| (0.0..=100.0).contains(x)).ok_or("position must be 0–100")?;
                return Ok(obj(json!({"setclose": 100 - pos.round() as u64})));
            }
            match o.get("state").and_then(Value::as_str) {
                Some(s) => action(s),
                None => Err("expected {\"position\": 0–100} or {\"state\": \"OPEN\"|\"CLOSE\"|\"STOP\"}".into()),
            }
        }
        Value::Number(_) => cover_command(&json!({"position": value})),
        other => Err(format!("expected OPEN, CLOSE, STOP or a position, got {other}")),
    }
}

#[cfg(test)]
mod tests;
