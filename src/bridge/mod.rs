//! The bridge: turns hub events into MQTT publishes and MQTT commands into hub commands.
//!
//! One task owns the [`registry::Registry`] and reacts to four things: hub events, messages from the MQTT
//! session (connected, disconnected, commands, Home Assistant's birth), command outcomes, and the birth
//! timer. It knows MQTT and Home Assistant, and nothing of any hub's wire format.
//!
//! - On every (re)connection it publishes the bridge device, then every device's discovery, availability
//!   and state, then the events that waited while it was offline.
//! - While disconnected it publishes nothing (the next connection re-announces everything anyway), so a
//!   broker outage never blocks the hubs.
//! - A command goes to its hub without waiting; its outcome comes back later. Refusals and failures are
//!   published on `<base>/bridge/event` and logged with topic and reason.

pub mod commands;
pub mod events;
pub mod registry;

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::commands::Refusal;
use self::events::{BridgeEvent, echo_payload, now_ms};
use self::registry::{Outgoing, Registry};
use crate::hass::{Topics, discovery};
use crate::hub::{Command, CommandError, CommandOutcome, CommandReply, HubEvent, HubEvents, HubHandle};
use crate::mqtt::{Inbound, Publisher};

/// Queue of events from all hubs to the bridge.
const HUB_EVENT_CAPACITY: usize = 4096;
/// Hub events already queued are handled together, up to this many, before publishing: a burst of
/// announcements then updates `bridge/info` once per batch instead of once per device.
const HUB_EVENT_BATCH: usize = 256;
/// Commands waiting for one hub's adapter.
const HUB_COMMAND_CAPACITY: usize = 256;
/// Events kept while disconnected, published on reconnection.
const EVENT_BACKLOG: usize = 256;
/// A command's outcome is awaited at most this long; adapters answer far sooner (this is a safety net).
const OUTCOME_DEADLINE: Duration = Duration::from_secs(180);
/// After Home Assistant's birth message, wait a random delay in this range before re-announcing.
const BIRTH_DELAY_MS: std::ops::Range<u64> = 500..2500;

/// What the bridge needs from the configuration.
#[derive(Debug, Clone)]
pub struct BridgeSettings {
    pub base_topic: String,
    pub discovery_prefix: String,
    pub discovery: bool,
}

struct Hub {
    id: String,
    label: String,
    commands: mpsc::Sender<Command>,
    link_up: bool,
}

/// A command in flight: where it came from, for the report if it fails.
struct Pending {
    id: u64,
    device: String,
    topic: String,
    payload: Bytes,
}

type OutcomeFuture = Pin<Box<dyn Future<Output = (Pending, CommandOutcome)> + Send>>;

/// The bridge, before it runs: register hubs with [`Bridge::add_hub`], then [`Bridge::run`].
pub struct Bridge {
    topics: Topics,
    discovery: bool,
    registry: Registry,
    hubs: Vec<Hub>,
    events_tx: mpsc::Sender<(usize, HubEvent)>,
    events_rx: mpsc::Receiver<(usize, HubEvent)>,
    outcomes: FuturesUnordered<OutcomeFuture>,
    next_command: u64,
    connected: bool,
    backlog: VecDeque<BridgeEvent>,
    /// Deletions (empty retained messages) decided while disconnected, sent on the next connection.
    pending_clears: BTreeSet<String>,
    published_info: Option<Bytes>,
    birth_at: Option<Instant>,
    warned_unknown: HashSet<String>,
    liveness_tx: mpsc::Sender<oneshot::Sender<()>>,
    liveness_rx: mpsc::Receiver<oneshot::Sender<()>>,
}

