//! The soak's commands and their ledger: what a Home Assistant / Node-RED user sends (switches, channels,
//! lights, fans, covers, timers, plus commands that must be refused), chosen so that each command changes
//! the device (its value differs from the simulator's truth when it is sent), and the bookkeeping that
//! accounts for every one: confirmed when a published state after it shows the change, reported when a
//! `command_failed` event names it.
//!
//! One command per device is outstanding at a time, so a state or an event for a device belongs to the
//! device's outstanding command (events are matched on device, topic and payload, oldest first).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use hub2mqtt::ewelink::devices::{self, Profile};
use hub2mqtt::ewelink::http::CloudDevice;
use hub2mqtt::sim::ewelink::{SimCloud, fixtures, ids};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

pub const BASE: &str = "hub2mqtt";

/// What a command is, for the counts in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Switch,
    Channel,
    Channels,
    Light,
    LightTemp,
    Fan,
    Cover,
    TimerAdd,
    TimerRemove,
    /// A command to a device that is always offline: must be reported `offline`.
    ToOfflineDevice,
    /// A command the bridge or the adapter must refuse.
    Invalid,
    /// A command to the router (read-only): must be refused.
    ToRouter,
}

/// What shows that a command was carried out, read from the device's published state.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Every key equals its value.
    Equal(Vec<(String, Value)>),
    /// `light` has this state and, when on, this brightness.
    Light {
        on: bool,
        brightness: Option<u64>,
    },
    /// `light.color_temp` within 60 K of this.
    Kelvin(u64),
    Fan {
        on: bool,
        percentage: Option<u64>,
    },
    CoverPosition(u64),
    TimerPresent(String),
    TimerAbsent(String),
    /// Only a refusal can account for it.
    Refusal,
}

impl Expect {
    pub fn shown_by(&self, state: &Value) -> bool {
        match self {
            Expect::Equal(pairs) => pairs.iter().all(|(k, v)| state.get(k) == Some(v)),
            Expect::Light { on, brightness } => {
                let light = &state["light"];
                let s = if *on { "ON" } else { "OFF" };
                light["state"] == s && (!*on || brightness.is_none_or(|b| light["brightness"].as_u64() == Some(b)))
            }
            Expect::Kelvin(k) => state["light"]["color_temp"].as_u64().is_some_and(|t| t.abs_diff(*k) <= 60),
            Expect::Fan { on, percentage } => {
                let fan = &state["fan"];
                fan["state"] == if *on { "ON" } else { "OFF" }
                    && percentage.is_none_or(|p| fan["percentage"].as_u64() == Some(p))
            }
            Expect::CoverPosition(p) => state["cover"]["position"].as_u64() == Some(*p),
            Expect::TimerPresent(mid) => timers_of(state).iter().any(|m| m == mid),
            Expect::TimerAbsent(mid) => state["timers"].is_array() && !timers_of(state).iter().any(|m| m == mid),
            Expect::Refusal => false,
        }
    }
}

