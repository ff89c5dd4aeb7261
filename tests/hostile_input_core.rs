//! Property tests over every parser of the core that reads user or network input: command topics and
//! payloads, config files, id sanitising, light conversion, event echoes. None may panic; what they
//! accept stays within the documented bounds.

use hub2mqtt::bridge::commands::{self, CommandTargets, MAX_COMMAND_BYTES};
use hub2mqtt::config::Config;
use hub2mqtt::hass::{light, sanitize_id};
use hub2mqtt::hub::{EntityKind, FanSpec, LightSpec};
use proptest::prelude::*;
use serde_json::Value;

struct Device {
    light: EntityKind,
    fan: EntityKind,
}

impl CommandTargets for Device {
    fn target(&self, key: &str) -> Option<(&str, Option<&EntityKind>)> {
        match key {
            "switch" => Some(("switch", Some(&EntityKind::Switch))),
            "light" => Some(("light", Some(&self.light))),
            "fan" => Some(("fan", Some(&self.fan))),
            "timers" => Some(("timers", None)),
            _ => None,
        }
    }
    fn accepted(&self) -> Vec<String> {
        ["fan", "light", "switch", "timers"].map(String::from).to_vec()
    }
}

fn device() -> Device {
    Device {
        light: EntityKind::Light(LightSpec { color_temp_kelvin: Some((2700, 6500)), ..Default::default() }),
        fan: EntityKind::Fan(FanSpec { speed_count: Some(3), preset_modes: vec!["low".into()] }),
    }
}

/// Arbitrary JSON values up to a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}|color_temp|state|percentage", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn topic() -> impl Strategy<Value = String> {
    let level =
        prop_oneof!["[a-z_]{1,8}", Just("set".to_owned()), Just("".to_owned()), ".{0,6}", Just("switch".to_owned())];
    prop::collection::vec(level, 0..6).prop_map(|levels| format!("hub2mqtt/{}", levels.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn command_parsing_never_panics_and_only_routes_known_keys(topic in topic(), payload in prop::collection::vec(any::<u8>(), 0..300)) {
        let d = device();
        if let Some(parsed) = commands::parse_topic("hub2mqtt", &topic) {
            if let Ok((_, changes)) = commands::to_changes(&parsed, &payload, &d) {
                prop_assert!(!changes.is_empty());
                for (key, _) in changes {
                    prop_assert!(d.accepted().contains(&key));
                }
            }
        }
    }

    #[test]
    fn device_level_json_is_accepted_only_with_known_keys(value in json_value()) {
        let d = device();
        let parsed = commands::parse_topic("hub2mqtt", "hub2mqtt/dev/set").unwrap();
        let payload = serde_json::to_vec(&value).unwrap();
        match commands::to_changes(&parsed, &payload, &d) {
            Ok((_, changes)) => {
                let object = value.as_object().expect("only objects are accepted");
                prop_assert_eq!(changes.len(), object.len());
            }
            Err(refusal) => prop_assert!(!refusal.reason.is_empty()),
        }
    }

    #[test]
    fn oversized_payloads_are_refused(extra in 1usize..2048) {
        let parsed = commands::parse_topic("hub2mqtt", "hub2mqtt/dev/switch/set").unwrap();
        let refusal = commands::to_changes(&parsed, &vec![b'1'; MAX_COMMAND_BYTES + extra], &device()).unwrap_err();
        prop_assert_eq!(refusal.code, "invalid");
    }

    #[test]
    fn sanitised_ids_are_safe_topic_levels(raw in ".{0,40}") {
        let id = sanitize_id(&raw);
        prop_assert!(!id.is_empty());
        prop_assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        prop_assert_eq!(sanitize_id(&id), id.clone(), "sanitising is idempotent");
    }

    #[test]
    fn light_conversion_never_panics(value in json_value()) {
        let _ = light::state_for_ha(&value);
        let back = light::command_from_ha(value.clone());
        prop_assert_eq!(back.is_object(), value.is_object());
    }

    #[test]
    fn config_parsing_never_panics(text in "(\\[\\[?[a-z]{0,8}\\]\\]?\n|[a-z_]{1,12} = (\"[^\"\n]{0,12}\"|[0-9]{1,6}|true|\\[\\])\n|.{0,12}\n){0,12}") {
        if let Ok(cfg) = Config::parse(&text, "fuzz.toml", std::iter::empty()) {
            let _ = cfg.validate();
            let _ = cfg.to_masked_toml();
        }
    }

    #[test]
    fn environment_overrides_never_panic(name in "HUB2MQTT_[A-Z_]{0,30}", value in ".{0,16}") {
        let toml = "[[ikuai]]\nid = \"home\"\nurl = \"http://10.0.0.1\"\npassword = \"x\"\n";
        let _ = Config::parse(toml, "fuzz.toml", [(name, value)]);
    }
}
