//! Payloads of `<base>/bridge/event`: what went wrong, for people and for flows (Node-RED alerts).
//!
//! Every event is one JSON object with a `type`, a reason a user can act on, and `ts` (milliseconds since
//! the Unix epoch). Text is passed through the secret redactor before it leaves the process.

use serde::Serialize;
use serde_json::Value;

/// Longest command payload echoed back in an event.
const MAX_ECHO: usize = 1024;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BridgeEvent {
    /// A command was refused by the bridge or failed at the hub.
    CommandFailed {
        device: String,
        topic: String,
        command: Value,
        /// `unknown_device`, `unknown_entity`, `invalid`, `retained`, `busy`, or a hub code
        /// (`offline`, `timeout`, `unavailable`, `rejected`, `invalid`).
        code: String,
        reason: String,
        ts: u64,
    },
    /// A hub reported a problem (login failed, odd response, device rejected).
    HubProblem { hub: String, device: Option<String>, reason: String, ts: u64 },
    /// A hub's connection went up or down.
    HubLink { hub: String, up: bool, reason: Option<String>, ts: u64 },
}

impl BridgeEvent {
    /// The JSON payload, with every registered secret masked.
    pub fn to_payload(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"type\":\"error\",\"reason\":\"{e}\"}}"));
        crate::secret::redact(&json).into_owned()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A command payload as shown in an event: JSON when it is JSON, else text; cut at 1 KiB.
pub fn echo_payload(payload: &[u8]) -> Value {
    let cut = &payload[..payload.len().min(MAX_ECHO)];
    if cut.len() == payload.len()
        && let Ok(v) = serde_json::from_slice::<Value>(cut)
    {
        return v;
    }
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < payload.len() {
        text.push('…');
    }
    Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_with_secrets_masked() {
        crate::secret::register("tok-ABCDEF-123456");
        let e = BridgeEvent::HubProblem {
            hub: "ewelink_home".into(),
            device: None,
            reason: "refresh failed for rt=tok-ABCDEF-123456".into(),
            ts: 1,
        };
        let v: Value = serde_json::from_str(&e.to_payload()).unwrap();
        assert_eq!(v["type"], "hub_problem");
        assert_eq!(v["reason"], format!("refresh failed for rt={}", crate::secret::MASK));
    }

    #[test]
    fn echo_keeps_json_and_cuts_long_text() {
        assert_eq!(echo_payload(br#"{"state":"ON"}"#), serde_json::json!({"state": "ON"}));
        assert_eq!(echo_payload(b"ON"), Value::String("ON".into()));
        let long = vec![b'x'; 5000];
        assert_eq!(echo_payload(&long).as_str().unwrap().chars().count(), MAX_ECHO + 1);
    }
}
