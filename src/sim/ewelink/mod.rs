//! A simulated eWeLink cloud on 127.0.0.1, strict about `ewelink-api-v1.md` (API v1) and the field notes
//! (API v2): it checks signatures, `appid`, nonces (format and replay), `ts`, `version`, Bearer tokens and
//! `Content-Type`; answers with the documents' shapes; follows region redirects, token expiry (401/402) and
//! refresh; and serves the WebSocket (`userOnline` handshake, heartbeat enforcement, `update` with ack and
//! device push, `query`, `sysmsg`, 503/504).
//!
//! One listener serves both generations (`/api/...` and `/v2/...`); point the client's `base_url` at
//! [`SimCloud::base_url`]. Knobs inject every fault the adapter must survive. Used by tests, benchmarks and
//! `hub2mqtt demo`. Knows nothing of the bridge.

pub mod fixtures;
mod http;
mod state;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

pub use fixtures::{OWNER_APIKEY, SimDevice, USER_APIKEY, ids};
pub use state::Counters;
use state::Shared;

/// How the simulated cloud is set up.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    pub app_id: String,
    pub app_secret: String,
    pub email: String,
    pub phone: String,
    pub password: String,
    /// The account's region, reported by logins.
    pub region: String,
    /// `hbInterval` given to WebSocket clients, in seconds.
    pub hb_interval_s: u64,
    /// A client silent for `hb_interval_s + 7 s + heartbeat_grace` is disconnected.
    pub heartbeat_grace: Duration,
    /// Include the fixture devices (one per capability, offline, shared, unknown uiids).
    pub fixtures: bool,
    /// This many extra plain switches (scale tests).
    pub extra_devices: usize,
    /// Drift temperatures and power readings, pushing them, at this interval (`hub2mqtt demo`).
    pub animate: Option<Duration>,
    /// Answer the v1 device list as the document's example (a bare array) instead of its table
    /// (`{"error":0,"devicelist":[...]}`).
    pub v1_bare_device_list: bool,
    /// How far `ts` may be from the simulator's clock.
    pub ts_tolerance: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            // The document's example app id and the field notes' test-vector secret: not real credentials.
            app_id: "McFJj4Noke1mGDZCR1QarGW7P9Ycp0Vr".into(),
            app_secret: "OdPuCZ4PkPPi0rVKRVcGmll2NM6vVk0c".into(),
            email: "user@example.com".into(),
            phone: "+8613123456789".into(),
            password: "12345678".into(),
            region: "eu".into(),
            hb_interval_s: 145,
            heartbeat_grace: Duration::from_secs(8),
            fixtures: true,
            extra_devices: 0,
            animate: None,
            v1_bare_device_list: false,
            ts_tolerance: Duration::from_secs(300),
        }
    }
}

/// A session issued without a login (for pre-obtained-session setups).
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub at: String,
    pub rt: String,
    pub apikey: String,
}