fn timers_of(state: &Value) -> Vec<String> {
    state["timers"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["mId"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// One command sent.
#[derive(Debug, Clone)]
pub struct Entry {
    pub n: usize,
    pub kind: Kind,
    /// The topic id of the device (`ewelink_1000000002`).
    pub device: String,
    pub topic: String,
    pub payload: String,
    pub expect: Expect,
    pub sent: Instant,
    /// The watcher's sequence number when it was sent: only later states count.
    pub sent_seq: usize,
    /// When an ack delay was active at sending: the device is not commanded again before this.
    pub hold_until: Option<Instant>,
    pub confirmed: Option<Instant>,
    pub reported: Option<(String, String)>,
    /// `update` frames (WebSocket or HTTP) the cloud received for the device while it was outstanding.
    pub frames_seen: usize,
}

impl Entry {
    pub fn accounted(&self) -> bool {
        self.confirmed.is_some() || self.reported.is_some()
    }

    pub fn line(&self) -> String {
        let outcome = match (&self.confirmed, &self.reported) {
            (Some(t), None) => format!("confirmed after {:.1?}", t.duration_since(self.sent)),
            (Some(t), Some((code, _))) => {
                format!("confirmed after {:.1?} and reported {code}", t.duration_since(self.sent))
            }
            (None, Some((code, reason))) => format!("reported {code}: {reason}"),
            (None, None) => "UNACCOUNTED".to_owned(),
        };
        format!(
            "#{:<5} {:>7.1}s {:?} {} {} → {outcome} (frames seen {})",
            self.n,
            self.sent.elapsed().as_secs_f64(),
            self.kind,
            self.topic,
            self.payload,
            self.frames_seen
        )
    }
}

/// A command about to be sent.
pub struct Planned {
    pub kind: Kind,
    pub device: String,
    pub topic: String,
    pub payload: String,
    pub expect: Expect,
}

fn topic_id(deviceid: &str) -> String {
    format!("ewelink_{deviceid}")
}

fn on_off(on: bool) -> &'static str {
    if on { "ON" } else { "OFF" }
}

/// The simulator's truth about a device in the bridge's vocabulary (its state object), and whether it is
/// shared (no timers).
pub fn truth(sim: &SimCloud, deviceid: &str) -> Option<(Map<String, Value>, bool)> {
    let device = sim.device(deviceid)?;
    let cloud = CloudDevice::from_json(&fixtures::device_json(&device))?;
    let profile = Profile::of(&cloud);
    Some((devices::state(&profile, &device.params), device.owner_apikey != hub2mqtt::sim::ewelink::USER_APIKEY))
}

const SWITCHES: &[&str] =
    &[ids::SWITCH, ids::SWITCH_UIID1, ids::POWER_METER, ids::METER_190, ids::TH_181, ids::SHARED, ids::UNKNOWN_SWITCH];
const CHANNELS: &[(&str, u8)] = &[(ids::TWO_CHANNEL, 2), (ids::FOUR_CHANNEL, 4), (ids::METER_126, 2)];
/// Lights and their brightness range.
const LIGHTS: &[(&str, u64, u64)] = &[
    (ids::BULB_22, 1, 255),
    (ids::DIMMER_36, 10, 100),
    (ids::DIMMER_44, 1, 100),
    (ids::STRIP_59, 1, 100),
    (ids::WHITE_103, 1, 100),
    (ids::RGBW_104, 1, 100),
];
/// Devices with timers.
const TIMED: &[&str] = &[ids::SWITCH, ids::TWO_CHANNEL, ids::DIMMER_36, ids::FAN_34, ids::COVER_11];

/// Every device the commander uses (topic ids).
pub fn commanded_devices() -> Vec<String> {
    let mut all: Vec<&str> = SWITCHES.to_vec();
    all.extend(CHANNELS.iter().map(|(d, _)| *d));
    all.extend(LIGHTS.iter().map(|(d, _, _)| *d));
    all.extend([ids::FAN_34, ids::COVER_11, ids::OFFLINE, ids::TH_RELAY]);
    all.extend(TIMED);
    all.sort_unstable();
    all.dedup();
    all.into_iter().map(topic_id).collect()
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T], free: impl Fn(&T) -> bool) -> Option<&'a T> {
    let candidates: Vec<&T> = items.iter().filter(|t| free(t)).collect();
    if candidates.is_empty() { None } else { Some(candidates[rng.random_range(0..candidates.len())]) }
}

