//! Lights between the hub contract and Home Assistant's JSON light schema.
//!
//! The contract (see `hub.rs`) carries colour temperature in Kelvin, the unit people and Node-RED flows
//! use. Home Assistant before 2025.1 reads `color_temp` of a JSON light only in mireds, so the light's own
//! topic (`<base>/<device>/<key>`) and its command topic speak mireds; this module converts both ways.
//! Everything else in the object passes through unchanged.

use serde_json::{Map, Value};

/// Kelvin ↔ mireds (the same formula both ways), rounded, never dividing by zero.
pub fn kelvin_to_mireds(value: u16) -> u16 {
    let v = u32::from(value.max(1));
    ((1_000_000 + v / 2) / v).min(u32::from(u16::MAX)) as u16
}

fn convert_color_temp(object: &mut Map<String, Value>) {
    if let Some(ct) = object.get("color_temp").and_then(Value::as_f64)
        && ct >= 1.0
    {
        let converted = kelvin_to_mireds(ct.round().min(f64::from(u16::MAX)) as u16);
        object.insert("color_temp".into(), Value::from(converted));
    }
}

/// The payload for the light's Home Assistant state topic, from the light's value in the device state.
/// `None` when the value is not a light object (nothing to publish).
pub fn state_for_ha(value: &Value) -> Option<Value> {
    let mut object = value.as_object()?.clone();
    convert_color_temp(&mut object);
    Some(Value::Object(object))
}

/// A command from Home Assistant's light command topic, in the contract's units.
pub fn command_from_ha(value: Value) -> Value {
    match value {
        Value::Object(mut object) => {
            convert_color_temp(&mut object);
            Value::Object(object)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kelvin_and_mireds() {
        assert_eq!(kelvin_to_mireds(2700), 370);
        assert_eq!(kelvin_to_mireds(6500), 154);
        assert_eq!(kelvin_to_mireds(370), 2703);
        assert_eq!(kelvin_to_mireds(0), u16::MAX);
    }

    #[test]
    fn state_and_commands_convert_only_color_temp() {
        let state = json!({"state": "ON", "brightness": 40, "color_mode": "color_temp", "color_temp": 4000});
        assert_eq!(
            state_for_ha(&state).unwrap(),
            json!({"state": "ON", "brightness": 40, "color_mode": "color_temp", "color_temp": 250})
        );
        assert_eq!(
            command_from_ha(json!({"state": "ON", "color_temp": 250})),
            json!({"state": "ON", "color_temp": 4000})
        );
        assert_eq!(command_from_ha(json!("ON")), json!("ON"));
        assert_eq!(state_for_ha(&json!(null)), None);
    }
}
