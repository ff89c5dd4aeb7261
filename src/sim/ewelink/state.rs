//! The simulated cloud's state: tokens, devices, replay-protected nonces, fault knobs, counters, the
//! records of what clients sent, and the registry of open WebSockets (for pushes and faults).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SimOptions;
use super::fixtures::{self, SimDevice, USER_APIKEY};
use crate::ewelink::sign;

/// What happened, for tests and benchmarks to assert on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful logins.
    pub logins: u64,
    /// Login attempts refused (wrong password, redirect, 407 ...).
    pub login_failures: u64,
    pub region_redirects: u64,
    /// Successful refreshes.
    pub refreshes: u64,
    pub refresh_failures: u64,
    pub device_lists: u64,
    pub dispatches: u64,
    /// WebSocket connections accepted.
    pub ws_connections: u64,
    pub handshake_attempts: u64,
    /// Successful `userOnline` handshakes.
    pub handshakes: u64,
    pub handshakes_406: u64,
    /// Sockets closed because the client stopped sending heartbeats.
    pub heartbeat_kills: u64,
    pub pings: u64,
    pub ws_updates: u64,
    pub ws_queries: u64,
    pub http_status_updates: u64,
    pub http_status_queries: u64,
    /// Requests refused by the strict checks (signature, nonce, ts, fields ...).
    pub bad_requests: u64,
    /// HTTP calls closer than 500 ms to the previous call to the same endpoint, or beyond 300 per 5 min.
    pub rate_violations: u64,
}

#[derive(Debug, Default)]
pub(super) struct AtomicCounters {
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub region_redirects: AtomicU64,
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
    pub device_lists: AtomicU64,
    pub dispatches: AtomicU64,
    pub ws_connections: AtomicU64,
    pub handshake_attempts: AtomicU64,
    pub handshakes: AtomicU64,
    pub handshakes_406: AtomicU64,
    pub heartbeat_kills: AtomicU64,
    pub pings: AtomicU64,
    pub ws_updates: AtomicU64,
    pub ws_queries: AtomicU64,
    pub http_status_updates: AtomicU64,
    pub http_status_queries: AtomicU64,
    pub bad_requests: AtomicU64,
    pub rate_violations: AtomicU64,
    /// Knob: handshakes still to fail with 406.
    pub pending_406: AtomicU64,
}