impl Bridge {
    pub fn new(settings: &BridgeSettings) -> Self {
        let topics = Topics::new(&settings.base_topic, &settings.discovery_prefix);
        let (events_tx, events_rx) = mpsc::channel(HUB_EVENT_CAPACITY);
        let (liveness_tx, liveness_rx) = mpsc::channel(1);
        Bridge {
            registry: Registry::new(topics.clone(), settings.discovery),
            discovery: settings.discovery,
            topics,
            hubs: Vec::new(),
            events_tx,
            events_rx,
            outcomes: FuturesUnordered::new(),
            next_command: 0,
            connected: false,
            backlog: VecDeque::new(),
            pending_clears: BTreeSet::new(),
            published_info: None,
            birth_at: None,
            warned_unknown: HashSet::new(),
            liveness_tx,
            liveness_rx,
        }
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Registers a hub (`id` like `ikuai_home`, `label` like `Router home`) and returns its adapter's handle.
    pub fn add_hub(&mut self, id: &str, label: &str) -> HubHandle {
        let (commands_tx, commands_rx) = mpsc::channel(HUB_COMMAND_CAPACITY);
        let index = self.hubs.len();
        self.hubs.push(Hub { id: id.to_owned(), label: label.to_owned(), commands: commands_tx, link_up: false });
        HubHandle { id: id.to_owned(), events: HubEvents::new(index, self.events_tx.clone()), commands: commands_rx }
    }

    /// A channel to ask the running bridge loop whether it is responsive: it answers each request.
    pub fn liveness(&self) -> mpsc::Sender<oneshot::Sender<()>> {
        self.liveness_tx.clone()
    }

    /// The filters the MQTT session subscribes to on every connection: commands, Home Assistant's status,
    /// and availability (to correct what a previous run left retained).
    pub fn subscriptions(&self) -> Vec<String> {
        let mut filters = self.topics.command_filters();
        filters.push(self.topics.ha_status());
        filters.push(self.topics.availability("+"));
        filters
    }

    /// Runs until `shutdown` is cancelled (or the MQTT session ends).
    pub async fn run(
        mut self,
        mqtt: Publisher,
        mut inbound: mpsc::UnboundedReceiver<Inbound>,
        shutdown: CancellationToken,
    ) {
        loop {
            let birth = self.birth_at;
            let out = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((hub, event)) = self.events_rx.recv() => {
                    let mut out = self.on_hub_event(hub, event);
                    for _ in 1..HUB_EVENT_BATCH {
                        let Ok((hub, event)) = self.events_rx.try_recv() else { break };
                        out.extend(self.on_hub_event(hub, event));
                    }
                    self.last_info_only(out)
                }
                message = inbound.recv() => match message {
                    Some(message) => self.on_mqtt(message),
                    None => break,
                },
                Some((pending, outcome)) = self.outcomes.next(), if !self.outcomes.is_empty() => {
                    self.on_outcome(pending, outcome)
                }
                Some(ping) = self.liveness_rx.recv() => {
                    let _ = ping.send(());
                    Vec::new()
                }
                _ = sleep_until_opt(birth), if birth.is_some() => {
                    self.birth_at = None;
                    tracing::info!("re-announcing everything after Home Assistant's birth message");
                    self.everything()
                }
            };
            self.publish(&mqtt, out).await;
        }
        tracing::debug!(pending_commands = self.outcomes.len(), "bridge stopped");
    }

