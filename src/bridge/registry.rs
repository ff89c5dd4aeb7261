//! The bridge's memory: every device a hub announced, who owns it, its merged state, its availability,
//! and what was last published for it (fingerprints of discovery configs and state payloads), so that
//! unchanged things are not published again and vanished entities can be removed.
//!
//! Kept compact: with thousands of devices (a router's LAN clients) every allocation per device counts, so
//! a device's merged state is kept as its JSON text, and what was published only as 64-bit fingerprints.
//!
//! Pure bookkeeping: it computes what to publish and returns it as [`Outgoing`] messages; it does no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use serde_json::{Map, Value};

use super::commands::CommandTargets;
use crate::hass::discovery::{self, Context};
use crate::hass::{BRIDGE_ID, Topics, sanitize_id};
use crate::hub::{DeviceSpec, EntityKind};

/// One message the bridge should publish (always QoS 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
}

impl Outgoing {
    fn retained(topic: String, payload: impl Into<Bytes>) -> Self {
        Outgoing { topic, payload: payload.into(), retain: true }
    }

    /// An empty retained message: deletes the retained value (and the Home Assistant entity for configs).
    pub fn clear(topic: String) -> Self {
        Outgoing { topic, payload: Bytes::new(), retain: true }
    }
}

/// Whether to publish only what changed or everything (after a reconnect or Home Assistant's birth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Changes,
    Everything,
}

/// A device as the bridge keeps it.
#[derive(Debug)]
pub struct DeviceEntry {
    pub hub: usize,
    pub spec: DeviceSpec,
    /// The sanitised id used in topics.
    pub topic_id: String,
    /// The merged state as JSON text (a map; empty while no state came): one allocation instead of a
    /// tree of them.
    state: Box<[u8]>,
    online: bool,
    /// Fingerprint of the state payload last published.
    published_state: Option<u64>,
    published_entity_states: HashMap<String, Bytes>,
    published_online: Option<bool>,
    /// A fingerprint of each entity's discovery config as last published, in the order of
    /// `spec.entities` (`None`: not published); empty while nothing was. The topics follow from the
    /// entities, so neither they nor the payloads (a kilobyte or two per entity) are kept.
    published_discovery: Box<[Option<u64>]>,
}

impl DeviceEntry {
    /// The adapter's spelling of a sanitised entity key: an entity's key first, else an extra command's.
    fn adapter_key(&self, key: &str) -> Option<&str> {
        let entities = self.spec.entities.iter().map(|e| e.key.as_str());
        entities.chain(self.spec.extra_commands.iter().map(String::as_str)).find(|raw| sanitizes_to(raw, key))
    }

    fn state_map(&self) -> Map<String, Value> {
        if self.state.is_empty() {
            return Map::new();
        }
        // Always written by `update_state` from a map, so it reads back; an empty map would only lose state.
        serde_json::from_slice(&self.state).unwrap_or_else(|e| {
            tracing::error!(device = %self.spec.id, "cannot read back the kept state: {e}");
            Map::new()
        })
    }
}

/// Whether `sanitize_id(raw) == key`, without allocating.
fn sanitizes_to(raw: &str, key: &str) -> bool {
    if raw.is_empty() {
        return key == "_";
    }
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).eq(key.chars())
}

impl CommandTargets for DeviceEntry {
    fn target(&self, key: &str) -> Option<(&str, Option<&EntityKind>)> {
        let adapter_key = self.adapter_key(key)?;
        if let Some(entity) = self.spec.entity(adapter_key) {
            return entity.accepts_commands().then_some((adapter_key, Some(&entity.kind)));
        }
        Some((adapter_key, None))
    }

    fn accepted(&self) -> Vec<String> {
        let entities = self.spec.entities.iter().map(|e| e.key.as_str());
        let mut keys: Vec<String> =
            entities.chain(self.spec.extra_commands.iter().map(String::as_str)).map(sanitize_id).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.retain(|key| {
            self.adapter_key(key).is_some_and(|k| self.spec.entity(k).is_none_or(|e| e.accepts_commands()))
        });
        keys
    }
}

/// Why an announced device was not (fully) taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub device: String,
    pub reason: String,
}

/// Entity keys that would collide with the bridge's own topics under `<base>/<device>/`.
const RESERVED_KEYS: &[&str] = &["availability", "set"];

pub struct Registry {
    topics: Topics,
    discovery: bool,
    bridge_identifier: String,
    /// Boxed: a B-tree node holds eleven values whether used or not.
    devices: BTreeMap<String, Box<DeviceEntry>>,
}