/// Plans one command of a random kind for a device that `free` allows; `None` if none fits right now.
pub fn plan(rng: &mut StdRng, sim: &SimCloud, router_device: &str, free: &dyn Fn(&str) -> bool) -> Option<Planned> {
    let free_id = |id: &&str| free(&topic_id(id));
    let roll = rng.random_range(0..100);
    let base = BASE;
    match roll {
        0..=19 => {
            let id = *pick(rng, SWITCHES, free_id)?;
            let (state, _) = truth(sim, id)?;
            let on = state.get("switch") != Some(&json!("ON"));
            let d = topic_id(id);
            let (topic, payload) = match rng.random_range(0..4) {
                0 => (format!("{base}/{d}/set"), json!({"switch": on_off(on)}).to_string()),
                1 => (format!("{base}/{d}/switch/set"), on.to_string()),
                2 => (format!("{base}/{d}/switch/set"), on_off(on).to_lowercase()),
                _ => (format!("{base}/{d}/switch/set"), on_off(on).to_owned()),
            };
            let expect = Expect::Equal(vec![("switch".into(), json!(on_off(on)))]);
            Some(Planned { kind: Kind::Switch, device: d, topic, payload, expect })
        }
        20..=34 => {
            let (id, n) = *pick(rng, CHANNELS, |(id, _)| free(&topic_id(id)))?;
            let (state, _) = truth(sim, id)?;
            let d = topic_id(id);
            let flip = |k: &str| state.get(k) != Some(&json!("ON"));
            if rng.random_bool(0.3) {
                // Two channels at once, through the device's JSON topic.
                let a = rng.random_range(1..=n);
                let b = if a == n { 1 } else { a + 1 };
                let (ka, kb) = (format!("switch_{a}"), format!("switch_{b}"));
                let (va, vb) = (on_off(flip(&ka)), on_off(rng.random_bool(0.5)));
                let payload = json!({ka.clone(): va, kb.clone(): vb}).to_string();
                let expect = Expect::Equal(vec![(ka, json!(va)), (kb, json!(vb))]);
                Some(Planned {
                    kind: Kind::Channels,
                    device: d.clone(),
                    topic: format!("{base}/{d}/set"),
                    payload,
                    expect,
                })
            } else {
                let key = format!("switch_{}", rng.random_range(1..=n));
                let v = on_off(flip(&key));
                let expect = Expect::Equal(vec![(key.clone(), json!(v))]);
                Some(Planned {
                    kind: Kind::Channel,
                    topic: format!("{base}/{d}/{key}/set"),
                    device: d,
                    payload: v.into(),
                    expect,
                })
            }
        }
        35..=54 => {
            let (id, lo, hi) = *pick(rng, LIGHTS, |(id, _, _)| free(&topic_id(id)))?;
            let (state, _) = truth(sim, id)?;
            let d = topic_id(id);
            let light = state.get("light").cloned().unwrap_or(Value::Null);
            let is_on = light["state"] == "ON";
            if id == ids::WHITE_103 && is_on && rng.random_bool(0.3) {
                // Colour temperature in mireds on the light's own topic (what Home Assistant sends).
                let current = light["color_temp"].as_u64().unwrap_or(4000);
                let kelvin = loop {
                    let k: u64 = rng.random_range(28..=64) * 100;
                    if k.abs_diff(current) > 300 {
                        break k;
                    }
                };
                let mireds = (1_000_000.0 / kelvin as f64).round() as u64;
                let payload = json!({"state": "ON", "color_temp": mireds}).to_string();
                let expect = Expect::Kelvin((1_000_000.0 / mireds as f64).round() as u64);
                return Some(Planned {
                    kind: Kind::LightTemp,
                    topic: format!("{base}/{d}/light/set"),
                    device: d,
                    payload,
                    expect,
                });
            }
            let (payload, expect) = if is_on && rng.random_bool(0.3) {
                (json!({"state": "OFF"}), Expect::Light { on: false, brightness: None })
            } else {
                let current = if is_on { light["brightness"].as_u64() } else { None };
                let b = loop {
                    let b = rng.random_range(lo..=hi);
                    if Some(b) != current {
                        break b;
                    }
                };
                (json!({"state": "ON", "brightness": b}), Expect::Light { on: true, brightness: Some(b) })
            };
            let topic = if rng.random_bool(0.5) { format!("{base}/{d}/light/set") } else { format!("{base}/{d}/set") };
            let payload =
                if topic.ends_with("/light/set") { payload.to_string() } else { json!({"light": payload}).to_string() };
            Some(Planned { kind: Kind::Light, device: d, topic, payload, expect })
        }
        55..=62 => {
            let d = topic_id(ids::FAN_34);
            if !free(&d) {
                return None;
            }
            let (state, _) = truth(sim, ids::FAN_34)?;
            let fan = state.get("fan").cloned().unwrap_or(Value::Null);
            let on = fan["state"] == "ON";
            let current = if on { fan["percentage"].as_u64() } else { None };
            if on && rng.random_bool(0.25) {
                let expect = Expect::Fan { on: false, percentage: None };
                return Some(Planned {
                    kind: Kind::Fan,
                    topic: format!("{base}/{d}/fan/set"),
                    device: d,
                    payload: "OFF".into(),
                    expect,
                });
            }
            let pct = *[33u64, 67, 100].iter().filter(|p| Some(**p) != current).nth(rng.random_range(0..2))?;
            let expect = Expect::Fan { on: true, percentage: Some(pct) };
            Some(Planned {
                kind: Kind::Fan,
                topic: format!("{base}/{d}/fan/percentage/set"),
                device: d,
                payload: pct.to_string(),
                expect,
            })
        }
        63..=69 => {
            let d = topic_id(ids::COVER_11);
            if !free(&d) {
                return None;
            }
            let (state, _) = truth(sim, ids::COVER_11)?;
            let current = state["cover"]["position"].as_u64();
            let pos = loop {
                let p = rng.random_range(0..=100);
                if Some(p) != current {
                    break p;
                }
            };
            let expect = Expect::CoverPosition(pos);
            Some(Planned {
                kind: Kind::Cover,
                topic: format!("{base}/{d}/cover/position/set"),
                device: d,
                payload: pos.to_string(),
                expect,
            })
        }
        70..=84 => {
            let id = *pick(rng, TIMED, free_id)?;
            let (state, _) = truth(sim, id)?;
            let d = topic_id(id);
            let existing = timers_of(&Value::Object(state));
            if !existing.is_empty() && (existing.len() >= 3 || rng.random_bool(0.4)) {
                let mid = existing[rng.random_range(0..existing.len())].clone();
                let payload = if rng.random_bool(0.5) { mid.clone() } else { json!({"mId": mid}).to_string() };
                let expect = Expect::TimerAbsent(mid);
                return Some(Planned {
                    kind: Kind::TimerRemove,
                    topic: format!("{base}/{d}/timers/remove"),
                    device: d,
                    payload,
                    expect,
                });
            }
            let mid = uuid::Uuid::new_v4().to_string();
            let timer = match rng.random_range(0..3) {
                0 => {
                    json!({"coolkit_timer_type": "repeat", "at": format!("{} {} * * 1,3", rng.random_range(0..60), rng.random_range(0..24)),
                            "do": {"switch": "on"}, "mId": mid, "enabled": 1})
                }
                1 => {
                    json!({"coolkit_timer_type": "delay", "period": rng.random_range(1..600).to_string(), "do": {"switch": "off"}, "mId": mid})
                }
                _ => {
                    json!({"coolkit_timer_type": "once", "at": "2031-07-24T08:28:00.000Z", "do": {"switch": "on"}, "mId": mid, "enabled": 0})
                }
            };
            let expect = Expect::TimerPresent(mid);
            Some(Planned {
                kind: Kind::TimerAdd,
                topic: format!("{base}/{d}/timers/add"),
                device: d,
                payload: timer.to_string(),
                expect,
            })
        }
        85..=89 => {
            let d = topic_id(ids::OFFLINE);
            if !free(&d) {
                return None;
            }
            Some(Planned {
                kind: Kind::ToOfflineDevice,
                topic: format!("{base}/{d}/switch/set"),
                device: d,
                payload: "ON".into(),
                expect: Expect::Refusal,
            })
        }
        90..=96 => {
            let d = topic_id(ids::TH_RELAY);
            let (topic, payload) = match rng.random_range(0..6) {
                0 => (format!("{base}/{d}/switch/set"), "MAYBE".to_owned()),
                1 => (format!("{base}/{d}/temperature/set"), "20".to_owned()),
                2 => (format!("{base}/{d}/set"), "not json".to_owned()),
                3 => (format!("{base}/{d}/nope/set"), "ON".to_owned()),
                4 => {
                    let timer = json!({"coolkit_timer_type": "repeat", "at": "99 99 * * *", "do": {"switch": "on"}});
                    (format!("{base}/{d}/timers/add"), timer.to_string())
                }
                _ => {
                    // Once a panic of the adapter (a time beyond the year 9999).
                    let timer = json!({"coolkit_timer_type": "delay", "period": "5000000000", "do": {"switch": "on"}});
                    (format!("{base}/{d}/timers/add"), timer.to_string())
                }
            };
            if !free(&d) {
                return None;
            }
            Some(Planned { kind: Kind::Invalid, device: d, topic, payload, expect: Expect::Refusal })
        }
        _ => {
            let d = router_device.to_owned();
            if !free(&d) {
                return None;
            }
            Some(Planned {
                kind: Kind::ToRouter,
                topic: format!("{base}/{d}/cpu_load/set"),
                device: d,
                payload: "5".into(),
                expect: Expect::Refusal,
            })
        }
    }
}