    fn on_hub_event(&mut self, hub: usize, event: HubEvent) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let hub_id = self.hubs.get(hub).map(|h| h.id.clone()).unwrap_or_default();
        match event {
            HubEvent::Device(spec) => {
                let before = self.registry.len();
                for rejection in self.registry.announce(hub, *spec, &mut out) {
                    tracing::error!(hub = %hub_id, device = %rejection.device, "{}", rejection.reason);
                    let event = BridgeEvent::HubProblem {
                        hub: hub_id.clone(),
                        device: Some(rejection.device),
                        reason: rejection.reason,
                        ts: now_ms(),
                    };
                    self.event(event, &mut out);
                }
                if self.registry.len() != before {
                    self.info(&mut out);
                }
            }
            HubEvent::DeviceRemoved { device } => {
                if let Some(topic_id) = self.registry.find(hub, &device) {
                    tracing::info!(hub = %hub_id, %device, "device removed");
                    self.registry.remove(&topic_id, &mut out);
                    self.info(&mut out);
                }
            }
            HubEvent::State { device, values } => match self.registry.find(hub, &device) {
                Some(topic_id) => self.registry.update_state(&topic_id, values, &mut out),
                None => self.warn_unknown(&hub_id, &device),
            },
            HubEvent::Availability { device, online } => match self.registry.find(hub, &device) {
                Some(topic_id) => self.registry.set_online(&topic_id, online, &mut out),
                None => self.warn_unknown(&hub_id, &device),
            },
            HubEvent::Link { up, reason } => {
                if let Some(h) = self.hubs.get_mut(hub)
                    && h.link_up != up
                {
                    h.link_up = up;
                    match (&reason, up) {
                        (_, true) => tracing::info!(hub = %hub_id, "hub connected"),
                        (Some(r), false) => tracing::warn!(hub = %hub_id, "hub disconnected: {r}"),
                        (None, false) => tracing::warn!(hub = %hub_id, "hub disconnected"),
                    }
                    self.event(BridgeEvent::HubLink { hub: hub_id, up, reason, ts: now_ms() }, &mut out);
                    self.info(&mut out);
                }
            }
            HubEvent::Problem { device, reason } => {
                tracing::warn!(hub = %hub_id, device = device.as_deref().unwrap_or("-"), "{reason}");
                self.event(BridgeEvent::HubProblem { hub: hub_id, device, reason, ts: now_ms() }, &mut out);
            }
        }
        out
    }

    fn warn_unknown(&mut self, hub: &str, device: &str) {
        if self.warned_unknown.insert(format!("{hub}/{device}")) {
            tracing::warn!(%hub, %device, "state for a device that was never announced; ignored");
        }
    }

    fn on_mqtt(&mut self, message: Inbound) -> Vec<Outgoing> {
        match message {
            Inbound::Connected => {
                self.connected = true;
                let everything = self.everything();
                let republished: HashSet<&str> = everything.iter().map(|m| m.topic.as_str()).collect();
                let clears = std::mem::take(&mut self.pending_clears);
                let mut out: Vec<Outgoing> =
                    clears.into_iter().filter(|t| !republished.contains(t.as_str())).map(Outgoing::clear).collect();
                out.extend(everything);
                while let Some(event) = self.backlog.pop_front() {
                    out.push(Outgoing {
                        topic: self.topics.bridge_event(),
                        payload: event.to_payload().into(),
                        retain: false,
                    });
                }
                out
            }
            Inbound::Disconnected => {
                self.connected = false;
                self.published_info = None;
                self.registry.forget_published();
                Vec::new()
            }
            Inbound::Message { topic, payload, retain } => {
                if topic == self.topics.ha_status() {
                    if &payload[..] == b"online" && !retain {
                        let delay = rand::rng().random_range(BIRTH_DELAY_MS);
                        self.birth_at = Some(Instant::now() + Duration::from_millis(delay));
                        tracing::info!("Home Assistant is online; re-announcing in {delay} ms");
                    }
                    return Vec::new();
                }
                let mut out = Vec::new();
                if let Some(device) = self.topics.availability_device(&topic) {
                    // A retained `online` from a previous run for a device this run has not announced (its
                    // hub unreachable since the start): not true any more.
                    if retain && &payload[..] == b"online" && self.registry.get(device).is_none() {
                        tracing::info!(%device, "marking a device from a previous run offline until its hub reports it");
                        out.push(Outgoing { topic, payload: Bytes::from_static(b"offline"), retain: true });
                    }
                    return out;
                }
                self.on_command(topic, payload, retain, &mut out);
                out
            }
        }
    }

    /// Routes a message from a command topic to the owning hub, or refuses it with a reason.
    fn on_command(&mut self, topic: String, payload: Bytes, retain: bool, out: &mut Vec<Outgoing>) {
        let Some(parsed) = commands::parse_topic(&self.topics.base, &topic) else { return };
        let device_topic_id = parsed.device().to_owned();
        if retain {
            let refusal = Refusal {
                code: "retained",
                reason: "ignored a retained command (replayed by the broker on subscribe); publish commands without \
                         the retain flag, and clear this one with an empty retained message"
                    .into(),
            };
            return self.refuse(&device_topic_id, &topic, &payload, refusal, out);
        }
        let Some(entry) = self.registry.get(&device_topic_id) else {
            let refusal = Refusal { code: "unknown_device", reason: format!("no device `{device_topic_id}`") };
            return self.refuse(&device_topic_id, &topic, &payload, refusal, out);
        };
        let (op, changes) = match commands::to_changes(&parsed, &payload, entry) {
            Ok(routed) => routed,
            Err(refusal) => return self.refuse(&device_topic_id, &topic, &payload, refusal, out),
        };
        let (hub, device) = (entry.hub, entry.spec.id.clone());
        self.next_command += 1;
        let id = self.next_command;
        let (reply, rx) = CommandReply::channel();
        let command = Command { id, device, op, changes, reply };
        tracing::debug!(command = id, %topic, "command routed");
        let sent = match self.hubs.get(hub) {
            Some(h) => h.commands.try_send(command).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Refusal {
                    code: "busy",
                    reason: format!("hub `{}` has {HUB_COMMAND_CAPACITY} commands waiting; try again shortly", h.id),
                },
                mpsc::error::TrySendError::Closed(_) => {
                    Refusal { code: "unavailable", reason: format!("hub `{}` has stopped", h.id) }
                }
            }),
            None => Err(Refusal { code: "unavailable", reason: "no such hub".into() }),
        };
        match sent {
            Ok(()) => {
                let pending = Pending { id, device: device_topic_id, topic, payload };
                self.outcomes.push(Box::pin(await_outcome(pending, rx)));
            }
            Err(refusal) => self.refuse(&device_topic_id, &topic, &payload, refusal, out),
        }
    }

    fn on_outcome(&mut self, pending: Pending, outcome: CommandOutcome) -> Vec<Outgoing> {
        let mut out = Vec::new();
        match outcome {
            Ok(()) => tracing::debug!(command = pending.id, device = %pending.device, "command confirmed"),
            Err(error) => {
                let refusal = Refusal { code: error.code(), reason: error.to_string() };
                self.refuse(&pending.device, &pending.topic, &pending.payload, refusal, &mut out);
            }
        }
        out
    }

    /// Logs and reports a refused or failed command.
    fn refuse(&mut self, device: &str, topic: &str, payload: &[u8], refusal: Refusal, out: &mut Vec<Outgoing>) {
        tracing::warn!(%topic, code = refusal.code, "command failed: {}", refusal.reason);
        let event = BridgeEvent::CommandFailed {
            device: device.to_owned(),
            topic: topic.to_owned(),
            command: echo_payload(payload),
            code: refusal.code.to_owned(),
            reason: refusal.reason,
            ts: now_ms(),
        };
        self.event(event, out);
    }

    /// Publishes an event now, or keeps it (bounded) for the next connection.
    fn event(&mut self, event: BridgeEvent, out: &mut Vec<Outgoing>) {
        if self.connected {
            out.push(Outgoing { topic: self.topics.bridge_event(), payload: event.to_payload().into(), retain: false });
        } else {
            if self.backlog.len() == EVENT_BACKLOG {
                self.backlog.pop_front();
            }
            self.backlog.push_back(event);
        }
    }

    /// The bridge device's state (version, device count, hub links), when it changed.
    fn info(&mut self, out: &mut Vec<Outgoing>) {
        let hubs: serde_json::Map<String, Value> =
            self.hubs.iter().map(|h| (crate::hass::sanitize_id(&h.id), Value::Bool(h.link_up))).collect();
        let info = json!({ "version": crate::VERSION, "devices": self.registry.len(), "hubs": hubs });
        let payload = Bytes::from(info.to_string());
        if self.published_info.as_ref() != Some(&payload) {
            out.push(Outgoing { topic: self.topics.bridge_info(), payload: payload.clone(), retain: true });
            self.published_info = Some(payload);
        }
    }

    /// Keeps only the last `bridge/info` of a batch (each one is the whole info, retained).
    fn last_info_only(&self, mut out: Vec<Outgoing>) -> Vec<Outgoing> {
        let topic = self.topics.bridge_info();
        if let Some(last) = out.iter().rposition(|m| m.topic == topic) {
            let mut index = 0;
            out.retain(|m| {
                index += 1;
                m.topic != topic || index - 1 == last
            });
        }
        out
    }

    /// Everything: the bridge device, then every device, discovery before states.
    fn everything(&mut self) -> Vec<Outgoing> {
        let mut out = Vec::new();
        if self.discovery {
            let hubs: Vec<(String, String)> = self.hubs.iter().map(|h| (h.id.clone(), h.label.clone())).collect();
            for (topic, config) in discovery::bridge_configs(&self.topics, self.registry.bridge_identifier(), &hubs) {
                match serde_json::to_vec(&config) {
                    Ok(payload) => out.push(Outgoing { topic, payload: payload.into(), retain: true }),
                    Err(e) => tracing::error!("cannot serialise the bridge's discovery: {e}"),
                }
            }
        }
        self.published_info = None;
        self.info(&mut out);
        self.registry.publish_all(&mut out);
        out
    }

    /// What goes to the broker now: everything while connected. While disconnected nothing (the next
    /// connection re-announces everything), except that deletions are kept for it.
    fn gate(&mut self, out: Vec<Outgoing>) -> Vec<Outgoing> {
        if self.connected {
            return out;
        }
        for message in out {
            if message.retain && message.payload.is_empty() {
                self.pending_clears.insert(message.topic);
            }
        }
        Vec::new()
    }

    /// Queues messages on the MQTT session.
    async fn publish(&mut self, mqtt: &Publisher, out: Vec<Outgoing>) {
        for message in self.gate(out) {
            if message.payload.len() > crate::mqtt::MAX_PAYLOAD {
                // rumqttc would drop the whole connection over it.
                tracing::error!(topic = %message.topic, bytes = message.payload.len(), "payload too large to publish; skipped");
                continue;
            }
            if let Err(e) = mqtt.publish(&message.topic, message.payload, message.retain).await {
                tracing::error!("cannot queue an MQTT publish (the session has stopped): {e}");
                return;
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits for a command's outcome (at most [`OUTCOME_DEADLINE`]); a reply dropped unanswered is a failure.
async fn await_outcome(pending: Pending, rx: oneshot::Receiver<CommandOutcome>) -> (Pending, CommandOutcome) {
    let outcome = match tokio::time::timeout(OUTCOME_DEADLINE, rx).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(CommandError::Unavailable("the hub adapter stopped before answering".into())),
        Err(_) => Err(CommandError::Timeout(format!("no answer from the hub within {} s", OUTCOME_DEADLINE.as_secs()))),
    };
    (pending, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{DeviceSpec, EntityKind, EntitySpec, SensorSpec};

    fn bridge() -> Bridge {
        Bridge::new(&BridgeSettings { base_topic: "h".into(), discovery_prefix: "ha".into(), discovery: true })
    }

    fn plug(with_power: bool) -> HubEvent {
        let mut spec = DeviceSpec::new("p1", "Plug");
        spec.entities.push(EntitySpec::new("switch", None, EntityKind::Switch));
        if with_power {
            spec.entities.push(EntitySpec::new("power", Some("Power"), EntityKind::Sensor(SensorSpec::default())));
        }
        HubEvent::Device(Box::new(spec))
    }

    fn topics(out: &[Outgoing]) -> Vec<&str> {
        out.iter().map(|m| m.topic.as_str()).collect()
    }

    #[test]
    fn nothing_is_published_while_disconnected_but_deletions_wait_for_the_connection() {
        let mut b = bridge();
        let hub = b.add_hub("hub", "Hub");
        drop(hub);
        let out = b.on_mqtt(Inbound::Connected);
        assert!(topics(&out).contains(&"h/bridge/info"));
        let out = b.on_hub_event(0, plug(true));
        assert!(topics(&out).contains(&"ha/sensor/p1/power/config"));
        assert_eq!(b.gate(out).len(), 4, "connected: everything goes out");

        b.on_mqtt(Inbound::Disconnected);
        let out = b.on_hub_event(0, plug(false));
        assert_eq!(b.gate(out), Vec::new(), "disconnected: nothing goes out");
        let problem = b.on_hub_event(0, HubEvent::Problem { device: None, reason: "login failed".into() });
        assert!(b.gate(problem).is_empty());

        let out = b.on_mqtt(Inbound::Connected);
        let ts = topics(&out);
        assert_eq!(ts[0], "ha/sensor/p1/power/config", "the deletion goes first");
        assert!(out[0].payload.is_empty() && out[0].retain);
        assert!(ts.contains(&"ha/switch/p1/switch/config") && ts.contains(&"h/p1/availability"));
        assert_eq!(*ts.last().unwrap(), "h/bridge/event", "events kept while disconnected come last");
    }

    #[test]
    fn a_deletion_undone_while_disconnected_is_not_sent() {
        let mut b = bridge();
        let _hub = b.add_hub("hub", "Hub");
        b.on_mqtt(Inbound::Connected);
        b.on_hub_event(0, plug(true));
        b.on_mqtt(Inbound::Disconnected);
        let out = b.on_hub_event(0, plug(false));
        b.gate(out);
        let out = b.on_hub_event(0, plug(true));
        b.gate(out);
        let out = b.on_mqtt(Inbound::Connected);
        assert!(out.iter().all(|m| !m.payload.is_empty()), "no deletion of a config that is back");
    }

    #[test]
    fn a_batch_of_announcements_updates_info_once() {
        let mut b = bridge();
        let _hub = b.add_hub("hub", "Hub");
        b.on_mqtt(Inbound::Connected);
        let mut out = Vec::new();
        for id in ["p1", "p2", "p3"] {
            let mut spec = DeviceSpec::new(id, "Plug");
            spec.entities.push(EntitySpec::new("switch", None, EntityKind::Switch));
            out.extend(b.on_hub_event(0, HubEvent::Device(Box::new(spec))));
        }
        assert_eq!(out.iter().filter(|m| m.topic == "h/bridge/info").count(), 3);
        let out = b.last_info_only(out);
        let infos: Vec<&Outgoing> = out.iter().filter(|m| m.topic == "h/bridge/info").collect();
        assert_eq!(infos.len(), 1);
        let info: Value = serde_json::from_slice(&infos[0].payload).unwrap();
        assert_eq!(info["devices"], 3, "the last one, with every device counted");
        assert_eq!(out.len(), 3 * 2 + 1, "every config and availability stays");
    }

    #[test]
    fn events_kept_while_disconnected_are_bounded() {
        let mut b = bridge();
        let _hub = b.add_hub("hub", "Hub");
        for i in 0..EVENT_BACKLOG + 10 {
            let out = b.on_hub_event(0, HubEvent::Problem { device: None, reason: format!("problem {i}") });
            b.gate(out);
        }
        let out = b.on_mqtt(Inbound::Connected);
        let events: Vec<&Outgoing> = out.iter().filter(|m| m.topic == "h/bridge/event").collect();
        assert_eq!(events.len(), EVENT_BACKLOG);
        assert!(String::from_utf8_lossy(&events[0].payload).contains("problem 10"), "the oldest are dropped");
    }
}
