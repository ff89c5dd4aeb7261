//! The contract between hub adapters and the bridge.
//!
//! An adapter (iKuai, eWeLink, ...) describes its devices with [`DeviceSpec`]s, reports what happens with
//! [`HubEvent`]s through its [`HubEvents`] sender, and receives [`Command`]s on its [`HubHandle`]. Every
//! command must be answered through its [`CommandReply`]: confirmed with [`CommandReply::ok`] or failed with
//! a [`CommandError`] (a reply dropped unanswered is reported as a failure by the bridge).
//!
//! This module knows nothing of MQTT topics, Home Assistant discovery payloads or any hub's wire format.
//! The entity vocabulary below (device classes, units, state classes) is Home Assistant's, because that is
//! the language users and dashboards speak; how it is serialised belongs to `hass`.
//!
//! ## State values
//! A device's state is one JSON object. Each entity reads the value under its `key`:
//!
//! | kind | value under `key` | command value (same shape, or a part of it) |
//! |---|---|---|
//! | sensor | number, string, or `null` (unknown) | — |
//! | binary_sensor | `true` / `false` | — |
//! | switch | `"ON"` / `"OFF"` | `"ON"` / `"OFF"` (also `true`/`false`, `"on"`/`"off"`, `"TOGGLE"`) |
//! | light | `{"state":"ON","brightness":n,"color_mode":"color_temp","color_temp":kelvin,"color":{"r","g","b"}}` | the same object, any subset |
//! | device_tracker | `"home"` / `"not_home"` | — |
//! | button | — | `"PRESS"` |
//! | fan | `{"state":"ON","percentage":n,"preset_mode":"low"}` | `"ON"`/`"OFF"` or any subset of the object |
//! | cover | `{"state":"open","position":n}` (state: open, closed, opening, closing, stopped) | `"OPEN"`/`"CLOSE"`/`"STOP"` or `{"position":n}` |
//!
//! Extra command keys (`DeviceSpec::extra_commands`, e.g. `timers`) take whatever the adapter documents.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

/// A device as a hub describes it. Sent as [`HubEvent::Device`] when first seen and whenever it changes;
/// the bridge compares entity lists and removes entities that disappeared.
#[derive(Debug, Clone, PartialEq, Hash)]
pub struct DeviceSpec {
    /// Stable, unique across the whole bridge (prefix it with the hub id, e.g. `ikuai_home`,
    /// `ewelink_1000abcdef`). The bridge derives topic-safe ids from it.
    pub id: String,
    /// Display name (free text; never used in topics).
    pub name: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub sw_version: Option<String>,
    pub hw_version: Option<String>,
    pub serial_number: Option<String>,
    /// A URL where the user can manage the device (e.g. the router's web UI).
    pub configuration_url: Option<String>,
    /// Network identities, e.g. `("mac", "aa:bb:cc:dd:ee:ff")`.
    pub connections: Vec<(String, String)>,
    /// The device this one is reached through (a LAN client's router); `None` means the bridge itself.
    pub via_device: Option<String>,
    pub entities: Vec<EntitySpec>,
    /// Command keys that are not entities but accept `set` (and `add` / `remove`), e.g. `timers`.
    pub extra_commands: Vec<String>,
}

impl DeviceSpec {
    /// A device with only the required fields filled in.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        DeviceSpec {
            id: id.into(),
            name: name.into(),
            manufacturer: None,
            model: None,
            sw_version: None,
            hw_version: None,
            serial_number: None,
            configuration_url: None,
            connections: Vec::new(),
            via_device: None,
            entities: Vec::new(),
            extra_commands: Vec::new(),
        }
    }

    /// The entity with this state key, if any.
    pub fn entity(&self, key: &str) -> Option<&EntitySpec> {
        self.entities.iter().find(|e| e.key == key)
    }
}

/// One entity of a device.
#[derive(Debug, Clone, PartialEq, Hash)]
pub struct EntitySpec {
    /// Key of the entity's value in the device's state object; also the entity's id segment in topics.
    pub key: String,
    /// Entity name shown under the device name; `None` for the device's main feature.
    pub name: Option<String>,
    pub kind: EntityKind,
    pub category: Option<EntityCategory>,
    /// A Material Design icon, e.g. `mdi:router-network`.
    pub icon: Option<String>,
    /// `false` hides the entity in Home Assistant until the user enables it.
    pub enabled_by_default: bool,
    /// A key of the device's state object holding a JSON object shown as this entity's attributes.
    pub attributes_key: Option<String>,
}

impl EntitySpec {
    pub fn new(key: impl Into<String>, name: Option<&str>, kind: EntityKind) -> Self {
        EntitySpec {
            key: key.into(),
            name: name.map(str::to_owned),
            kind,
            category: None,
            icon: None,
            enabled_by_default: true,
            attributes_key: None,
        }
    }

