//! Device timers in the document's format (`timers` array of `{enabled, mId, type, coolkit_timer_type, at,
//! do | startDo/endDo, period}`): validation of what users send, `mId` UUIDs generated when missing, and
//! the `add` / `remove` conveniences computed from the device's current timers (the cloud replaces the
//! whole array on every update).
//!
//! Pure functions over JSON: knows nothing of devices' other parameters, sockets or MQTT.

use serde_json::{Map, Value, json};

use crate::hub::CommandOp;

/// The new whole timer list for a `set` (a full array), `add` (one timer or an array; a timer whose `mId`
/// already exists replaces it) or `remove` (an `mId`, `{"mId": ...}`, or an array of them).
pub fn apply(op: CommandOp, current: &[Value], value: &Value, now_s: u64) -> Result<Vec<Value>, String> {
    match op {
        CommandOp::Set => {
            let list = value.as_array().ok_or("timers/set takes the whole JSON array of timers")?;
            let list = list.iter().enumerate().map(|(i, t)| validate(t, now_s).map_err(|e| format!("timer {i}: {e}")));
            let list: Vec<Value> = list.collect::<Result<_, _>>()?;
            let mut seen = std::collections::HashSet::new();
            for t in &list {
                if !seen.insert(mid(t).unwrap_or_default()) {
                    return Err(format!("two timers have mId {}", mid(t).unwrap_or_default()));
                }
            }
            Ok(list)
        }
        CommandOp::Add => {
            let new: Vec<&Value> = match value {
                Value::Array(items) if !items.is_empty() => items.iter().collect(),
                Value::Object(_) => vec![value],
                _ => return Err("timers/add takes one timer object (or an array of them)".into()),
            };
            let mut list = current.to_vec();
            for (i, t) in new.into_iter().enumerate() {
                let t = validate(t, now_s).map_err(|e| format!("timer {i}: {e}"))?;
                let id = mid(&t);
                match list.iter_mut().find(|old| mid(old) == id) {
                    Some(old) => *old = t,
                    None => list.push(t),
                }
            }
            Ok(list)
        }
        CommandOp::Remove => {
            let ids: Vec<String> = match value {
                Value::String(s) => vec![s.clone()],
                Value::Object(o) => {
                    vec![o.get("mId").and_then(Value::as_str).ok_or("expected {\"mId\": \"...\"}")?.to_owned()]
                }
                Value::Array(items) => items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        Value::Object(o) => o.get("mId").and_then(Value::as_str).map(str::to_owned).ok_or(()),
                        _ => Err(()),
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|_| "expected an array of mIds".to_owned())?,
                _ => return Err("timers/remove takes an mId (or {\"mId\": ...}, or an array of them)".into()),
            };
            let mut list = current.to_vec();
            for id in &ids {
                let before = list.len();
                list.retain(|t| mid(t) != Some(id.as_str()));
                if list.len() == before {
                    return Err(format!("the device has no timer with mId {id}"));
                }
            }
            Ok(list)
        }
    }
}

fn mid(t: &Value) -> Option<&str> {
    t.get("mId").and_then(Value::as_str)
}