impl Registry {
    pub fn new(topics: Topics, discovery: bool) -> Self {
        let bridge_identifier = format!("hub2mqtt_{}_{}", sanitize_id(&topics.base), BRIDGE_ID);
        Registry { topics, discovery, bridge_identifier, devices: BTreeMap::new() }
    }

    pub fn bridge_identifier(&self) -> &str {
        &self.bridge_identifier
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    pub fn get(&self, topic_id: &str) -> Option<&DeviceEntry> {
        self.devices.get(topic_id).map(|entry| &**entry)
    }

    /// The topic id of a hub's device, if that hub announced it.
    pub fn find(&self, hub: usize, device: &str) -> Option<String> {
        let topic_id = sanitize_id(device);
        self.devices.get(&topic_id).filter(|d| d.hub == hub && d.spec.id == device).map(|_| topic_id)
    }

    /// Takes a device announcement. Invalid entities are dropped (reported in the rejections); a device
    /// whose id clashes with another hub's device is refused whole.
    pub fn announce(&mut self, hub: usize, mut spec: DeviceSpec, out: &mut Vec<Outgoing>) -> Vec<Rejection> {
        let topic_id = sanitize_id(&spec.id);
        let mut rejections = Vec::new();
        let reject = |reason: String| Rejection { device: spec.id.clone(), reason };
        if topic_id == BRIDGE_ID {
            return vec![reject(format!("the device id `{BRIDGE_ID}` is reserved for the bridge"))];
        }
        if let Some(existing) = self.devices.get(&topic_id)
            && (existing.hub != hub || existing.spec.id != spec.id)
        {
            return vec![reject(format!(
                "its topic id `{topic_id}` is already used by device `{}`; device ids must be unique",
                existing.spec.id
            ))];
        }
        let mut keys = HashSet::new();
        spec.entities.retain(|entity| {
            let key = sanitize_id(&entity.key);
            let problem = if RESERVED_KEYS.contains(&key.as_str()) {
                Some(format!("entity key `{key}` is reserved"))
            } else if keys.contains(&key) {
                Some(format!("two entities share the key `{key}`"))
            } else {
                discovery::validate_entity(entity).err()
            };
            match problem {
                Some(reason) => {
                    rejections.push(Rejection {
                        device: spec.id.clone(),
                        reason: format!("entity `{}` dropped: {reason}", entity.key),
                    });
                    false
                }
                None => {
                    keys.insert(key);
                    true
                }
            }
        });
        // Kept for the device's life: no spare capacity (an adapter pushing one entity leaves room for four).
        spec.entities.shrink_to_fit();
        let previous = match self.devices.get_mut(&topic_id) {
            Some(entry) => {
                if entry.spec == spec {
                    return rejections;
                }
                Some(std::mem::replace(&mut entry.spec, spec))
            }
            None => {
                let entry = DeviceEntry {
                    hub,
                    spec,
                    topic_id: topic_id.clone(),
                    state: Box::default(),
                    online: true,
                    published_state: None,
                    published_entity_states: HashMap::new(),
                    published_online: None,
                    published_discovery: Box::default(),
                };
                self.devices.insert(topic_id.clone(), Box::new(entry));
                None
            }
        };
        self.publish_discovery(&topic_id, Mode::Changes, previous.as_ref(), out);
        if let Some(entry) = self.devices.get_mut(&topic_id) {
            Self::publish_availability(&self.topics, entry, Mode::Changes, out);
            let state = entry.state_map();
            Self::publish_state(&self.topics, entry, &state, Mode::Changes, out);
        }
        rejections
    }

    /// Forgets a device and clears everything published for it.
    pub fn remove(&mut self, topic_id: &str, out: &mut Vec<Outgoing>) {
        let Some(entry) = self.devices.remove(topic_id) else { return };
        for (topic, _) in published_configs(&self.topics, topic_id, &entry.spec, &entry.published_discovery) {
            out.push(Outgoing::clear(topic));
        }
        for key in entry.published_entity_states.keys() {
            out.push(Outgoing::clear(self.topics.entity_state(topic_id, key)));
        }
        out.push(Outgoing::clear(self.topics.state(topic_id)));
        out.push(Outgoing::clear(self.topics.availability(topic_id)));
    }

    /// Merges new values into a device's state and publishes what changed.
    pub fn update_state(&mut self, topic_id: &str, values: Map<String, Value>, out: &mut Vec<Outgoing>) {
        let Some(entry) = self.devices.get_mut(topic_id) else { return };
        let mut state = entry.state_map();
        for (key, value) in values {
            let key = if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                key
            } else {
                sanitize_id(&key)
            };
            state.insert(key, value);
        }
        match serde_json::to_vec(&state) {
            Ok(text) => entry.state = text.into_boxed_slice(),
            Err(e) => tracing::error!(device = %entry.spec.id, "cannot keep the state: {e}"),
        }
        Self::publish_state(&self.topics, entry, &state, Mode::Changes, out);
    }