    pub fn diagnostic(mut self) -> Self {
        self.category = Some(EntityCategory::Diagnostic);
        self
    }

    pub fn icon(mut self, icon: &str) -> Self {
        self.icon = Some(icon.to_owned());
        self
    }

    pub fn disabled_by_default(mut self) -> Self {
        self.enabled_by_default = false;
        self
    }

    pub fn attributes(mut self, key: impl Into<String>) -> Self {
        self.attributes_key = Some(key.into());
        self
    }

    /// Whether the bridge routes commands to this entity.
    pub fn accepts_commands(&self) -> bool {
        matches!(
            self.kind,
            EntityKind::Switch
                | EntityKind::Light(_)
                | EntityKind::Button { .. }
                | EntityKind::Fan(_)
                | EntityKind::Cover(_)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EntityCategory {
    Diagnostic,
    Config,
}

/// What an entity is, and what Home Assistant needs to know to show it.
#[derive(Debug, Clone, PartialEq, Hash)]
pub enum EntityKind {
    Sensor(SensorSpec),
    BinarySensor {
        device_class: Option<BinarySensorClass>,
        /// Seconds after which Home Assistant marks a polled value unavailable if no update came.
        expire_after: Option<u32>,
    },
    Switch,
    Light(LightSpec),
    DeviceTracker,
    Button {
        device_class: Option<ButtonClass>,
    },
    Fan(FanSpec),
    Cover(CoverSpec),
}

#[derive(Debug, Clone, PartialEq, Default, Hash)]
pub struct SensorSpec {
    pub device_class: Option<SensorClass>,
    /// Unit of measurement exactly as Home Assistant spells it (`"B/s"`, `"°C"`, `"%"`).
    pub unit: Option<&'static str>,
    pub state_class: Option<StateClass>,
    /// Digits Home Assistant shows after the decimal point.
    pub precision: Option<u8>,
    /// Seconds after which Home Assistant marks a polled value unavailable if no update came.
    pub expire_after: Option<u32>,
    /// The possible values of an `enum` sensor.
    pub options: Vec<String>,
}

impl SensorSpec {
    /// A sensor with a device class, unit and state class, the usual triple.
    pub fn measured(
        device_class: Option<SensorClass>,
        unit: Option<&'static str>,
        state_class: Option<StateClass>,
    ) -> Self {
        SensorSpec { device_class, unit, state_class, ..SensorSpec::default() }
    }
}

/// Home Assistant sensor device classes used by hub2mqtt (serialised in Home Assistant's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SensorClass {
    Battery,
    Current,
    DataRate,
    DataSize,
    Duration,
    Energy,
    Enum,
    Frequency,
    Humidity,
    Power,
    SignalStrength,
    Temperature,
    Timestamp,
    Voltage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum StateClass {
    Measurement,
    Total,
    TotalIncreasing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum BinarySensorClass {
    Connectivity,
    Door,
    Opening,
    Plug,
    Power,
    Presence,
    Problem,
    Running,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ButtonClass {
    Identify,
    Restart,
    Update,
}

/// A light, commanded and reported with Home Assistant's JSON light schema.
#[derive(Debug, Clone, PartialEq, Default, Hash)]
pub struct LightSpec {
    /// The brightness range the state and commands use (`Some(100)` for 1–100 devices, `Some(255)`);
    /// `None` for an on/off light.
    pub brightness_scale: Option<u16>,
    /// Colour temperature range in Kelvin (warmest, coldest), if the light has one.
    pub color_temp_kelvin: Option<(u16, u16)>,
    /// Whether the light takes an RGB colour.
    pub rgb: bool,
    /// Effects the light offers (sent as `"effect": "<name>"`).
    pub effects: Vec<String>,
}

/// A fan with an on/off state, and optionally a percentage speed and preset modes.
#[derive(Debug, Clone, PartialEq, Default, Hash)]
pub struct FanSpec {
    /// Number of discrete speeds behind the percentage (`None` if the fan has no speed control).
    pub speed_count: Option<u8>,
    pub preset_modes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Hash)]
pub struct CoverSpec {
    /// Whether the cover reports and accepts a position (0 = closed, 100 = open).
    pub position: bool,
    pub device_class: Option<&'static str>,
}

/// What an adapter reports to the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// A device appeared or changed (name, firmware, entity list). Boxed: announcements are rare and
    /// large, states are frequent and small. Use [`HubEvents::device`].
    Device(Box<DeviceSpec>),
    /// A device is gone for good: its entities are removed from Home Assistant.
    DeviceRemoved { device: String },
    /// New values for some keys of a device's state object; other keys keep their last value.
    State { device: String, values: Map<String, Value> },
    /// The device is reachable (`true`) or not.
    Availability { device: String, online: bool },
    /// The hub's own connection (router reachable, cloud socket connected) went up or down.
    Link { up: bool, reason: Option<String> },
    /// Something the user should know about that is not a command's outcome (a login failure, an odd
    /// response); published on `<base>/bridge/event`.
    Problem { device: Option<String>, reason: String },
}

/// The operation a command topic asks for: `.../set`, `.../add`, `.../remove`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOp {
    Set,
    Add,
    Remove,
}

/// A command routed by the bridge to the adapter that owns the device.
#[derive(Debug)]
pub struct Command {
    /// Bridge-wide sequence number, for logs.
    pub id: u64,
    /// The device id as the adapter announced it.
    pub device: String,
    pub op: CommandOp,
    /// `(key, value)` pairs in the order received; one pair for an entity topic, one or more for the
    /// device's JSON `set`. Keys are entity keys or extra command keys the device declared.
    pub changes: Vec<(String, Value)>,
    pub reply: CommandReply,
}

/// Why a command failed; `code()` is what `<base>/bridge/event` carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The payload does not make sense for this device (bad value, unknown field).
    #[error("invalid command: {0}")]
    Invalid(String),
    /// The device is offline.
    #[error("device is offline")]
    Offline,
    /// No confirmation in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The hub cannot be reached right now (socket down, login failing).
    #[error("hub unavailable: {0}")]
    Unavailable(String),
    /// The hub or device refused it.
    #[error("rejected: {0}")]
    Rejected(String),
}

impl CommandError {
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Invalid(_) => "invalid",
            CommandError::Offline => "offline",
            CommandError::Timeout(_) => "timeout",
            CommandError::Unavailable(_) => "unavailable",
            CommandError::Rejected(_) => "rejected",
        }
    }
}