/// One timer checked and normalised to what the device expects.
pub fn validate(t: &Value, now_s: u64) -> Result<Value, String> {
    let o = t.as_object().ok_or("a timer is a JSON object")?;
    let kind = o
        .get("coolkit_timer_type")
        .or_else(|| o.get("type"))
        .and_then(Value::as_str)
        .ok_or("coolkit_timer_type (once, repeat, duration or delay) is required")?;
    let device_type = match kind {
        "once" | "delay" => "once",
        "repeat" => "repeat",
        "duration" => "duration",
        other => return Err(format!("unknown timer type {other:?} (once, repeat, duration or delay)")),
    };
    if let Some(declared) = o.get("type").and_then(Value::as_str)
        && o.contains_key("coolkit_timer_type")
        && declared != device_type
    {
        return Err(format!("type must be {device_type} for a {kind} timer"));
    }
    let enabled = match o.get("enabled") {
        None => 1,
        Some(Value::Bool(b)) => u8::from(*b),
        Some(v) if v.as_u64() == Some(0) => 0,
        Some(v) if v.as_u64() == Some(1) => 1,
        Some(other) => return Err(format!("enabled must be 0 or 1, got {other}")),
    };
    let mid = match o.get("mId") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(s)) if uuid::Uuid::parse_str(s).is_ok() => s.to_lowercase(),
        Some(other) => return Err(format!("mId must be a UUID, got {other}")),
    };
    let action = |key: &str| -> Result<Value, String> {
        match o.get(key) {
            Some(Value::Object(a)) if !a.is_empty() => Ok(Value::Object(a.clone())),
            _ => Err(format!("{key} must be a non-empty object of device parameters, e.g. {{\"switch\":\"on\"}}")),
        }
    };
    let mut out = Map::new();
    // Fields we do not know are kept as they are (the app adds its own).
    for (k, v) in o {
        out.insert(k.clone(), v.clone());
    }
    out.insert("enabled".into(), json!(enabled));
    out.insert("mId".into(), json!(mid));
    out.insert("type".into(), json!(device_type));
    out.insert("coolkit_timer_type".into(), json!(kind));
    let at = o.get("at").and_then(Value::as_str);
    match kind {
        "once" => {
            let at = at.ok_or("a once timer needs at (ISO UTC time, e.g. 2026-07-24T08:28:00.000Z)")?;
            parse_iso_utc(at)
                .ok_or_else(|| format!("at must be an ISO UTC time like 2026-07-24T08:28:00.000Z, got {at:?}"))?;
            out.insert("do".into(), action("do")?);
        }
        "repeat" => {
            let at = at.ok_or("a repeat timer needs at (\"minute hour * * weekdays\", e.g. \"36 8 * * 1,3\")")?;
            check_cron(at)?;
            out.insert("do".into(), action("do")?);
        }
        "duration" => {
            let at = at.ok_or("a duration timer needs at (\"<ISO start> <period min> <on min>\")")?;
            check_duration(at)?;
            out.insert("startDo".into(), action("startDo")?);
            out.insert("endDo".into(), action("endDo")?);
        }
        _ => {
            let period = match o.get("period") {
                Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
                Some(Value::Number(n)) => n.as_u64(),
                _ => None,
            }
            .filter(|p| *p > 0)
            .ok_or("a delay timer needs period (minutes, a positive number)")?;
            let at = match at {
                Some(at) => {
                    parse_iso_utc(at).ok_or_else(|| format!("at must be an ISO UTC time, got {at:?}"))?;
                    at.to_owned()
                }
                None => format_iso_utc(now_s + period * 60),
            };
            out.insert("at".into(), json!(at));
            out.insert("period".into(), json!(period.to_string()));
            out.insert("do".into(), action("do")?);
        }
    }
    Ok(Value::Object(out))
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM[:SS[.fff]]Z`.
pub fn parse_iso_utc(s: &str) -> Option<u64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    // Minutes-only times (`2024-02-29T07:30Z`) are common in hand-written timers: add the seconds.
    let time = if time.len() == 5 { format!("{time}:00") } else { time.to_owned() };
    let at = humantime::parse_rfc3339(&format!("{date}T{time}Z")).ok()?;
    at.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SS.000Z` for seconds since the epoch.
pub fn format_iso_utc(secs: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// `minute hour day month weekday`, each `*` or comma-separated numbers / ranges within bounds.
fn check_cron(at: &str) -> Result<(), String> {
    let fields: Vec<&str> = at.split_whitespace().collect();
    let bounds = [("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7)];
    if fields.len() != 5 {
        return Err(format!("at must be \"minute hour day month weekday\" like \"36 8 * * 1,3\", got {at:?}"));
    }
    for (field, (name, lo, hi)) in fields.iter().zip(bounds) {
        if *field == "*" {
            continue;
        }
        for part in field.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let ok = match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) => a >= lo && b <= hi && a <= b,
                _ => false,
            };
            if !ok {
                return Err(format!("at: {name} {part:?} must be * or numbers {lo}–{hi}"));
            }
        }
    }
    Ok(())
}