/// Every command sent and what became of it.
#[derive(Default)]
pub struct Ledger {
    pub entries: Vec<Entry>,
    /// Index of the outstanding entry per device.
    outstanding: HashMap<String, usize>,
    /// `command_failed` events no sent command explains.
    pub unmatched_events: Vec<String>,
    /// `update` frames seen per cloud device id so far (to attribute new ones).
    frames: HashMap<String, usize>,
    /// The latest state published for each device.
    published: HashMap<String, Value>,
}

impl Ledger {
    pub fn is_free(&self, device: &str, now: Instant) -> bool {
        match self.outstanding.get(device) {
            None => true,
            Some(&i) => {
                let e = &self.entries[i];
                e.accounted() && e.hold_until.is_none_or(|t| now >= t)
            }
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.values().filter(|&&i| !self.entries[i].accounted()).count()
    }

    /// Commands outstanding now are not followed by another to their device before `until`.
    pub fn hold_outstanding(&mut self, until: Instant) {
        for &i in self.outstanding.values() {
            let e = &mut self.entries[i];
            e.hold_until = Some(e.hold_until.map_or(until, |t| t.max(until)));
        }
    }

    pub fn record(&mut self, p: Planned, sent_seq: usize, hold_until: Option<Instant>) {
        let n = self.entries.len();
        self.outstanding.insert(p.device.clone(), n);
        self.entries.push(Entry {
            n,
            kind: p.kind,
            device: p.device,
            topic: p.topic,
            payload: p.payload,
            expect: p.expect,
            sent: Instant::now(),
            sent_seq,
            hold_until,
            confirmed: None,
            reported: None,
            frames_seen: 0,
        });
    }

    /// A retained state of a device: confirms its outstanding command if it shows the change.
    pub fn on_state(&mut self, device: &str, seq: usize, state: &Value) {
        if let Some(&i) = self.outstanding.get(device) {
            let e = &mut self.entries[i];
            if e.confirmed.is_none() && seq > e.sent_seq && e.expect.shown_by(state) {
                e.confirmed = Some(Instant::now());
            }
        }
        self.published.insert(device.to_owned(), state.clone());
    }

    /// Whether the device's published state already shows what `p` would change: then it is stale (the
    /// command changes the simulator's truth), and no state published after it could confirm it.
    pub fn already_shown(&self, p: &Planned) -> bool {
        self.published.get(&p.device).is_some_and(|state| p.expect.shown_by(state))
    }

    /// A `command_failed` event: reports the device's outstanding command if it is the one, else the latest
    /// unreported command it can be (a late report of a command already confirmed by its state).
    pub fn on_failure(&mut self, event: &Value) {
        let device = event["device"].as_str().unwrap_or_default();
        let topic = event["topic"].as_str().unwrap_or_default();
        let fits = |e: &Entry| {
            e.reported.is_none() && e.device == device && e.topic == topic && echo(&e.payload) == event["command"]
        };
        let outstanding = self.outstanding.get(device).copied().filter(|&i| fits(&self.entries[i]));
        let index = outstanding.or_else(|| self.entries.iter().rposition(fits));
        let found = index.map(|i| &mut self.entries[i]);
        match found {
            Some(e) => {
                let code = event["code"].as_str().unwrap_or("?").to_owned();
                let reason = event["reason"].as_str().unwrap_or("").to_owned();
                e.reported = Some((code, reason));
            }
            None => self.unmatched_events.push(event.to_string()),
        }
    }

    /// Counts new `update` frames the cloud received per device, for the report.
    pub fn on_frames(&mut self, sim: &SimCloud) {
        let mut per_device: HashMap<String, usize> = HashMap::new();
        for u in sim.updates() {
            if let Some(id) = u["deviceid"].as_str() {
                *per_device.entry(id.to_owned()).or_default() += 1;
            }
        }
        for (id, _) in sim.http_updates() {
            *per_device.entry(id).or_default() += 1;
        }
        for (id, count) in per_device {
            let before = self.frames.insert(id.clone(), count).unwrap_or(0);
            if count > before
                && let Some(&i) = self.outstanding.get(&topic_id(&id))
            {
                self.entries[i].frames_seen += count - before;
            }
        }
    }

    pub fn unaccounted(&self) -> Vec<&Entry> {
        self.entries.iter().filter(|e| !e.accounted()).collect()
    }

    /// Counts by kind: (sent, confirmed, reported).
    pub fn by_kind(&self) -> BTreeMap<Kind, (usize, usize, usize)> {
        let mut m: BTreeMap<Kind, (usize, usize, usize)> = BTreeMap::new();
        for e in &self.entries {
            let c = m.entry(e.kind).or_default();
            c.0 += 1;
            c.1 += usize::from(e.confirmed.is_some());
            c.2 += usize::from(e.reported.is_some());
        }
        m
    }

    /// Counts of reported codes.
    pub fn codes(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in &self.entries {
            if let Some((code, _)) = &e.reported {
                *m.entry(code.clone()).or_default() += 1;
            }
        }
        m
    }
}

/// A payload as the bridge echoes it in an event.
fn echo(payload: &str) -> Value {
    serde_json::from_str(payload).unwrap_or_else(|_| Value::String(payload.to_owned()))
}