    pub fn set_online(&mut self, topic_id: &str, online: bool, out: &mut Vec<Outgoing>) {
        let Some(entry) = self.devices.get_mut(topic_id) else { return };
        entry.online = online;
        Self::publish_availability(&self.topics, entry, Mode::Changes, out);
    }

    /// Everything for every device: discovery first, then availability and states.
    pub fn publish_all(&mut self, out: &mut Vec<Outgoing>) {
        let ids: Vec<String> = self.devices.keys().cloned().collect();
        for id in &ids {
            self.publish_discovery(id, Mode::Everything, None, out);
        }
        for entry in self.devices.values_mut() {
            Self::publish_availability(&self.topics, entry, Mode::Everything, out);
            let state = entry.state_map();
            Self::publish_state(&self.topics, entry, &state, Mode::Everything, out);
        }
    }

    /// Forget what was published (after a disconnect nothing can be assumed of the broker).
    pub fn forget_published(&mut self) {
        for entry in self.devices.values_mut() {
            entry.published_state = None;
            entry.published_entity_states.clear();
            entry.published_online = None;
        }
    }

    /// Publishes the discovery configs of a device; `previous` is the spec the kept fingerprints were made
    /// from when it just changed (else they belong to the current one).
    fn publish_discovery(
        &mut self,
        topic_id: &str,
        mode: Mode,
        previous: Option<&DeviceSpec>,
        out: &mut Vec<Outgoing>,
    ) {
        if !self.discovery {
            return;
        }
        let Some(entry) = self.devices.get_mut(topic_id) else { return };
        let published: BTreeMap<String, u64> =
            published_configs(&self.topics, topic_id, previous.unwrap_or(&entry.spec), &entry.published_discovery)
                .collect();
        let ctx = Context { topics: &self.topics, bridge_identifier: &self.bridge_identifier };
        let device = discovery::device_block(&ctx, &entry.spec, topic_id);
        let mut configs = BTreeMap::new();
        for (index, entity) in entry.spec.entities.iter().enumerate() {
            let (topic, config) = discovery::entity_config(&ctx, &device, topic_id, entity);
            match serde_json::to_vec(&config) {
                Ok(payload) => {
                    configs.insert(topic, (index, Bytes::from(payload)));
                }
                Err(e) => {
                    tracing::error!(device = %entry.spec.id, entity = %entity.key, "cannot serialise discovery: {e}")
                }
            }
        }
        for (topic, _) in published.iter().filter(|(t, _)| !configs.contains_key(*t)) {
            out.push(Outgoing::clear(topic.clone()));
        }
        let light_keys: Vec<String> = light_keys(&entry.spec).collect();
        entry.published_entity_states.retain(|key, _| {
            let keep = light_keys.contains(key);
            if !keep {
                out.push(Outgoing::clear(self.topics.entity_state(topic_id, key)));
            }
            keep
        });
        let mut prints = vec![None; entry.spec.entities.len()];
        for (topic, (index, payload)) in configs {
            let print = fingerprint(&payload);
            if mode == Mode::Everything || published.get(&topic) != Some(&print) {
                out.push(Outgoing::retained(topic, payload));
            }
            prints[index] = Some(print);
        }
        entry.published_discovery = prints.into_boxed_slice();
    }

    fn publish_availability(topics: &Topics, entry: &mut DeviceEntry, mode: Mode, out: &mut Vec<Outgoing>) {
        if mode == Mode::Everything || entry.published_online != Some(entry.online) {
            let payload: &'static [u8] = if entry.online { b"online" } else { b"offline" };
            out.push(Outgoing::retained(topics.availability(&entry.topic_id), Bytes::from_static(payload)));
            entry.published_online = Some(entry.online);
        }
    }

