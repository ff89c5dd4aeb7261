//! From an MQTT message on a command topic to the `(device, op, changes)` of a [`crate::hub::Command`],
//! or to a refusal with a reason. Pure functions: no I/O, no registry mutation.
//!
//! Topic shapes under `<base>/`:
//! - `<device>/set` — a JSON object `{key: value, ...}` (several entities at once);
//! - `<device>/<key>/set` — a plain value (`ON`, `50`, or JSON);
//! - `<device>/<key>/<field>/set` — one field of an entity (`percentage`, `preset_mode`, `position`);
//! - `<device>/<key>/add`, `<device>/<key>/remove` — for extra command keys such as `timers`.

use serde_json::{Map, Value};

use crate::hub::{CommandOp, EntityKind};

/// Largest command payload accepted.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// A command topic taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandTopic {
    Device { device: String },
    Entity { device: String, key: String, op: CommandOp },
    Field { device: String, key: String, field: String },
}

impl CommandTopic {
    pub fn device(&self) -> &str {
        match self {
            CommandTopic::Device { device }
            | CommandTopic::Entity { device, .. }
            | CommandTopic::Field { device, .. } => device,
        }
    }
}

/// Parses a topic under `<base>/`; `None` if it is not a command topic.
pub fn parse_topic(base: &str, topic: &str) -> Option<CommandTopic> {
    let rest = topic.strip_prefix(base)?.strip_prefix('/')?;
    let levels: Vec<&str> = rest.split('/').collect();
    let s = |x: &str| x.to_owned();
    match levels.as_slice() {
        [device, "set"] => Some(CommandTopic::Device { device: s(device) }),
        [device, key, "set"] => Some(CommandTopic::Entity { device: s(device), key: s(key), op: CommandOp::Set }),
        [device, key, "add"] => Some(CommandTopic::Entity { device: s(device), key: s(key), op: CommandOp::Add }),
        [device, key, "remove"] => Some(CommandTopic::Entity { device: s(device), key: s(key), op: CommandOp::Remove }),
        [device, key, field, "set"] => Some(CommandTopic::Field { device: s(device), key: s(key), field: s(field) }),
        _ => None,
    }
}

/// Why the bridge refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
}

impl Refusal {
    pub fn invalid(reason: impl Into<String>) -> Self {
        Refusal { code: "invalid", reason: reason.into() }
    }

    pub fn unknown_entity(reason: impl Into<String>) -> Self {
        Refusal { code: "unknown_entity", reason: reason.into() }
    }
}

/// What a device accepts, as the router needs it: `topic key → (adapter's key, kind)` for command-taking
/// entities, and the extra command keys.
pub trait CommandTargets {
    /// The adapter's key and the entity kind (`None` for an extra command key) for a sanitised key.
    fn target(&self, key: &str) -> Option<(&str, Option<&EntityKind>)>;
    /// Every accepted key, for error messages.
    fn accepted(&self) -> Vec<String>;
}

