//! Typed Home Assistant MQTT discovery payloads, and how a hub's [`DeviceSpec`] becomes them.
//!
//! One config per entity on `<prefix>/<component>/<device>/<key>/config` (per-component discovery works on
//! every Home Assistant release from 2023 on). Each carries the device block, the origin block, both
//! `object_id` (before HA 2025.10) and `default_entity_id` (after), and an availability list of the
//! bridge's last-will topic plus the device's own availability topic, mode `all`.
//!
//! Templates read the device's JSON state with `value_json['key']`; the bridge makes sure every entity
//! key is present in the published state (as `null` while unknown, which Home Assistant shows as unknown).

use serde::Serialize;

use super::{BRIDGE_ID, Topics, sanitize_id};
use crate::hub::{
    BinarySensorClass, ButtonClass, CoverSpec, DeviceSpec, EntityCategory, EntityKind, EntitySpec, FanSpec, LightSpec,
    SensorClass, SensorSpec, StateClass,
};

/// The `device` block shared by all entities of a device.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Device {
    pub identifiers: Vec<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sw_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hw_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration_url: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_device: Option<String>,
}

/// The `origin` block: who published this config.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Origin {
    pub name: &'static str,
    pub sw_version: &'static str,
    pub support_url: &'static str,
}

pub const ORIGIN: Origin =
    Origin { name: "hub2mqtt", sw_version: crate::VERSION, support_url: "https://github.com/hub2mqtt/hub2mqtt" };

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Availability {
    pub topic: String,
    pub payload_available: &'static str,
    pub payload_not_available: &'static str,
}

impl Availability {
    fn online_offline(topic: String) -> Self {
        Availability { topic, payload_available: "online", payload_not_available: "offline" }
    }
}