    fn publish_state(
        topics: &Topics,
        entry: &mut DeviceEntry,
        state: &Map<String, Value>,
        mode: Mode,
        out: &mut Vec<Outgoing>,
    ) {
        if state.is_empty() {
            return;
        }
        // Every entity key is present (null while unknown) so that templates never hit a missing key.
        let mut published = state.clone();
        for entity in &entry.spec.entities {
            let key = sanitize_id(&entity.key);
            published.entry(key).or_insert(Value::Null);
            if let Some(attrs) = &entity.attributes_key {
                published.entry(sanitize_id(attrs)).or_insert_with(|| Value::Object(Map::new()));
            }
        }
        let payload = match serde_json::to_vec(&published) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::error!(device = %entry.spec.id, "cannot serialise state: {e}");
                return;
            }
        };
        let print = fingerprint(&payload);
        if mode == Mode::Everything || entry.published_state != Some(print) {
            out.push(Outgoing::retained(topics.state(&entry.topic_id), payload));
            entry.published_state = Some(print);
        }
        for key in light_keys(&entry.spec) {
            let Some(ha_state) = published.get(&key).and_then(crate::hass::light::state_for_ha) else { continue };
            let Ok(bytes) = serde_json::to_vec(&ha_state) else { continue };
            let bytes = Bytes::from(bytes);
            if mode == Mode::Everything || entry.published_entity_states.get(&key) != Some(&bytes) {
                out.push(Outgoing::retained(topics.entity_state(&entry.topic_id, &key), bytes.clone()));
                entry.published_entity_states.insert(key, bytes);
            }
        }
    }
}

/// A 64-bit fingerprint of a payload, to tell whether it changed since it was published.
fn fingerprint(payload: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut hasher);
    hasher.finish()
}

/// The discovery topics published for a device's entities, with their fingerprints (`prints` in the order
/// of `spec.entities`, as [`DeviceEntry::published_discovery`]).
fn published_configs<'a>(
    topics: &'a Topics,
    topic_id: &'a str,
    spec: &'a DeviceSpec,
    prints: &'a [Option<u64>],
) -> impl Iterator<Item = (String, u64)> + 'a {
    spec.entities.iter().zip(prints).filter_map(move |(entity, print)| {
        let topic = topics.discovery(discovery::component(&entity.kind), topic_id, &sanitize_id(&entity.key));
        print.map(|p| (topic, p))
    })
}