/// A running simulated cloud. Stops when dropped.
pub struct SimCloud {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl SimCloud {
    /// Starts listening; returns once the socket is bound.
    pub async fn start(options: SimOptions) -> std::io::Result<SimCloud> {
        let listener = tokio::net::TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared::new(options.clone(), addr.port()));
        let app = http::router(shared.clone());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "the simulated eWeLink cloud stopped");
            }
        });
        if let Some(period) = options.animate {
            tokio::spawn(state::animate(shared.clone(), period, stop.clone()));
        }
        Ok(SimCloud { shared, addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the client's `base_url` (the WebSocket is then `ws://`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn options(&self) -> &SimOptions {
        &self.shared.opts
    }

    /// Stops the server and closes every WebSocket.
    pub fn stop(&self) {
        self.shared.close_all();
        self.stop.cancel();
    }

    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Polls `check` every 20 ms until it is true or `timeout` passes; returns the last result.
    pub async fn wait_until(&self, timeout: Duration, mut check: impl FnMut(&SimCloud) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // ----- sessions and faults -----

    /// Issues tokens as if the user had logged in elsewhere and copied them (no login counted).
    pub fn issue_session(&self) -> IssuedSession {
        let (at, rt) = self.shared.issue_tokens();
        IssuedSession { at, rt, apikey: USER_APIKEY.into() }
    }

    /// Every access token issued so far answers 402 (expired) from now on; WebSockets stay up.
    pub fn expire_access_tokens(&self) {
        self.shared.expire_access_tokens();
    }

    /// Every refresh token issued so far is refused (so the client must log in again).
    pub fn expire_refresh_tokens(&self) {
        self.shared.expire_refresh_tokens();
    }

    /// Another client logged in: every access token is invalid (401) from now on.
    pub fn revoke_access_tokens(&self) {
        self.shared.revoke_access_tokens();
    }

    /// The account moved to `region`: the next `n` logins answer a redirect there (301 in v1, 10004 in v2),
    /// and logins report it as the account's region.
    pub fn redirect_logins(&self, region: &str, n: usize) {
        let mut st = self.shared.state();
        st.redirect = Some((region.to_owned(), n));
        st.account_region = region.to_owned();
    }

    /// Like [`SimCloud::redirect_logins`], but the v1 301 answer leaves `region` out, as the document's
    /// error table suggests: the client has to ask `/api/user/region`.
    pub fn redirect_logins_without_region(&self, region: &str, n: usize) {
        self.redirect_logins(region, n);
        self.shared.state().redirect_hides_region = true;
    }

    /// The next `n` WebSocket handshakes fail with 406 "logged in elsewhere".
    pub fn fail_handshakes_406(&self, n: usize) {
        self.shared.counters.pending_406.store(n as u64, Ordering::SeqCst);
    }

    /// Password logins answer 407 (v2) / 406 (v1): the app id is not allowed to log in with a password.
    pub fn forbid_password_login(&self, forbid: bool) {
        self.shared.state().forbid_password_login = forbid;
    }

    /// Every HTTP call answers 412 (quota exceeded) while set.
    pub fn quota_exceeded(&self, exceeded: bool) {
        self.shared.state().quota_exceeded = exceeded;
    }

    /// Acks of `update`/`query` are sent this late (a delay past the client's timeout makes it give up).
    pub fn set_ack_delay(&self, delay: Duration) {
        self.shared.state().ack_delay = delay;
    }

    /// Closes every WebSocket now (the clients must reconnect).
    pub fn drop_sockets(&self) {
        self.shared.close_all();
    }

    /// While frozen, WebSockets neither read nor write nor enforce heartbeats: a half-open connection.
    pub fn freeze_sockets(&self, frozen: bool) {
        self.shared.frozen.store(frozen, Ordering::SeqCst);
    }

    /// Refuses new WebSocket connections (the upgrade answers 503) while set.
    pub fn refuse_sockets(&self, refuse: bool) {
        self.shared.state().refuse_sockets = refuse;
    }

    /// Open WebSocket connections.
    pub fn open_sockets(&self) -> usize {
        self.shared.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    // ----- devices -----

    /// A device's current parameters.
    pub fn device_params(&self, deviceid: &str) -> Option<Map<String, Value>> {
        self.shared.state().devices.get(deviceid).map(|d| d.params.clone())
    }

    pub fn device(&self, deviceid: &str) -> Option<SimDevice> {
        self.shared.state().devices.get(deviceid).cloned()
    }

    pub fn device_ids(&self) -> Vec<String> {
        self.shared.state().devices.keys().cloned().collect()
    }

    /// The device changed by itself (a sensor reading, a physical button): apply and push `update` from it.
    pub fn push_from_device(&self, deviceid: &str, params: Map<String, Value>) -> bool {
        self.shared.device_changed(deviceid, params)
    }

    /// Someone pressed the device's button: its (first) switch toggles and the device pushes it.
    pub fn press_button(&self, deviceid: &str) -> bool {
        let change = {
            let st = self.shared.state();
            let Some(d) = st.devices.get(deviceid) else { return false };
            state::toggle_params(&d.params)
        };
        match change {
            Some(params) => self.shared.device_changed(deviceid, params),
            None => false,
        }
    }

    /// The device goes offline/online: `sysmsg` to every client.
    pub fn set_online(&self, deviceid: &str, online: bool) -> bool {
        self.shared.set_online(deviceid, online)
    }

    /// An unresponsive device: commands answer 504.
    pub fn set_responsive(&self, deviceid: &str, responsive: bool) -> bool {
        match self.shared.state().devices.get_mut(deviceid) {
            Some(d) => {
                d.responsive = responsive;
                true
            }
            None => false,
        }
    }

    /// Adds (or replaces) a device.
    pub fn add_device(&self, device: SimDevice) {
        self.shared.state().devices.insert(device.deviceid.clone(), device);
    }

    pub fn remove_device(&self, deviceid: &str) -> bool {
        self.shared.state().devices.remove(deviceid).is_some()
    }

    // ----- what the clients sent -----

    /// Every WebSocket `update` frame received, parsed, in order (including refused ones).
    pub fn updates(&self) -> Vec<Value> {
        self.shared.state().updates.iter().map(|(_, v)| v.clone()).collect()
    }

    /// The same frames as the exact text received.
    pub fn update_frames(&self) -> Vec<String> {
        self.shared.state().updates.iter().map(|(t, _)| t.clone()).collect()
    }

    /// `update`s received for one device, parsed.
    pub fn updates_for(&self, deviceid: &str) -> Vec<Value> {
        self.updates().into_iter().filter(|u| u.get("deviceid").and_then(Value::as_str) == Some(deviceid)).collect()
    }

    /// Every WebSocket `query` frame received, parsed.
    pub fn queries(&self) -> Vec<Value> {
        self.shared.state().queries.clone()
    }

    /// HTTP status updates received (`deviceid`, `params`), both generations.
    pub fn http_updates(&self) -> Vec<(String, Map<String, Value>)> {
        self.shared.state().http_updates.clone()
    }

    /// Every `update` frame received from now on, parsed, with the moment it arrived (before it is applied
    /// or acked). For benchmarks timing commands end to end.
    pub fn watch_updates(&self) -> tokio::sync::mpsc::UnboundedReceiver<(std::time::Instant, Value)> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.shared.update_watchers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    /// Forgets the recorded frames (not the counters).
    pub fn clear_records(&self) {
        let mut st = self.shared.state();
        st.updates.clear();
        st.queries.clear();
        st.http_updates.clear();
    }
}

impl Drop for SimCloud {
    fn drop(&mut self) {
        self.stop();
    }
}