/// A plain payload as a JSON value: JSON when it parses (`50`, `true`, `{...}`), else the trimmed text.
pub fn parse_plain(text: &str) -> Value {
    let text = text.trim();
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Turns a command message into `(op, changes)` with the adapter's keys.
pub fn to_changes(
    topic: &CommandTopic,
    payload: &[u8],
    device: &dyn CommandTargets,
) -> Result<(CommandOp, Vec<(String, Value)>), Refusal> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(Refusal::invalid(format!("payload of {} bytes is larger than {MAX_COMMAND_BYTES}", payload.len())));
    }
    let text = std::str::from_utf8(payload).map_err(|_| Refusal::invalid("payload is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(Refusal::invalid("empty payload"));
    }
    let lookup = |key: &str| {
        device.target(key).ok_or_else(|| {
            Refusal::unknown_entity(format!(
                "no command key `{key}` on this device (accepted: {})",
                device.accepted().join(", ")
            ))
        })
    };
    match topic {
        CommandTopic::Device { .. } => {
            let object: Map<String, Value> = match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(o)) if !o.is_empty() => o,
                Ok(Value::Object(_)) => return Err(Refusal::invalid("empty JSON object")),
                Ok(_) => return Err(Refusal::invalid("expected a JSON object such as {\"switch\":\"ON\"}")),
                Err(e) => return Err(Refusal::invalid(format!("not valid JSON: {e}"))),
            };
            let mut changes = Vec::with_capacity(object.len());
            for (key, value) in object {
                let (adapter_key, _) = lookup(&crate::hass::sanitize_id(&key))?;
                changes.push((adapter_key.to_owned(), value));
            }
            Ok((CommandOp::Set, changes))
        }
        CommandTopic::Entity { key, op, .. } => {
            let (adapter_key, kind) = lookup(key)?;
            if *op != CommandOp::Set && kind.is_some() {
                return Err(Refusal::invalid(format!("`{key}` only accepts set")));
            }
            let mut value = parse_plain(text);
            if let Some(EntityKind::Light(_)) = kind {
                // Home Assistant's light command topic speaks mireds; the contract speaks Kelvin.
                value = crate::hass::light::command_from_ha(value);
            }
            Ok((*op, vec![(adapter_key.to_owned(), value)]))
        }
        CommandTopic::Field { key, field, .. } => {
            let (adapter_key, kind) = lookup(key)?;
            let fields = kind.map(crate::hass::discovery::command_fields).unwrap_or(&[]);
            if !fields.contains(&field.as_str()) {
                return Err(Refusal::unknown_entity(format!("`{key}` has no settable field `{field}`")));
            }
            let mut object = Map::new();
            object.insert(field.clone(), parse_plain(text));
            Ok((CommandOp::Set, vec![(adapter_key.to_owned(), Value::Object(object))]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{FanSpec, LightSpec};
    use serde_json::json;

    struct Plug {
        light: EntityKind,
        fan: EntityKind,
    }

    impl CommandTargets for Plug {
        fn target(&self, key: &str) -> Option<(&str, Option<&EntityKind>)> {
            match key {
                "switch_1" => Some(("switch_1", Some(&EntityKind::Switch))),
                "light" => Some(("light", Some(&self.light))),
                "fan" => Some(("fan", Some(&self.fan))),
                "timers" => Some(("timers", None)),
                _ => None,
            }
        }
        fn accepted(&self) -> Vec<String> {
            ["switch_1", "light", "fan", "timers"].map(String::from).to_vec()
        }
    }

    fn plug() -> Plug {
        Plug {
            light: EntityKind::Light(LightSpec { color_temp_kelvin: Some((2700, 6500)), ..LightSpec::default() }),
            fan: EntityKind::Fan(FanSpec { speed_count: Some(3), preset_modes: vec![] }),
        }
    }

    #[test]
    fn topics_parse() {
        assert_eq!(parse_topic("h", "h/d/set"), Some(CommandTopic::Device { device: "d".into() }));
        assert_eq!(
            parse_topic("a/b", "a/b/d/timers/add"),
            Some(CommandTopic::Entity { device: "d".into(), key: "timers".into(), op: CommandOp::Add })
        );
        assert_eq!(
            parse_topic("h", "h/d/fan/percentage/set"),
            Some(CommandTopic::Field { device: "d".into(), key: "fan".into(), field: "percentage".into() })
        );
        assert_eq!(parse_topic("h", "h/d"), None);
        assert_eq!(parse_topic("h", "hx/d/set"), None);
        assert_eq!(parse_topic("h", "h/d/x/y/z/set"), None);
    }

    fn changes(topic: &str, payload: &str) -> Result<(CommandOp, Vec<(String, Value)>), Refusal> {
        to_changes(&parse_topic("h", topic).unwrap(), payload.as_bytes(), &plug())
    }

    #[test]
    fn entity_payloads_are_plain_or_json() {
        assert_eq!(changes("h/d/switch_1/set", " ON\n").unwrap().1, vec![("switch_1".into(), json!("ON"))]);
        assert_eq!(changes("h/d/fan/percentage/set", "66").unwrap().1, vec![("fan".into(), json!({"percentage": 66}))]);
        assert_eq!(
            changes("h/d/light/set", r#"{"state":"ON","color_temp":250}"#).unwrap().1,
            vec![("light".into(), json!({"state": "ON", "color_temp": 4000}))]
        );
        let (op, c) = changes("h/d/timers/remove", "abc").unwrap();
        assert_eq!((op, c), (CommandOp::Remove, vec![("timers".into(), json!("abc"))]));
    }

    #[test]
    fn device_payload_is_an_object_of_known_keys() {
        let (_, c) = changes("h/d/set", r#"{"switch_1":"OFF","light":{"color_temp":4000}}"#).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1], ("switch_1".into(), json!("OFF")));
        assert_eq!(c[0], ("light".into(), json!({"color_temp": 4000})), "device-level set keeps Kelvin");
        assert_eq!(changes("h/d/set", "ON").unwrap_err().code, "invalid");
        assert_eq!(changes("h/d/set", "{}").unwrap_err().code, "invalid");
        assert_eq!(changes("h/d/set", "{\"nope\":1}").unwrap_err().code, "unknown_entity");
        assert_eq!(changes("h/d/set", "{broken").unwrap_err().code, "invalid");
    }

    #[test]
    fn refusals_name_the_problem() {
        assert_eq!(changes("h/d/nope/set", "ON").unwrap_err().code, "unknown_entity");
        assert_eq!(changes("h/d/switch_1/add", "ON").unwrap_err().code, "invalid");
        assert_eq!(changes("h/d/switch_1/speed/set", "1").unwrap_err().code, "unknown_entity");
        assert_eq!(changes("h/d/switch_1/set", "  ").unwrap_err().code, "invalid");
        let huge = "x".repeat(MAX_COMMAND_BYTES + 1);
        assert!(changes("h/d/switch_1/set", &huge).unwrap_err().reason.contains("larger"));
        let bad = to_changes(&parse_topic("h", "h/d/switch_1/set").unwrap(), &[0xff, 0xfe], &plug());
        assert_eq!(bad.unwrap_err().reason, "payload is not UTF-8 text");
    }
}