/// Sanitised keys of entities that have their own state topic.
fn light_keys(spec: &DeviceSpec) -> impl Iterator<Item = String> + '_ {
    spec.entities.iter().filter(|e| discovery::has_own_state_topic(&e.kind)).map(|e| sanitize_id(&e.key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{EntitySpec, LightSpec, SensorSpec};
    use serde_json::json;

    fn registry() -> Registry {
        Registry::new(Topics::new("h", "ha"), true)
    }

    fn plug(id: &str) -> DeviceSpec {
        let mut spec = DeviceSpec::new(id, "Plug");
        spec.entities.push(EntitySpec::new("switch", None, EntityKind::Switch));
        spec.entities
            .push(EntitySpec::new("rssi", Some("RSSI"), EntityKind::Sensor(SensorSpec::default())).diagnostic());
        spec
    }

    fn topics(out: &[Outgoing]) -> Vec<&str> {
        out.iter().map(|o| o.topic.as_str()).collect()
    }

    #[test]
    fn announce_publishes_discovery_then_availability_and_dedupes() {
        let mut r = registry();
        let mut out = Vec::new();
        assert!(r.announce(0, plug("p1"), &mut out).is_empty());
        assert_eq!(topics(&out), vec!["ha/sensor/p1/rssi/config", "ha/switch/p1/switch/config", "h/p1/availability"]);
        out.clear();
        r.announce(0, plug("p1"), &mut out);
        assert!(out.is_empty(), "an identical announcement publishes nothing");
        r.update_state("p1", json!({"switch": "ON"}).as_object().unwrap().clone(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload, Bytes::from(r#"{"rssi":null,"switch":"ON"}"#));
        out.clear();
        r.update_state("p1", json!({"switch": "ON"}).as_object().unwrap().clone(), &mut out);
        assert!(out.is_empty(), "an unchanged state is not published again");
    }

    #[test]
    fn vanished_entities_are_cleared() {
        let mut r = registry();
        let mut out = Vec::new();
        r.announce(0, plug("p1"), &mut out);
        out.clear();
        let mut smaller = plug("p1");
        smaller.entities.retain(|e| e.key == "switch");
        r.announce(0, smaller, &mut out);
        assert_eq!(out, vec![Outgoing::clear("ha/sensor/p1/rssi/config".into())]);
        out.clear();
        r.remove("p1", &mut out);
        assert_eq!(topics(&out), vec!["ha/switch/p1/switch/config", "h/p1", "h/p1/availability"]);
        assert!(out.iter().all(|o| o.payload.is_empty() && o.retain));
    }

    #[test]
    fn clashing_and_reserved_ids_are_refused() {
        let mut r = registry();
        let mut out = Vec::new();
        r.announce(0, plug("a/b"), &mut out);
        let rej = r.announce(1, plug("a+b"), &mut out);
        assert!(rej[0].reason.contains("already used"), "{rej:?}");
        assert!(!r.announce(0, plug("bridge"), &mut out).is_empty());
        let mut bad = plug("p2");
        bad.entities.push(EntitySpec::new("availability", None, EntityKind::Switch));
        let rej = r.announce(0, bad, &mut out);
        assert_eq!(rej.len(), 1);
        assert_eq!(r.get("p2").unwrap().spec.entities.len(), 2);
    }

    #[test]
    fn lights_get_their_own_topic_in_mireds() {
        let mut r = registry();
        let mut out = Vec::new();
        let mut spec = DeviceSpec::new("bulb", "Bulb");
        spec.entities.push(EntitySpec::new(
            "light",
            None,
            EntityKind::Light(LightSpec {
                brightness_scale: Some(100),
                color_temp_kelvin: Some((2700, 6500)),
                ..Default::default()
            }),
        ));
        r.announce(0, spec, &mut out);
        out.clear();
        r.update_state(
            "bulb",
            json!({"light": {"state": "ON", "color_temp": 4000}}).as_object().unwrap().clone(),
            &mut out,
        );
        assert_eq!(topics(&out), vec!["h/bulb", "h/bulb/light"]);
        assert_eq!(out[1].payload, Bytes::from(r#"{"color_temp":250,"state":"ON"}"#));
    }

    #[test]
    fn command_targets_map_back_to_adapter_keys() {
        let mut r = registry();
        let mut out = Vec::new();
        let mut spec = plug("p1");
        spec.entities.push(EntitySpec::new("Relay 2", Some("Relay 2"), EntityKind::Switch));
        spec.extra_commands.push("timers".into());
        r.announce(0, spec, &mut out);
        let entry = r.get("p1").unwrap();
        assert_eq!(entry.target("Relay_2").map(|t| t.0), Some("Relay 2"));
        assert_eq!(entry.target("timers").map(|t| t.1.is_none()), Some(true));
        assert!(entry.target("rssi").is_none(), "sensors take no commands");
        assert_eq!(entry.accepted(), vec!["Relay_2", "switch", "timers"]);
    }

    #[test]
    fn sanitizes_to_agrees_with_sanitize_id() {
        for raw in ["", "switch", "Relay 2", "a/b+c", "ünï", "x-y_z", "_"] {
            assert!(sanitizes_to(raw, &sanitize_id(raw)), "{raw}");
            assert!(!sanitizes_to(raw, "other"), "{raw}");
        }
    }

    #[test]
    fn state_is_merged_across_updates_and_a_changed_kind_moves_its_config() {
        let mut r = registry();
        let mut out = Vec::new();
        r.announce(0, plug("p1"), &mut out);
        r.update_state("p1", json!({"switch": "ON", "rssi": -60}).as_object().unwrap().clone(), &mut out);
        out.clear();
        r.update_state("p1", json!({"rssi": -61.5}).as_object().unwrap().clone(), &mut out);
        assert_eq!(out[0].payload, Bytes::from(r#"{"rssi":-61.5,"switch":"ON"}"#));
        out.clear();
        let mut changed = plug("p1");
        changed.entities[1].kind = EntityKind::BinarySensor { device_class: None, expire_after: None };
        r.announce(0, changed, &mut out);
        assert_eq!(topics(&out), vec!["ha/sensor/p1/rssi/config", "ha/binary_sensor/p1/rssi/config"]);
        assert!(out[0].payload.is_empty() && !out[1].payload.is_empty());
        out.clear();
        r.remove("p1", &mut out);
        assert_eq!(
            topics(&out),
            vec!["ha/switch/p1/switch/config", "ha/binary_sensor/p1/rssi/config", "h/p1", "h/p1/availability"]
        );
    }
}
