//! Home Assistant's side of MQTT: topic layout, id rules, typed discovery payloads and the light schema.
//!
//! Owns every topic string the bridge publishes or subscribes to, and the rules that keep ids inside
//! `[a-zA-Z0-9_-]` so that no device or entity name can inject topic levels or wildcards.
//! Knows nothing of any hub.

pub mod discovery;
pub mod light;

/// Makes a string safe as a topic level and as a Home Assistant id: every character outside
/// `[a-zA-Z0-9_-]` becomes `_`; an empty string becomes `_`.
pub fn sanitize_id(raw: &str) -> String {
    let id: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if id.is_empty() { "_".to_owned() } else { id }
}

/// The topic id reserved for the bridge itself (`<base>/bridge/...`).
pub const BRIDGE_ID: &str = "bridge";

/// Every topic hub2mqtt uses, derived from the base topic and the discovery prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    pub base: String,
    pub prefix: String,
}

impl Topics {
    pub fn new(base: &str, prefix: &str) -> Self {
        Topics { base: base.to_owned(), prefix: prefix.to_owned() }
    }

    /// `<base>/bridge/state`: `online` / `offline`, retained; the last will.
    pub fn bridge_state(&self) -> String {
        format!("{}/bridge/state", self.base)
    }

    /// `<base>/bridge/event`: command failures and hub problems, not retained.
    pub fn bridge_event(&self) -> String {
        format!("{}/bridge/event", self.base)
    }

    /// `<base>/bridge/info`: the bridge device's state (version, device count, hub links), retained.
    pub fn bridge_info(&self) -> String {
        format!("{}/bridge/info", self.base)
    }

    /// `<base>/<device>`: the device's state as one JSON object, retained.
    pub fn state(&self, device: &str) -> String {
        format!("{}/{}", self.base, device)
    }

    /// `<base>/<device>/availability`: `online` / `offline`, retained.
    pub fn availability(&self, device: &str) -> String {
        format!("{}/{}/availability", self.base, device)
    }

    /// `<base>/<device>/<key>`: an entity's own state, for entities whose Home Assistant schema reads a
    /// whole payload (JSON lights).
    pub fn entity_state(&self, device: &str, key: &str) -> String {
        format!("{}/{}/{}", self.base, device, key)
    }

    /// `<base>/<device>/<key>/set`.
    pub fn command(&self, device: &str, key: &str) -> String {
        format!("{}/{}/{}/set", self.base, device, key)
    }

    /// `<base>/<device>/<key>/<field>/set` (fan percentage, cover position).
    pub fn field_command(&self, device: &str, key: &str, field: &str) -> String {
        format!("{}/{}/{}/{}/set", self.base, device, key, field)
    }

    /// `<prefix>/<component>/<device>/<key>/config`.
    pub fn discovery(&self, component: &str, device: &str, key: &str) -> String {
        format!("{}/{}/{}/{}/config", self.prefix, component, device, key)
    }

    /// `<prefix>/status`: Home Assistant's birth (`online`) and last will (`offline`).
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// Filters the bridge subscribes to for commands (every one ends in a command verb, so none matches
    /// a topic the bridge publishes itself).
    pub fn command_filters(&self) -> Vec<String> {
        let b = &self.base;
        vec![
            format!("{b}/+/set"),
            format!("{b}/+/+/set"),
            format!("{b}/+/+/+/set"),
            format!("{b}/+/+/add"),
            format!("{b}/+/+/remove"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_inject_topic_levels() {
        assert_eq!(sanitize_id("a/b #+"), "a_b___");
        assert_eq!(sanitize_id(""), "_");
        assert_eq!(sanitize_id("Küche-1_x"), "K_che-1_x");
        assert_eq!(sanitize_id("ewelink_1000abcdef"), "ewelink_1000abcdef");
    }

    #[test]
    fn topic_layout() {
        let t = Topics::new("hub2mqtt", "homeassistant");
        assert_eq!(t.state("dev"), "hub2mqtt/dev");
        assert_eq!(t.command("dev", "switch_1"), "hub2mqtt/dev/switch_1/set");
        assert_eq!(t.discovery("sensor", "dev", "cpu"), "homeassistant/sensor/dev/cpu/config");
        assert_eq!(t.ha_status(), "homeassistant/status");
        assert!(t.command_filters().iter().all(|f| f.starts_with("hub2mqtt/+/")));
    }
}