/// `"<ISO start> <period minutes> <on minutes>"`.
fn check_duration(at: &str) -> Result<(), String> {
    let parts: Vec<&str> = at.split_whitespace().collect();
    let ok = match parts.as_slice() {
        [start, period, on] => {
            parse_iso_utc(start).is_some()
                && matches!((period.parse::<u64>(), on.parse::<u64>()), (Ok(p), Ok(o)) if p > 0 && o > 0 && o <= p)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "at must be \"<ISO UTC start> <period min> <on min>\" like \"2026-11-21T10:24:00.980Z 10 5\", got {at:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    #[test]
    fn iso_times_round_trip() {
        assert_eq!(format_iso_utc(NOW), "2023-11-14T22:13:20.000Z");
        assert_eq!(parse_iso_utc("2023-11-14T22:13:20.000Z"), Some(NOW));
        assert_eq!(parse_iso_utc("2017-07-24T08:28:00.000Z"), Some(1_500_884_880));
        assert_eq!(parse_iso_utc("2024-02-29T00:00Z").map(format_iso_utc).as_deref(), Some("2024-02-29T00:00:00.000Z"));
        for bad in ["2023-02-29T00:00:00Z", "2017-07-24 08:28:00Z", "2017-07-24T08:28:00", "2017-13-01T00:00:00Z", "x"]
        {
            assert_eq!(parse_iso_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_documents_examples_are_valid() {
        let examples = [
            json!({"enabled":1,"mId":"c102f00f-db6f-fef0-f296-9dd10fdc2193","type":"once","at":"2017-07-24T08:28:00.000Z","do":{"switch":"on"},"coolkit_timer_type":"once"}),
            json!({"enabled":1,"mId":"847b296e-9043-ac94-ca37-aa5f91d22338","type":"repeat","at":"36 8 * * 1,3","do":{"switch":"on"},"coolkit_timer_type":"repeat"}),
            json!({"enabled":1,"mId":"847b296e-9043-ac94-ca37-aa5f91d22338","type":"duration","at":"2018-11-21T10:24:00.980Z 10 5","startDo":{"switch":"on"},"endDo":{"switch":"off"},"coolkit_timer_type":"duration"}),
            json!({"enabled":1,"mId":"95303c64-fbb4-f497-1341-c592432d1d0d","type":"once","at":"2017-07-24T09:10:43.223Z","do":{"switch":"on"},"period":"30","coolkit_timer_type":"delay"}),
        ];
        for t in examples {
            assert_eq!(validate(&t, NOW).unwrap(), t, "the document's example must pass unchanged");
        }
    }

    #[test]
    fn missing_fields_are_filled_or_refused() {
        let t = validate(
            &json!({"coolkit_timer_type": "once", "at": "2030-01-01T07:00:00.000Z", "do": {"switch": "off"}}),
            NOW,
        )
        .unwrap();
        assert_eq!(t["type"], "once");
        assert_eq!(t["enabled"], 1);
        assert!(uuid::Uuid::parse_str(t["mId"].as_str().unwrap()).is_ok());
        let delay = validate(
            &json!({"coolkit_timer_type": "delay", "period": 30, "do": {"switch": "on"}, "enabled": true}),
            NOW,
        )
        .unwrap();
        assert_eq!(delay["at"], format_iso_utc(NOW + 1800));
        assert_eq!((delay["period"].as_str(), delay["type"].as_str()), (Some("30"), Some("once")));

        let bad = [
            (json!({"at": "2030-01-01T07:00:00Z", "do": {"switch": "on"}}), "coolkit_timer_type"),
            (json!({"type": "weekly", "at": "x", "do": {}}), "unknown timer type"),
            (json!({"type": "once", "at": "tomorrow", "do": {"switch": "on"}}), "ISO"),
            (json!({"type": "once", "at": "2030-01-01T07:00:00Z"}), "do must be"),
            (json!({"type": "repeat", "at": "99 8 * * 1", "do": {"switch": "on"}}), "minute"),
            (json!({"type": "repeat", "at": "36 8 * *", "do": {"switch": "on"}}), "minute hour"),
            (
                json!({"type": "duration", "at": "2030-01-01T07:00:00Z 5 10", "startDo": {"switch": "on"}, "endDo": {"switch": "off"}}),
                "period",
            ),
            (json!({"type": "duration", "at": "2030-01-01T07:00:00Z 10 5", "do": {"switch": "on"}}), "startDo"),
            (json!({"coolkit_timer_type": "delay", "do": {"switch": "on"}}), "period"),
            (json!({"type": "once", "at": "2030-01-01T07:00:00Z", "do": {"switch": "on"}, "mId": "nope"}), "UUID"),
            (json!({"type": "once", "at": "2030-01-01T07:00:00Z", "do": {"switch": "on"}, "enabled": 2}), "enabled"),
            (
                json!({"coolkit_timer_type": "delay", "type": "repeat", "period": "5", "do": {"switch": "on"}}),
                "type must be once",
            ),
            (json!("once"), "JSON object"),
        ];
        for (t, needle) in bad {
            let e = validate(&t, NOW).unwrap_err();
            assert!(e.contains(needle), "{t}: {e}");
        }
    }

    #[test]
    fn add_and_remove_compute_the_whole_array() {
        let a = json!({"enabled":1,"mId":"c102f00f-db6f-fef0-f296-9dd10fdc2193","type":"once","at":"2030-07-24T08:28:00.000Z","do":{"switch":"on"},"coolkit_timer_type":"once"});
        let current = vec![a.clone()];
        let added = apply(
            CommandOp::Add,
            &current,
            &json!({"type": "repeat", "at": "0 7 * * 1-5", "do": {"switch": "on"}}),
            NOW,
        )
        .unwrap();
        assert_eq!(added.len(), 2);
        assert_eq!(added[0], a);
        let new_id = added[1]["mId"].as_str().unwrap().to_owned();
        // Adding a timer with an existing mId replaces it.
        let mut changed = a.clone();
        changed["enabled"] = json!(0);
        let replaced = apply(CommandOp::Add, &added, &changed, NOW).unwrap();
        assert_eq!((replaced.len(), replaced[0]["enabled"].as_u64()), (2, Some(0)));
        let removed = apply(CommandOp::Remove, &added, &json!(new_id), NOW).unwrap();
        assert_eq!(removed, vec![a.clone()]);
        let removed =
            apply(CommandOp::Remove, &added, &json!([{"mId": "c102f00f-db6f-fef0-f296-9dd10fdc2193"}, new_id]), NOW)
                .unwrap();
        assert!(removed.is_empty());
        assert!(
            apply(CommandOp::Remove, &current, &json!("95303c64-fbb4-f497-1341-c592432d1d0d"), NOW)
                .unwrap_err()
                .contains("no timer")
        );
        assert!(apply(CommandOp::Set, &current, &json!({"not": "an array"}), NOW).is_err());
        assert!(apply(CommandOp::Set, &current, &json!([a.clone(), a]), NOW).unwrap_err().contains("two timers"));
        assert_eq!(apply(CommandOp::Set, &current, &json!([]), NOW).unwrap(), Vec::<Value>::new());
    }
}