pub type CommandOutcome = Result<(), CommandError>;

/// The way back for a command's outcome. Dropping it unanswered counts as a failure.
#[derive(Debug)]
pub struct CommandReply(oneshot::Sender<CommandOutcome>);

impl CommandReply {
    /// A reply and the receiver the bridge (or a test) awaits.
    pub fn channel() -> (CommandReply, oneshot::Receiver<CommandOutcome>) {
        let (tx, rx) = oneshot::channel();
        (CommandReply(tx), rx)
    }

    /// The command was carried out (the hub confirmed it).
    pub fn ok(self) {
        let _ = self.0.send(Ok(()));
    }

    pub fn fail(self, error: CommandError) {
        let _ = self.0.send(Err(error));
    }

    pub fn send(self, outcome: CommandOutcome) {
        let _ = self.0.send(outcome);
    }
}

/// The bridge has shut down; the adapter should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the bridge has stopped")]
pub struct BridgeGone;

/// A cheap, cloneable sender of one hub's events to the bridge.
#[derive(Clone)]
pub struct HubEvents {
    hub: usize,
    tx: mpsc::Sender<(usize, HubEvent)>,
}

impl fmt::Debug for HubEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubEvents").field("hub", &self.hub).finish()
    }
}

impl HubEvents {
    pub(crate) fn new(hub: usize, tx: mpsc::Sender<(usize, HubEvent)>) -> Self {
        HubEvents { hub, tx }
    }

    /// Sends an event, waiting while the bridge's queue is full.
    pub async fn send(&self, event: HubEvent) -> Result<(), BridgeGone> {
        self.tx.send((self.hub, event)).await.map_err(|_| BridgeGone)
    }

    pub async fn device(&self, spec: DeviceSpec) -> Result<(), BridgeGone> {
        self.send(HubEvent::Device(Box::new(spec))).await
    }

    pub async fn state(&self, device: &str, values: Map<String, Value>) -> Result<(), BridgeGone> {
        self.send(HubEvent::State { device: device.to_owned(), values }).await
    }

    pub async fn availability(&self, device: &str, online: bool) -> Result<(), BridgeGone> {
        self.send(HubEvent::Availability { device: device.to_owned(), online }).await
    }

    pub async fn link(&self, up: bool, reason: Option<String>) -> Result<(), BridgeGone> {
        self.send(HubEvent::Link { up, reason }).await
    }

    pub async fn problem(&self, device: Option<&str>, reason: impl Into<String>) -> Result<(), BridgeGone> {
        self.send(HubEvent::Problem { device: device.map(str::to_owned), reason: reason.into() }).await
    }
}

/// What an adapter is given when it is registered with the bridge.
#[derive(Debug)]
pub struct HubHandle {
    /// The hub's id in the bridge, e.g. `ikuai_home`.
    pub id: String,
    pub events: HubEvents,
    pub commands: mpsc::Receiver<Command>,
}