impl AtomicCounters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
    }

    pub fn snapshot(&self) -> Counters {
        let g = |c: &AtomicU64| c.load(Ordering::SeqCst);
        Counters {
            logins: g(&self.logins),
            login_failures: g(&self.login_failures),
            region_redirects: g(&self.region_redirects),
            refreshes: g(&self.refreshes),
            refresh_failures: g(&self.refresh_failures),
            device_lists: g(&self.device_lists),
            dispatches: g(&self.dispatches),
            ws_connections: g(&self.ws_connections),
            handshake_attempts: g(&self.handshake_attempts),
            handshakes: g(&self.handshakes),
            handshakes_406: g(&self.handshakes_406),
            heartbeat_kills: g(&self.heartbeat_kills),
            pings: g(&self.pings),
            ws_updates: g(&self.ws_updates),
            ws_queries: g(&self.ws_queries),
            http_status_updates: g(&self.http_status_updates),
            http_status_queries: g(&self.http_status_queries),
            bad_requests: g(&self.bad_requests),
            rate_violations: g(&self.rate_violations),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenState {
    Valid,
    Expired,
    Revoked,
}

/// What a WebSocket connection task is told from outside.
#[derive(Debug)]
pub(super) enum ConnCmd {
    Send(String),
    Close,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub devices: BTreeMap<String, SimDevice>,
    pub access: HashMap<String, TokenState>,
    pub refresh: HashMap<String, bool>,
    nonces: HashSet<String>,
    nonce_order: VecDeque<String>,
    pub redirect: Option<(String, usize)>,
    /// v1 redirects without `region` in the body (the client must ask the region query).
    pub redirect_hides_region: bool,
    /// The account's region, reported by logins (changed by a redirect).
    pub account_region: String,
    pub forbid_password_login: bool,
    pub quota_exceeded: bool,
    pub refuse_sockets: bool,
    pub ack_delay: Duration,
    pub updates: Vec<(String, Value)>,
    pub queries: Vec<Value>,
    pub http_updates: Vec<(String, Map<String, Value>)>,
    last_call: HashMap<String, Instant>,
    window: VecDeque<Instant>,
}

pub(super) struct Shared {
    pub opts: SimOptions,
    pub port: u16,
    inner: Mutex<Inner>,
    pub counters: AtomicCounters,
    pub conns: Mutex<HashMap<u64, mpsc::UnboundedSender<ConnCmd>>>,
    pub next_conn: AtomicU64,
    pub frozen: AtomicBool,
    /// Who is told of every `update` frame as it arrives (benchmarks time commands with it).
    pub update_watchers: Mutex<Vec<mpsc::UnboundedSender<(std::time::Instant, Value)>>>,
}

impl Shared {
    pub fn new(opts: SimOptions, port: u16) -> Shared {
        let mut inner = Inner { account_region: opts.region.clone(), ..Inner::default() };
        let devices = if opts.fixtures { fixtures::all() } else { Vec::new() };
        for d in devices.into_iter().chain(fixtures::scale(opts.extra_devices)) {
            inner.devices.insert(d.deviceid.clone(), d);
        }
        Shared {
            opts,
            port,
            inner: Mutex::new(inner),
            counters: AtomicCounters::default(),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            frozen: AtomicBool::new(false),
            update_watchers: Mutex::new(Vec::new()),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepts a nonce once: 8 alphanumerics, never seen before (the last 100 000 are remembered).
    pub fn take_nonce(&self, nonce: &str) -> Result<(), String> {
        if !sign::is_nonce(nonce) {
            return Err(format!("nonce {nonce:?} is not 8 alphanumerics"));
        }
        let mut st = self.state();
        if !st.nonces.insert(nonce.to_owned()) {
            return Err(format!("nonce {nonce:?} was already used"));
        }
        st.nonce_order.push_back(nonce.to_owned());
        if st.nonce_order.len() > 100_000
            && let Some(old) = st.nonce_order.pop_front()
        {
            st.nonces.remove(&old);
        }
        Ok(())
    }

    /// A `ts` in seconds near the simulator's clock.
    pub fn check_ts(&self, ts: u64) -> Result<(), String> {
        let now = sign::now_s();
        let tolerance = self.opts.ts_tolerance.as_secs();
        if ts > 100_000_000_000 {
            return Err(format!("ts {ts} looks like milliseconds; the document wants seconds"));
        }
        if ts + tolerance < now || ts > now + tolerance {
            return Err(format!("ts {ts} is too far from the server's clock ({now})"));
        }
        Ok(())
    }

    /// Records an HTTP call for the published rate limits (500 ms per endpoint, 300 per 5 minutes).
    pub fn note_call(&self, path: &str) {
        let now = Instant::now();
        let mut st = self.state();
        let mut violation = false;
        if let Some(last) = st.last_call.insert(path.to_owned(), now)
            && now.duration_since(last) < Duration::from_millis(500)
        {
            violation = true;
        }
        while st.window.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(300)) {
            st.window.pop_front();
        }
        st.window.push_back(now);
        if st.window.len() > 300 {
            violation = true;
        }
        drop(st);
        if violation {
            tracing::debug!(path, "the simulated cloud saw a call faster than the published limits");
            AtomicCounters::bump(&self.counters.rate_violations);
        }
    }

    pub fn issue_tokens(&self) -> (String, String) {
        let (at, rt) = (random_hex(40), random_hex(40));
        let mut st = self.state();
        st.access.insert(at.clone(), TokenState::Valid);
        st.refresh.insert(rt.clone(), true);
        (at, rt)
    }

    /// A new access token for a valid refresh token (the refresh token stays, as in the document's example).
    pub fn refresh_tokens(&self, rt: &str) -> Option<(String, String)> {
        let mut st = self.state();
        if st.refresh.get(rt) != Some(&true) {
            return None;
        }
        let at = random_hex(40);
        st.access.insert(at.clone(), TokenState::Valid);
        Some((at, rt.to_owned()))
    }

    pub fn token_state(&self, at: &str) -> Option<TokenState> {
        self.state().access.get(at).copied()
    }

    pub fn expire_access_tokens(&self) {
        for s in self.state().access.values_mut() {
            if *s == TokenState::Valid {
                *s = TokenState::Expired;
            }
        }
    }

    pub fn revoke_access_tokens(&self) {
        for s in self.state().access.values_mut() {
            *s = TokenState::Revoked;
        }
    }

    pub fn expire_refresh_tokens(&self) {
        for v in self.state().refresh.values_mut() {
            *v = false;
        }
    }

    // ----- WebSocket registry -----

    pub fn register_conn(&self, tx: mpsc::UnboundedSender<ConnCmd>) -> u64 {
        let id = self.next_conn.fetch_add(1, Ordering::SeqCst);
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        id
    }

    pub fn unregister_conn(&self, id: u64) {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    pub fn close_all(&self) {
        let conns: Vec<_> = self.conns.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (_, tx) in conns {
            let _ = tx.send(ConnCmd::Close);
        }
    }

    /// Tells the watchers of an `update` frame that arrived at `at`.
    pub fn notify_update(&self, at: std::time::Instant, frame: &Value) {
        let mut watchers = self.update_watchers.lock().unwrap_or_else(|e| e.into_inner());
        watchers.retain(|w| w.send((at, frame.clone())).is_ok());
    }

    /// Sends a text frame to every connected (handshaken) client.
    pub fn broadcast(&self, text: &str) {
        for tx in self.conns.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = tx.send(ConnCmd::Send(text.to_owned()));
        }
    }

    /// Applies a change made on the device itself and pushes it as `update` from the device.
    pub fn device_changed(&self, deviceid: &str, params: Map<String, Value>) -> bool {
        let push = {
            let mut st = self.state();
            let Some(d) = st.devices.get_mut(deviceid) else { return false };
            let applied = apply_params(d, &params);
            device_push(d, &applied)
        };
        self.broadcast(&push);
        true
    }

    pub fn set_online(&self, deviceid: &str, online: bool) -> bool {
        let msg = {
            let mut st = self.state();
            let Some(d) = st.devices.get_mut(deviceid) else { return false };
            d.online = online;
            json!({"action": "sysmsg", "deviceid": deviceid, "apikey": d.owner_apikey, "nonce": sign::nonce(),
                   "ts": 0, "params": {"online": online}})
            .to_string()
        };
        self.broadcast(&msg);
        true
    }
}

/// The `update` a device pushes after a change.
pub(super) fn device_push(d: &SimDevice, params: &Map<String, Value>) -> String {
    json!({"action": "update", "deviceid": d.deviceid, "apikey": d.owner_apikey, "userAgent": "device",
           "from": "device", "ts": 0, "sequence": sign::now_ms().to_string(), "params": params})
    .to_string()
}

/// Applies `params` to the device as the real one would; returns what changed (what it pushes).
pub(super) fn apply_params(d: &mut SimDevice, params: &Map<String, Value>) -> Map<String, Value> {
    let mut pushed = Map::new();
    for (key, value) in params {
        match (key.as_str(), value) {
            ("switches", Value::Array(changes)) => {
                let mut current = d.params.get("switches").and_then(Value::as_array).cloned().unwrap_or_default();
                for change in changes {
                    let Some(outlet) = change.get("outlet").and_then(Value::as_u64) else { continue };
                    match current.iter_mut().find(|o| o.get("outlet").and_then(Value::as_u64) == Some(outlet)) {
                        Some(o) => *o = change.clone(),
                        None => current.push(change.clone()),
                    }
                }
                d.params.insert("switches".into(), Value::Array(current.clone()));
                pushed.insert("switches".into(), Value::Array(current));
            }
            ("switch", Value::String(s)) if d.uiid == 11 || d.uiid == 258 => {
                // A cover runs to its end (100 = closed) or stops where it is.
                d.params.insert("switch".into(), value.clone());
                pushed.insert("switch".into(), value.clone());
                let end = match s.as_str() {
                    "on" => Some(0),
                    "off" => Some(100),
                    _ => None,
                };
                if let Some(end) = end {
                    d.params.insert("setclose".into(), json!(end));
                    pushed.insert("setclose".into(), json!(end));
                }
            }
            (_, Value::Object(fields)) if d.params.get(key).is_some_and(Value::is_object) => {
                // Nested objects (white, color) are merged field by field.
                let entry = d.params.entry(key.clone()).or_insert_with(|| json!({}));
                if let Some(o) = entry.as_object_mut() {
                    for (k, v) in fields {
                        o.insert(k.clone(), v.clone());
                    }
                }
                pushed.insert(key.clone(), entry.clone());
            }
            _ => {
                d.params.insert(key.clone(), value.clone());
                pushed.insert(key.clone(), value.clone());
            }
        }
    }
    pushed
}

/// The change a physical button press makes: the first switch toggles.
pub(super) fn toggle_params(params: &Map<String, Value>) -> Option<Map<String, Value>> {
    let flip = |s: Option<&str>| if s == Some("on") { "off" } else { "on" };
    let mut out = Map::new();
    if let Some(s) = params.get("switch").and_then(Value::as_str) {
        out.insert("switch".into(), json!(flip(Some(s))));
    } else if let Some(first) = params.get("switches").and_then(Value::as_array).and_then(|a| a.first()) {
        let outlet = first.get("outlet").cloned().unwrap_or(json!(0));
        let state = flip(first.get("switch").and_then(Value::as_str));
        out.insert("switches".into(), json!([{"switch": state, "outlet": outlet}]));
    } else if let Some(s) = params.get("state").and_then(Value::as_str) {
        out.insert("state".into(), json!(flip(Some(s))));
    } else {
        return None;
    }
    Some(out)
}

pub(super) fn is_shared(d: &SimDevice) -> bool {
    d.owner_apikey != USER_APIKEY
}

fn random_hex(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0')).collect()
}

/// Drifts sensor readings and pushes them, for `hub2mqtt demo`.
pub(super) async fn animate(shared: std::sync::Arc<Shared>, period: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let changes: Vec<(String, Map<String, Value>)> = {
            let st = shared.state();
            let mut rng = rand::rng();
            st.devices
                .values()
                .filter(|d| d.online)
                .filter_map(|d| {
                    let mut m = Map::new();
                    let mut drift_str = |key: &str, step: f64, lo: f64, hi: f64| {
                        if let Some(v) = d.params.get(key).and_then(Value::as_str).and_then(|s| s.parse::<f64>().ok()) {
                            let n = (v + rng.random_range(-step..=step)).clamp(lo, hi);
                            m.insert(key.to_owned(), json!(format!("{n:.2}")));
                        }
                    };
                    drift_str("currentTemperature", 0.3, -10.0, 40.0);
                    drift_str("power", 5.0, 0.0, 3000.0);
                    if let Some(v) = d.params.get("temperature").and_then(Value::as_f64) {
                        m.insert(
                            "temperature".into(),
                            json!(((v + rng.random_range(-0.3..=0.3)) * 10.0).round() / 10.0),
                        );
                    }
                    if let Some(v) = d.params.get("actPow_00").and_then(Value::as_i64) {
                        m.insert("actPow_00".into(), json!((v + rng.random_range(-300..=300)).max(0)));
                    }
                    (!m.is_empty()).then(|| (d.deviceid.clone(), m))
                })
                .collect()
        };
        for (id, params) in changes {
            shared.device_changed(&id, params);
        }
    }
}