/// Keys every entity config carries.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Common {
    /// `null` for the device's main feature (Home Assistant then uses the device name).
    pub name: Option<String>,
    pub unique_id: String,
    pub object_id: String,
    pub default_entity_id: String,
    pub has_entity_name: bool,
    pub device: Device,
    pub origin: Origin,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub availability: Vec<Availability>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub availability_mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_category: Option<EntityCategory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    pub enabled_by_default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_attributes_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_attributes_template: Option<String>,
    pub qos: u8,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sensor {
    #[serde(flatten)]
    pub common: Common,
    pub state_topic: String,
    pub value_template: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_class: Option<SensorClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_of_measurement: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_class: Option<StateClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggested_display_precision: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BinarySensor {
    #[serde(flatten)]
    pub common: Common,
    pub state_topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_template: Option<String>,
    pub payload_on: &'static str,
    pub payload_off: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_class: Option<BinarySensorClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Switch {
    #[serde(flatten)]
    pub common: Common,
    pub state_topic: String,
    pub value_template: String,
    pub command_topic: String,
    pub payload_on: &'static str,
    pub payload_off: &'static str,
    pub state_on: &'static str,
    pub state_off: &'static str,
}

/// A light in Home Assistant's JSON schema. Colour temperature in mireds with `color_mode: true`, which
/// works from Home Assistant 2023 on (newer releases ignore the flag and accept mireds).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Light {
    #[serde(flatten)]
    pub common: Common,
    pub schema: &'static str,
    pub state_topic: String,
    pub command_topic: String,
    pub color_mode: bool,
    pub supported_color_modes: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brightness_scale: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_mireds: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_mireds: Option<u16>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub effect: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub effect_list: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceTracker {
    #[serde(flatten)]
    pub common: Common,
    pub state_topic: String,
    pub value_template: String,
    pub payload_home: &'static str,
    pub payload_not_home: &'static str,
    pub source_type: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Button {
    #[serde(flatten)]
    pub common: Common,
    pub command_topic: String,
    pub payload_press: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_class: Option<ButtonClass>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Fan {
    #[serde(flatten)]
    pub common: Common,
    pub state_topic: String,
    pub state_value_template: String,
    pub command_topic: String,
    pub payload_on: &'static str,
    pub payload_off: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage_state_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage_value_template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage_command_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_range_min: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_range_max: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset_mode_state_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset_mode_value_template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset_mode_command_topic: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preset_modes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cover {
    #[serde(flatten)]
    pub common: Common,
    pub state_topic: String,
    pub value_template: String,
    pub command_topic: String,
    pub payload_open: &'static str,
    pub payload_close: &'static str,
    pub payload_stop: &'static str,
    pub state_open: &'static str,
    pub state_closed: &'static str,
    pub state_opening: &'static str,
    pub state_closing: &'static str,
    pub state_stopped: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_position_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_class: Option<&'static str>,
}

/// One entity's discovery config, ready to serialise.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Config {
    Sensor(Sensor),
    BinarySensor(BinarySensor),
    Switch(Switch),
    Light(Light),
    DeviceTracker(DeviceTracker),
    Button(Button),
    Fan(Fan),
    Cover(Cover),
}

/// Home Assistant's component name for an entity kind (the discovery topic's second level).
pub fn component(kind: &EntityKind) -> &'static str {
    match kind {
        EntityKind::Sensor(_) => "sensor",
        EntityKind::BinarySensor { .. } => "binary_sensor",
        EntityKind::Switch => "switch",
        EntityKind::Light(_) => "light",
        EntityKind::DeviceTracker => "device_tracker",
        EntityKind::Button { .. } => "button",
        EntityKind::Fan(_) => "fan",
        EntityKind::Cover(_) => "cover",
    }
}

/// Sub-fields accepted on `<base>/<device>/<key>/<field>/set` for an entity kind.
pub fn command_fields(kind: &EntityKind) -> &'static [&'static str] {
    match kind {
        EntityKind::Fan(_) => &["percentage", "preset_mode"],
        EntityKind::Cover(_) => &["position"],
        _ => &[],
    }
}

/// Whether the entity's Home Assistant schema reads its own whole payload on `<base>/<device>/<key>`.
pub fn has_own_state_topic(kind: &EntityKind) -> bool {
    matches!(kind, EntityKind::Light(_))
}

/// The `device` identifier Home Assistant uses for one of our devices.
pub fn device_identifier(device_topic_id: &str) -> String {
    format!("hub2mqtt_{device_topic_id}")
}

/// What the builder needs to know about where things live.
pub struct Context<'a> {
    pub topics: &'a Topics,
    /// Identifier of the bridge device (`via_device` of top-level devices).
    pub bridge_identifier: &'a str,
}

/// Builds the device block for a hub device. `topic_id` is the device's sanitised id.
pub fn device_block(ctx: &Context<'_>, spec: &DeviceSpec, topic_id: &str) -> Device {
    Device {
        identifiers: vec![device_identifier(topic_id)],
        name: spec.name.clone(),
        manufacturer: spec.manufacturer.clone(),
        model: spec.model.clone(),
        sw_version: spec.sw_version.clone(),
        hw_version: spec.hw_version.clone(),
        serial_number: spec.serial_number.clone(),
        configuration_url: spec.configuration_url.clone(),
        connections: spec.connections.clone(),
        via_device: Some(
            spec.via_device
                .as_deref()
                .map_or_else(|| ctx.bridge_identifier.to_owned(), |p| device_identifier(&sanitize_id(p))),
        ),
    }
}

fn template(key: &str) -> String {
    format!("{{{{ value_json['{key}'] }}}}")
}

fn field_template(key: &str, field: &str) -> String {
    format!("{{{{ (value_json['{key}'] or {{}}).get('{field}') }}}}")
}

/// The discovery config of one entity of a hub device: `(topic, payload)`.
pub fn entity_config(ctx: &Context<'_>, device: &Device, topic_id: &str, entity: &EntitySpec) -> (String, Config) {
    let topics = ctx.topics;
    let key = sanitize_id(&entity.key);
    let object_id = format!("{topic_id}_{key}");
    let comp = component(&entity.kind);
    let state_topic = topics.state(topic_id);
    let common = Common {
        name: entity.name.clone(),
        unique_id: format!("hub2mqtt_{object_id}"),
        default_entity_id: format!("{comp}.{object_id}"),
        object_id,
        has_entity_name: true,
        device: device.clone(),
        origin: ORIGIN,
        availability: vec![
            Availability::online_offline(topics.bridge_state()),
            Availability::online_offline(topics.availability(topic_id)),
        ],
        availability_mode: "all",
        entity_category: entity.category,
        icon: entity.icon.clone(),
        enabled_by_default: entity.enabled_by_default,
        json_attributes_topic: entity.attributes_key.as_ref().map(|_| state_topic.clone()),
        json_attributes_template: entity
            .attributes_key
            .as_ref()
            .map(|a| format!("{{{{ value_json['{}'] | tojson }}}}", sanitize_id(a))),
        qos: 1,
    };
    let topic = topics.discovery(comp, topic_id, &key);
    let config = match &entity.kind {
        EntityKind::Sensor(s) => Config::Sensor(sensor(common, state_topic, &key, s)),
        EntityKind::BinarySensor { device_class, expire_after } => Config::BinarySensor(BinarySensor {
            common,
            state_topic,
            value_template: Some(template(&key)),
            payload_on: "True",
            payload_off: "False",
            device_class: *device_class,
            expire_after: *expire_after,
        }),
        EntityKind::Switch => Config::Switch(Switch {
            common,
            state_topic,
            value_template: template(&key),
            command_topic: topics.command(topic_id, &key),
            payload_on: "ON",
            payload_off: "OFF",
            state_on: "ON",
            state_off: "OFF",
        }),
        EntityKind::Light(l) => Config::Light(light(common, topics, topic_id, &key, l)),
        EntityKind::DeviceTracker => Config::DeviceTracker(DeviceTracker {
            common,
            state_topic,
            value_template: template(&key),
            payload_home: "home",
            payload_not_home: "not_home",
            source_type: "router",
        }),
        EntityKind::Button { device_class } => Config::Button(Button {
            common,
            command_topic: topics.command(topic_id, &key),
            payload_press: "PRESS",
            device_class: *device_class,
        }),
        EntityKind::Fan(f) => Config::Fan(fan(common, topics, topic_id, &key, f)),
        EntityKind::Cover(c) => Config::Cover(cover(common, topics, topic_id, &key, c)),
    };
    (topic, config)
}

fn sensor(common: Common, state_topic: String, key: &str, s: &SensorSpec) -> Sensor {
    Sensor {
        common,
        state_topic,
        value_template: template(key),
        device_class: s.device_class,
        unit_of_measurement: s.unit,
        state_class: s.state_class,
        suggested_display_precision: s.precision,
        expire_after: s.expire_after,
        options: s.options.clone(),
    }
}

fn light(common: Common, topics: &Topics, topic_id: &str, key: &str, l: &LightSpec) -> Light {
    let mut modes = Vec::new();
    if l.color_temp_kelvin.is_some() {
        modes.push("color_temp");
    }
    if l.rgb {
        modes.push("rgb");
    }
    if modes.is_empty() {
        modes.push(if l.brightness_scale.is_some() { "brightness" } else { "onoff" });
    }
    let (min_mireds, max_mireds) = match l.color_temp_kelvin {
        Some((warm, cold)) => (Some(super::light::kelvin_to_mireds(cold)), Some(super::light::kelvin_to_mireds(warm))),
        None => (None, None),
    };
    Light {
        common,
        schema: "json",
        state_topic: topics.entity_state(topic_id, key),
        command_topic: topics.command(topic_id, key),
        color_mode: true,
        supported_color_modes: modes,
        brightness_scale: l.brightness_scale,
        min_mireds,
        max_mireds,
        effect: !l.effects.is_empty(),
        effect_list: l.effects.clone(),
    }
}

fn fan(common: Common, topics: &Topics, topic_id: &str, key: &str, f: &FanSpec) -> Fan {
    let state_topic = topics.state(topic_id);
    let speeds = f.speed_count.filter(|n| *n > 0);
    let presets = !f.preset_modes.is_empty();
    Fan {
        common,
        state_value_template: field_template(key, "state"),
        command_topic: topics.command(topic_id, key),
        payload_on: "ON",
        payload_off: "OFF",
        percentage_state_topic: speeds.map(|_| state_topic.clone()),
        percentage_value_template: speeds.map(|_| field_template(key, "percentage")),
        percentage_command_topic: speeds.map(|_| topics.field_command(topic_id, key, "percentage")),
        speed_range_min: speeds.map(|_| 1),
        speed_range_max: speeds,
        preset_mode_state_topic: presets.then(|| state_topic.clone()),
        preset_mode_value_template: presets.then(|| field_template(key, "preset_mode")),
        preset_mode_command_topic: presets.then(|| topics.field_command(topic_id, key, "preset_mode")),
        preset_modes: f.preset_modes.clone(),
        state_topic,
    }
}

fn cover(common: Common, topics: &Topics, topic_id: &str, key: &str, c: &CoverSpec) -> Cover {
    let state_topic = topics.state(topic_id);
    Cover {
        common,
        value_template: field_template(key, "state"),
        command_topic: topics.command(topic_id, key),
        payload_open: "OPEN",
        payload_close: "CLOSE",
        payload_stop: "STOP",
        state_open: "open",
        state_closed: "closed",
        state_opening: "opening",
        state_closing: "closing",
        state_stopped: "stopped",
        position_topic: c.position.then(|| state_topic.clone()),
        position_template: c.position.then(|| field_template(key, "position")),
        set_position_topic: c.position.then(|| topics.field_command(topic_id, key, "position")),
        device_class: c.device_class,
        state_topic,
    }
}

/// Checks what Home Assistant would refuse or misread: device class, unit and state class that do not
/// agree, a `config` category on a read-only entity, an `enum` sensor without options.
pub fn validate_entity(entity: &EntitySpec) -> Result<(), String> {
    let read_only =
        matches!(entity.kind, EntityKind::Sensor(_) | EntityKind::BinarySensor { .. } | EntityKind::DeviceTracker);
    if read_only && entity.category == Some(EntityCategory::Config) {
        return Err("a read-only entity cannot have the config category".into());
    }
    let EntityKind::Sensor(s) = &entity.kind else { return Ok(()) };
    use SensorClass as C;
    use StateClass as S;
    let units: &[&str] = match s.device_class {
        None => return Ok(()),
        Some(C::Battery | C::Humidity) => &["%"],
        Some(C::Current) => &["A", "mA"],
        Some(C::DataRate) => {
            &["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "B/s", "kB/s", "MB/s", "GB/s", "KiB/s", "MiB/s", "GiB/s"]
        }
        Some(C::DataSize) => &["bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"],
        Some(C::Duration) => &["d", "h", "min", "s", "ms"],
        Some(C::Energy) => &["Wh", "kWh", "MWh"],
        Some(C::Frequency) => &["Hz", "kHz", "MHz", "GHz"],
        Some(C::Power) => &["W", "kW"],
        Some(C::SignalStrength) => &["dB", "dBm"],
        Some(C::Temperature) => &["°C", "°F", "K"],
        Some(C::Voltage) => &["V", "mV"],
        Some(C::Enum | C::Timestamp) => &[],
    };
    match (s.unit, units.is_empty()) {
        (Some(u), true) => return Err(format!("device class {:?} takes no unit, got {u:?}", s.device_class)),
        (None, false) => return Err(format!("device class {:?} needs a unit", s.device_class)),
        (Some(u), false) if !units.contains(&u) => {
            return Err(format!("unit {u:?} does not fit device class {:?}", s.device_class));
        }
        _ => {}
    }
    let state_ok = !matches!(
        (s.device_class, s.state_class),
        (Some(C::Enum | C::Timestamp), Some(_)) | (Some(C::Energy), Some(S::Measurement))
    );
    if !state_ok {
        return Err(format!("state class {:?} does not fit device class {:?}", s.state_class, s.device_class));
    }
    if s.device_class == Some(C::Enum) && s.options.is_empty() {
        return Err("an enum sensor needs options".into());
    }
    Ok(())
}

/// Discovery configs of the bridge device itself: version, MQTT connection, device count, and one
/// connectivity sensor per configured hub (`hubs`: `(hub id, label)`).
pub fn bridge_configs(topics: &Topics, bridge_identifier: &str, hubs: &[(String, String)]) -> Vec<(String, Config)> {
    let device = Device {
        identifiers: vec![bridge_identifier.to_owned()],
        name: "hub2mqtt bridge".into(),
        manufacturer: Some("hub2mqtt".into()),
        model: Some("hub2mqtt bridge".into()),
        sw_version: Some(crate::VERSION.into()),
        hw_version: None,
        serial_number: None,
        configuration_url: None,
        connections: Vec::new(),
        via_device: None,
    };
    let base_id = format!("{}_{}", sanitize_id(&topics.base), BRIDGE_ID);
    let common = |key: &str, name: &str, comp: &str, with_availability: bool| {
        let object_id = format!("{base_id}_{key}");
        Common {
            name: Some(name.to_owned()),
            unique_id: format!("hub2mqtt_{object_id}"),
            default_entity_id: format!("{comp}.{object_id}"),
            object_id,
            has_entity_name: true,
            device: device.clone(),
            origin: ORIGIN,
            availability: if with_availability {
                vec![Availability::online_offline(topics.bridge_state())]
            } else {
                Vec::new()
            },
            availability_mode: if with_availability { "all" } else { "" },
            entity_category: Some(EntityCategory::Diagnostic),
            icon: None,
            enabled_by_default: true,
            json_attributes_topic: None,
            json_attributes_template: None,
            qos: 1,
        }
    };
    let info = topics.bridge_info();
    let mut out = vec![
        (
            topics.discovery("binary_sensor", &base_id, "connection_state"),
            Config::BinarySensor(BinarySensor {
                // No availability: when the bridge is gone this shows "disconnected", which is the point.
                common: common("connection_state", "MQTT connection", "binary_sensor", false),
                state_topic: topics.bridge_state(),
                value_template: None,
                payload_on: "online",
                payload_off: "offline",
                device_class: Some(BinarySensorClass::Connectivity),
                expire_after: None,
            }),
        ),
        (
            topics.discovery("sensor", &base_id, "version"),
            Config::Sensor(Sensor {
                common: Common { icon: Some("mdi:tag".into()), ..common("version", "Version", "sensor", true) },
                state_topic: info.clone(),
                value_template: template("version"),
                device_class: None,
                unit_of_measurement: None,
                state_class: None,
                suggested_display_precision: None,
                expire_after: None,
                options: Vec::new(),
            }),
        ),
        (
            topics.discovery("sensor", &base_id, "devices"),
            Config::Sensor(Sensor {
                common: Common { icon: Some("mdi:devices".into()), ..common("devices", "Devices", "sensor", true) },
                state_topic: info.clone(),
                value_template: template("devices"),
                device_class: None,
                unit_of_measurement: None,
                state_class: Some(StateClass::Measurement),
                suggested_display_precision: None,
                expire_after: None,
                options: Vec::new(),
            }),
        ),
    ];
    for (hub, label) in hubs {
        let key = format!("hub_{}", sanitize_id(hub));
        out.push((
            topics.discovery("binary_sensor", &base_id, &key),
            Config::BinarySensor(BinarySensor {
                common: common(&key, label, "binary_sensor", true),
                state_topic: info.clone(),
                value_template: Some(format!("{{{{ value_json['hubs']['{}'] }}}}", sanitize_id(hub))),
                payload_on: "True",
                payload_off: "False",
                device_class: Some(BinarySensorClass::Connectivity),
                expire_after: None,
            }),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{EntitySpec, SensorSpec};
    use serde_json::{Value, json};

    fn ctx_topics() -> Topics {
        Topics::new("hub2mqtt", "homeassistant")
    }

    fn config_json(spec: &DeviceSpec, key: &str) -> (String, Value) {
        let topics = ctx_topics();
        let ctx = Context { topics: &topics, bridge_identifier: "hub2mqtt_bridge" };
        let id = sanitize_id(&spec.id);
        let dev = device_block(&ctx, spec, &id);
        let (topic, cfg) = entity_config(&ctx, &dev, &id, spec.entity(key).unwrap());
        (topic, serde_json::to_value(cfg).unwrap())
    }

    #[test]
    fn sensor_config_has_ids_availability_and_metadata() {
        let mut spec = DeviceSpec::new("ikuai_home", "Router");
        spec.entities.push(EntitySpec::new(
            "cpu",
            Some("CPU"),
            EntityKind::Sensor(SensorSpec::measured(None, Some("%"), Some(StateClass::Measurement))),
        ));
        let (topic, v) = config_json(&spec, "cpu");
        assert_eq!(topic, "homeassistant/sensor/ikuai_home/cpu/config");
        assert_eq!(v["unique_id"], "hub2mqtt_ikuai_home_cpu");
        assert_eq!(v["object_id"], "ikuai_home_cpu");
        assert_eq!(v["default_entity_id"], "sensor.ikuai_home_cpu");
        assert_eq!(v["state_topic"], "hub2mqtt/ikuai_home");
        assert_eq!(v["value_template"], "{{ value_json['cpu'] }}");
        assert_eq!(v["availability_mode"], "all");
        assert_eq!(v["availability"][0]["topic"], "hub2mqtt/bridge/state");
        assert_eq!(v["availability"][1]["topic"], "hub2mqtt/ikuai_home/availability");
        assert_eq!(v["device"]["identifiers"], json!(["hub2mqtt_ikuai_home"]));
        assert_eq!(v["device"]["via_device"], "hub2mqtt_bridge");
        assert_eq!(v["origin"]["name"], "hub2mqtt");
        assert_eq!(v["state_class"], "measurement");
        assert!(v.get("device_class").is_none());
    }

    #[test]
    fn main_feature_has_null_name_and_hostile_ids_are_sanitised() {
        let mut spec = DeviceSpec::new("a/b #+", "Plug / kitchen");
        spec.entities.push(EntitySpec::new("sw+1", None, EntityKind::Switch));
        let (topic, v) = config_json(&spec, "sw+1");
        assert_eq!(topic, "homeassistant/switch/a_b___/sw_1/config");
        assert!(v["name"].is_null());
        assert_eq!(v["command_topic"], "hub2mqtt/a_b___/sw_1/set");
        assert_eq!(v["device"]["name"], "Plug / kitchen");
    }

    #[test]
    fn light_speaks_json_schema_in_mireds() {
        let mut spec = DeviceSpec::new("ewelink_1", "Bulb");
        spec.entities.push(EntitySpec::new(
            "light",
            None,
            EntityKind::Light(LightSpec {
                brightness_scale: Some(100),
                color_temp_kelvin: Some((2700, 6500)),
                rgb: true,
                effects: vec![],
            }),
        ));
        let (_, v) = config_json(&spec, "light");
        assert_eq!(v["schema"], "json");
        assert_eq!(v["state_topic"], "hub2mqtt/ewelink_1/light");
        assert_eq!(v["supported_color_modes"], json!(["color_temp", "rgb"]));
        assert_eq!(v["brightness_scale"], 100);
        assert_eq!(v["min_mireds"], 154);
        assert_eq!(v["max_mireds"], 370);
        assert_eq!(v["color_mode"], true);
    }

    #[test]
    fn validation_catches_disagreeing_metadata() {
        let bad = |class, unit, state| {
            EntitySpec::new("x", Some("X"), EntityKind::Sensor(SensorSpec::measured(class, unit, state)))
        };
        assert!(validate_entity(&bad(Some(SensorClass::DataRate), Some("B/s"), Some(StateClass::Measurement))).is_ok());
        assert!(validate_entity(&bad(Some(SensorClass::DataRate), Some("%"), None)).is_err());
        assert!(validate_entity(&bad(Some(SensorClass::Temperature), None, None)).is_err());
        assert!(validate_entity(&bad(Some(SensorClass::Energy), Some("kWh"), Some(StateClass::Measurement))).is_err());
        assert!(validate_entity(&bad(Some(SensorClass::Timestamp), None, None)).is_ok());
        let mut cfg = bad(None, None, None);
        cfg.category = Some(EntityCategory::Config);
        assert!(validate_entity(&cfg).is_err());
    }

    #[test]
    fn bridge_device_has_connectivity_per_hub() {
        let topics = ctx_topics();
        let configs =
            bridge_configs(&topics, "hub2mqtt_bridge_hub2mqtt", &[("ikuai_home".into(), "Router home".into())]);
        let topics_seen: Vec<&str> = configs.iter().map(|(t, _)| t.as_str()).collect();
        assert!(topics_seen.contains(&"homeassistant/binary_sensor/hub2mqtt_bridge/hub_ikuai_home/config"));
        assert!(topics_seen.contains(&"homeassistant/sensor/hub2mqtt_bridge/version/config"));
        let conn = serde_json::to_value(&configs[0].1).unwrap();
        assert_eq!(conn["state_topic"], "hub2mqtt/bridge/state");
        assert!(conn.get("availability").is_none());
    }
}
