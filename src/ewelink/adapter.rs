//! The eWeLink adapter: one account's devices as the bridge sees them. It logs in (or reuses the saved or
//! configured session), announces every device of the list, keeps their parameters current from the
//! WebSocket (pushes, `sysmsg`, a `query` of every device after each reconnect), and carries out commands:
//! entity changes become one `update` per command, confirmed by the cloud's ack (503 offline, 504 / no ack
//! timeout), or, while the socket is down past a short wait, sent over the HTTP status endpoint. Every
//! command is answered.
//!
//! Knows the hub contract and the other `ewelink` parts; nothing of MQTT topics or Home Assistant payloads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{EwelinkConfig, Region};
use crate::hub::{BridgeGone, Command, CommandError, CommandOp, CommandOutcome, DeviceSpec, HubEvents, HubHandle};
use crate::secret::Secret;

use super::auth::Auth;
use super::devices::{self, Profile};
use super::error::CloudError;
use super::http::{CloudDevice, Credentials, Http, LoginId, Tokens};
use super::pace::PaceRules;
use super::session::{self, SessionTuning};
use super::sign;
use super::timers;
use super::ws::{RequestError, WsClient, WsEvent};

/// The adapter's delays and limits. The defaults respect the cloud's published limits; tests and
/// benchmarks shorten them.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub session: SessionTuning,
    /// HTTP pacing (500 ms per endpoint, 300 calls per 5 minutes).
    pub http_pace: PaceRules,
    /// WebSocket pacing: requests to one device at least this far apart, and any two requests too.
    pub ws_pace: PaceRules,
    /// How long a command waits for a WebSocket that is down before going over HTTP.
    pub socket_wait: Duration,
    /// Retries of the first login / device list: (first, cap).
    pub startup_retry: (Duration, Duration),
    /// Never two logins closer than this (a refused session must not become a login loop).
    pub min_login_gap: Duration,
    /// How often the device list is read again (new, renamed and removed devices).
    pub device_list_every: Duration,
    /// The access token (valid 30 days) is refreshed ahead of time once it is this old.
    pub token_max_age: Duration,
    /// After an ack, how long to wait for the device's own push before querying its state.
    pub confirm_after: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            session: SessionTuning::default(),
            http_pace: PaceRules::cloud_http(),
            ws_pace: PaceRules {
                same_key_gap: Duration::from_millis(500),
                any_gap: Duration::from_millis(50),
                window: Duration::ZERO,
                window_max: 0,
            },
            socket_wait: Duration::from_secs(5),
            startup_retry: (Duration::from_secs(15), Duration::from_secs(1800)),
            min_login_gap: Duration::from_secs(60),
            device_list_every: Duration::from_secs(3600),
            token_max_age: Duration::from_secs(20 * 86_400),
            confirm_after: Duration::from_secs(2),
        }
    }
}

/// What a device is to the adapter.
#[derive(Debug)]
struct Device {
    hub_id: String,
    owner_apikey: String,
    profile: Profile,
    params: Map<String, Value>,
    online: bool,
    /// A fingerprint of the device spec last announced (the bridge keeps the spec; to tell whether it changed
    /// this suffices).
    spec_print: u64,
    /// Whether the spec offers `timers` commands.
    has_timers: bool,
    /// Parameter updates received (to know whether a confirmed command was followed by a push).
    updates: u64,
}

/// Results of background tasks, back to the adapter's loop.
#[derive(Debug)]
enum Internal {
    Params { deviceid: String, params: Map<String, Value> },
    Online { deviceid: String, online: bool },
    Confirmed { deviceid: String, updates_before: u64 },
    CheckConfirmed { deviceid: String, updates_before: u64 },
    DeviceList(Result<Vec<CloudDevice>, CloudError>),
}

/// What command tasks share.
struct Ctx {
    auth: Arc<Auth>,
    http: Arc<Http>,
    ws: Arc<WsClient>,
    command_timeout: Duration,
    tuning: Tuning,
    internal: mpsc::Sender<Internal>,
}

/// The account's credentials and session as configured.
fn credentials(cfg: &EwelinkConfig) -> (Option<Credentials>, Option<Tokens>) {
    let country_code = cfg.country_code.clone().unwrap_or_else(|| default_country_code(cfg.region).to_owned());
    let login = match (&cfg.email, &cfg.phone) {
        (Some(e), _) => Some(LoginId::Email(e.clone())),
        (None, Some(p)) => Some(LoginId::Phone(p.clone())),
        _ => None,
    };
    let creds = match (login, &cfg.password) {
        (Some(login), Some(password)) => Some(Credentials { login, password: password.clone(), country_code }),
        _ => None,
    };
    let session = cfg.access_token.as_ref().map(|at| Tokens {
        at: at.clone(),
        rt: cfg.refresh_token.clone(),
        apikey: cfg.api_key.clone().unwrap_or_default(),
        region: cfg.region,
    });
    (creds, session)
}

/// The country code sent at login when none is configured.
fn default_country_code(region: Region) -> &'static str {
    match region {
        Region::Cn => "+86",
        Region::As => "+65",
        Region::Us => "+1",
        Region::Eu => "+49",
    }
}

/// Runs one account until `shutdown` is cancelled.
pub async fn run(
    cfg: EwelinkConfig,
    state_file: PathBuf,
    mut hub: HubHandle,
    shutdown: CancellationToken,
    tuning: Tuning,
) {
    let app_secret = cfg.app_secret.clone().unwrap_or_else(|| Secret::new(""));
    let http =
        match Http::new(cfg.api, cfg.region, cfg.base_url.clone(), cfg.app_id.clone(), app_secret, tuning.http_pace) {
            Ok(h) => Arc::new(h),
            Err(e) => {
                let reason = format!("cannot start the eWeLink client: {e}");
                let _ = hub.events.problem(None, reason.clone()).await;
                answer_until_shutdown(&mut hub, &shutdown, &reason).await;
                return;
            }
        };
    let (creds, session) = credentials(&cfg);
    let auth = Arc::new(Auth::new(http.clone(), creds, session, state_file, tuning.min_login_gap));
    let (internal_tx, internal_rx) = mpsc::channel(1024);
    let ctx = Arc::new(Ctx {
        auth,
        http,
        ws: Arc::new(WsClient::new(tuning.ws_pace)),
        command_timeout: Duration::from_secs(cfg.command_timeout_s.max(1)),
        tuning,
        internal: internal_tx,
    });
    let mut adapter = Adapter { ctx, events: hub.events.clone(), devices: HashMap::new(), last_list_request: None };
    if adapter.start(&mut hub, &shutdown).await.is_err() {
        return;
    }
    adapter.serve(hub, internal_rx, shutdown).await;
}

/// Answers every command with `Unavailable` until shutdown (the adapter cannot work at all).
async fn answer_until_shutdown(hub: &mut HubHandle, shutdown: &CancellationToken, reason: &str) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            cmd = hub.commands.recv() => match cmd {
                Some(cmd) => cmd.reply.fail(CommandError::Unavailable(reason.to_owned())),
                None => return,
            },
        }
    }
}

struct Adapter {
    ctx: Arc<Ctx>,
    events: HubEvents,
    /// By cloud device id.
    devices: HashMap<String, Device>,
    last_list_request: Option<Instant>,
}

impl Adapter {
    /// Logs in and reads the device list, retrying with backoff; commands meanwhile are refused.
    async fn start(&mut self, hub: &mut HubHandle, shutdown: &CancellationToken) -> Result<(), BridgeGone> {
        let t = &self.ctx.tuning;
        let mut retry = Backoff::new(t.startup_retry.0, t.startup_retry.1);
        // Errors only the user can fix (wrong password, app id refused) are retried much more slowly.
        let mut needs_user = Backoff::new(t.session.needs_user.0, t.session.needs_user.1);
        loop {
            let result = self.fetch_devices().await;
            let error = match result {
                Ok(list) => {
                    if list.is_empty() {
                        let hint = "the account has no devices, or their brand is not linked to your app_id \
                                    (the cloud returns an empty list then; ask CoolKit to authorise it)";
                        self.events.problem(None, hint).await?;
                    }
                    self.reconcile(list).await?;
                    return Ok(());
                }
                Err(e) => e,
            };
            let delay = if error.needs_user() { needs_user.next_delay() } else { retry.next_delay() };
            tracing::error!(error = %error, retry_in_s = delay.as_secs(), "cannot reach the eWeLink account");
            let reason = format!("eWeLink: {error}");
            self.events.problem(None, reason.clone()).await?;
            self.events.link(false, Some(reason.clone())).await?;
            let until = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(BridgeGone),
                    _ = tokio::time::sleep_until(until) => break,
                    cmd = hub.commands.recv() => match cmd {
                        Some(cmd) => cmd.reply.fail(CommandError::Unavailable(reason.clone())),
                        None => return Err(BridgeGone),
                    },
                }
            }
        }
    }

    async fn fetch_devices(&self) -> Result<Vec<CloudDevice>, CloudError> {
        let http = self.ctx.http.clone();
        self.ctx
            .auth
            .with_tokens(|t| {
                let http = http.clone();
                async move { http.devices(&t.at).await }
            })
            .await
    }

    /// Runs the socket supervisor and serves events and commands until shutdown.
    async fn serve(mut self, mut hub: HubHandle, mut internal: mpsc::Receiver<Internal>, shutdown: CancellationToken) {
        let (ws_tx, mut ws_rx) = mpsc::channel(1024);
        let supervisor_stop = shutdown.child_token();
        let supervisor = tokio::spawn(session::supervise(
            self.ctx.auth.clone(),
            self.ctx.ws.clone(),
            ws_tx,
            self.ctx.tuning.session.clone(),
            supervisor_stop.clone(),
        ));
        let mut list_tick = tokio::time::interval_at(
            Instant::now() + self.ctx.tuning.device_list_every,
            self.ctx.tuning.device_list_every,
        );
        let mut token_tick = tokio::time::interval(Duration::from_secs(3600));
        token_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result: Result<(), BridgeGone> = async {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    cmd = hub.commands.recv() => match cmd {
                        Some(cmd) => self.on_command(cmd),
                        None => return Err(BridgeGone),
                    },
                    Some(event) = ws_rx.recv() => self.on_ws(event).await?,
                    Some(msg) = internal.recv() => self.on_internal(msg).await?,
                    _ = list_tick.tick() => self.request_device_list(),
                    _ = token_tick.tick() => {
                        let auth = self.ctx.auth.clone();
                        let max_age = self.ctx.tuning.token_max_age;
                        tokio::spawn(async move {
                            if let Err(e) = auth.refresh_if_older_than(max_age).await {
                                tracing::warn!(error = %e, "cannot refresh the eWeLink access token ahead of time");
                            }
                        });
                    }
                }
            }
        }
        .await;
        if result.is_err() {
            tracing::debug!("the bridge stopped; the eWeLink adapter stops");
        }
        supervisor_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), supervisor).await;
    }

    async fn on_ws(&mut self, event: WsEvent) -> Result<(), BridgeGone> {
        match event {
            WsEvent::Connected => {
                self.events.link(true, None).await?;
                self.query_all();
            }
            WsEvent::Disconnected { reason } => self.events.link(false, Some(reason)).await?,
            WsEvent::Problem { reason } => self.events.problem(None, format!("eWeLink: {reason}")).await?,
            WsEvent::Params { deviceid, params } => self.on_params(&deviceid, params).await?,
            WsEvent::Online { deviceid, online } => self.set_online(&deviceid, online).await?,
        }
        Ok(())
    }

    async fn on_internal(&mut self, msg: Internal) -> Result<(), BridgeGone> {
        match msg {
            Internal::Params { deviceid, params } => self.on_params(&deviceid, params).await?,
            Internal::Online { deviceid, online } => self.set_online(&deviceid, online).await?,
            Internal::Confirmed { deviceid, updates_before } => {
                let tx = self.ctx.internal.clone();
                let wait = self.ctx.tuning.confirm_after;
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(Internal::CheckConfirmed { deviceid, updates_before }).await;
                });
            }
            Internal::CheckConfirmed { deviceid, updates_before } => {
                if let Some(d) = self.devices.get(&deviceid)
                    && d.updates == updates_before
                {
                    // The device did not push its new state: ask for it.
                    self.query_one(&deviceid);
                }
            }
            Internal::DeviceList(Ok(list)) => self.reconcile(list).await?,
            Internal::DeviceList(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the eWeLink device list; keeping the known devices");
            }
        }
        Ok(())
    }

    /// New parameters for a device (a push, or a query's answer).
    async fn on_params(&mut self, deviceid: &str, params: Map<String, Value>) -> Result<(), BridgeGone> {
        let Some(d) = self.devices.get_mut(deviceid) else {
            tracing::info!(device = %deviceid, "an update from a device not in the list; reading the list again");
            self.request_device_list();
            return Ok(());
        };
        devices::merge_params(&mut d.params, &params);
        d.updates += 1;
        let (hub_id, state, came_online) = (d.hub_id.clone(), devices::state(&d.profile, &d.params), !d.online);
        d.online = true;
        if came_online {
            self.events.availability(&hub_id, true).await?;
        }
        self.events.state(&hub_id, state).await
    }

    async fn set_online(&mut self, deviceid: &str, online: bool) -> Result<(), BridgeGone> {
        let Some(d) = self.devices.get_mut(deviceid) else { return Ok(()) };
        if d.online != online {
            tracing::info!(device = %deviceid, online, "eWeLink device availability changed");
        }
        d.online = online;
        let hub_id = d.hub_id.clone();
        self.events.availability(&hub_id, online).await
    }

    /// Reads the device list in the background (at most once a minute when asked by unknown pushes).
    fn request_device_list(&mut self) {
        if self.last_list_request.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        self.last_list_request = Some(Instant::now());
        let (auth, http, tx) = (self.ctx.auth.clone(), self.ctx.http.clone(), self.ctx.internal.clone());
        tokio::spawn(async move {
            let list = auth
                .with_tokens(|t| {
                    let http = http.clone();
                    async move { http.devices(&t.at).await }
                })
                .await;
            let _ = tx.send(Internal::DeviceList(list)).await;
        });
    }

    /// Brings the known devices in line with the cloud's list: announces new or changed ones, removes gone ones.
    async fn reconcile(&mut self, list: Vec<CloudDevice>) -> Result<(), BridgeGone> {
        if list.is_empty() && !self.devices.is_empty() {
            tracing::warn!("the eWeLink device list came back empty; keeping the known devices");
            return Ok(());
        }
        let own = self.ctx.auth.tokens().await.map(|t| t.apikey).unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        for cloud in list {
            seen.insert(cloud.deviceid.clone());
            let profile = Profile::of(&cloud);
            let spec = devices::spec(&cloud, &profile, &own);
            let owner = if cloud.apikey.is_empty() { own.clone() } else { cloud.apikey.clone() };
            let id = cloud.deviceid.clone();
            let spec_print = spec_fingerprint(&spec);
            let has_timers = spec.extra_commands.iter().any(|k| k == "timers");
            let announce = match self.devices.get_mut(&id) {
                Some(d) => {
                    devices::merge_params(&mut d.params, &cloud.params);
                    d.online = cloud.online;
                    d.owner_apikey = owner;
                    d.profile = profile;
                    let changed = d.spec_print != spec_print;
                    d.spec_print = spec_print;
                    d.has_timers = has_timers;
                    changed
                }
                None => {
                    let hub_id = spec.id.clone();
                    let device = Device {
                        hub_id,
                        owner_apikey: owner,
                        profile,
                        params: cloud.params,
                        online: cloud.online,
                        spec_print,
                        has_timers,
                        updates: 0,
                    };
                    self.devices.insert(id.clone(), device);
                    true
                }
            };
            if announce {
                self.events.device(spec).await?;
            }
            let Some(d) = self.devices.get(&id) else { continue };
            self.events.availability(&d.hub_id, d.online).await?;
            self.events.state(&d.hub_id, devices::state(&d.profile, &d.params)).await?;
        }
        let gone: Vec<String> = self.devices.keys().filter(|id| !seen.contains(*id)).cloned().collect();
        for id in gone {
            if let Some(d) = self.devices.remove(&id) {
                tracing::info!(device = %id, "an eWeLink device left the account");
                self.events.send(crate::hub::HubEvent::DeviceRemoved { device: d.hub_id }).await?;
            }
        }
        Ok(())
    }

    /// After a (re)connection: `query` every device, paced, so states are fresh.
    fn query_all(&self) {
        let targets: Vec<(String, String)> =
            self.devices.iter().map(|(id, d)| (id.clone(), d.owner_apikey.clone())).collect();
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            for (deviceid, owner) in targets {
                if !ctx.ws.is_connected() {
                    return;
                }
                // Sequential: each query waits for its answer (or timeout), which paces the burst.
                query_device(&ctx, deviceid, owner).await;
            }
        });
    }

    fn query_one(&self, deviceid: &str) {
        let Some(d) = self.devices.get(deviceid) else { return };
        let (ctx, id, owner) = (self.ctx.clone(), deviceid.to_owned(), d.owner_apikey.clone());
        tokio::spawn(async move {
            if ctx.ws.is_connected() {
                query_device(&ctx, id, owner).await;
            } else {
                let http = ctx.http.clone();
                let result = ctx
                    .auth
                    .with_tokens(|t| {
                        let (http, id) = (http.clone(), id.clone());
                        async move { http.status(&t.at, &id, &[]).await }
                    })
                    .await;
                match result {
                    Ok(params) if !params.is_empty() => {
                        let _ = ctx.internal.send(Internal::Params { deviceid: id, params }).await;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(device = %id, error = %e, "cannot read the device's state over HTTP"),
                }
            }
        });
    }

    /// Turns a command into the device's parameters and delivers it in the background.
    fn on_command(&mut self, cmd: Command) {
        let Some(deviceid) = cmd.device.strip_prefix("ewelink_").map(str::to_owned) else {
            return cmd.reply.fail(CommandError::Invalid(format!("{} is not an eWeLink device", cmd.device)));
        };
        let Some(d) = self.devices.get(&deviceid) else {
            return cmd.reply.fail(CommandError::Invalid(format!("no eWeLink device {deviceid} on this account")));
        };
        let params = match command_params(d, &cmd) {
            Ok(p) => p,
            Err(reason) => {
                tracing::info!(device = %deviceid, command = cmd.id, %reason, "refused an invalid command");
                return cmd.reply.fail(CommandError::Invalid(reason));
            }
        };
        let target = Target { deviceid, owner_apikey: d.owner_apikey.clone(), online: d.online, updates: d.updates };
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let id = cmd.id;
            let outcome = deliver(&ctx, &target, &params).await;
            match &outcome {
                Ok(()) => {
                    tracing::debug!(device = %target.deviceid, command = id, "command confirmed");
                    let msg = Internal::Confirmed { deviceid: target.deviceid.clone(), updates_before: target.updates };
                    let _ = ctx.internal.send(msg).await;
                }
                Err(e) => tracing::warn!(device = %target.deviceid, command = id, error = %e, "command failed"),
            }
            cmd.reply.send(outcome);
        });
    }
}

struct Target {
    deviceid: String,
    owner_apikey: String,
    online: bool,
    updates: u64,
}

/// The `update` parameters for a command: entity changes through the capability table, `timers` through
/// the timer rules (whole array computed from the current one for `add` / `remove`).
fn command_params(d: &Device, cmd: &Command) -> Result<Map<String, Value>, String> {
    let (timer_changes, entity_changes): (Vec<_>, Vec<_>) =
        cmd.changes.iter().cloned().partition(|(k, _)| k == "timers");
    if cmd.op != CommandOp::Set && !entity_changes.is_empty() {
        return Err("add and remove only apply to timers".into());
    }
    let mut params =
        if entity_changes.is_empty() { Map::new() } else { devices::command(&d.profile, &d.params, &entity_changes)? };
    for (_, value) in timer_changes {
        if !d.has_timers {
            return Err("this device has no timers (shared devices and sensors cannot have them)".into());
        }
        let current: Vec<Value> = match params.get("timers").or(d.params.get("timers")) {
            Some(Value::Array(list)) => list.clone(),
            _ => Vec::new(),
        };
        let list = timers::apply(cmd.op, &current, &value, sign::now_s()).map_err(|e| format!("timers: {e}"))?;
        params.insert("timers".into(), Value::Array(list));
    }
    if params.is_empty() {
        return Err("nothing to change".into());
    }
    Ok(params)
}

/// Sends the parameters and waits for the cloud's verdict: over the WebSocket when it is up (waiting a
/// short while for it), else over HTTP.
async fn deliver(ctx: &Ctx, target: &Target, params: &Map<String, Value>) -> CommandOutcome {
    let timeout = ctx.command_timeout;
    if !ctx.ws.is_connected() {
        ctx.ws.wait_connected(ctx.tuning.socket_wait.min(timeout)).await;
    }
    if ctx.ws.is_connected() {
        let own = match ctx.auth.tokens().await {
            Ok(t) => t.apikey,
            Err(e) => return Err(CommandError::Unavailable(format!("no eWeLink session: {e}"))),
        };
        let sent = ctx.ws.update(&target.deviceid, &target.owner_apikey, &own, params, timeout).await;
        match sent {
            Ok(_) => return Ok(()),
            Err(RequestError::Refused { code: 503, .. }) => return Err(CommandError::Offline),
            Err(RequestError::Refused { code: 504, .. }) => {
                return Err(CommandError::Timeout("the device did not answer the cloud (504)".into()));
            }
            Err(RequestError::Refused { code, reason }) => {
                return Err(CommandError::Rejected(format!("the cloud refused it (error {code}: {reason})")));
            }
            Err(RequestError::Timeout(d)) => {
                return Err(CommandError::Timeout(format!("no confirmation from the cloud within {}s", d.as_secs())));
            }
            Err(e @ (RequestError::NotConnected | RequestError::ConnectionLost)) => {
                tracing::info!(device = %target.deviceid, reason = %e, "sending the command over HTTP instead");
            }
        }
    }
    let http = ctx.http.clone();
    let call = ctx.auth.with_tokens(|t| {
        let http = http.clone();
        async move { http.set_status(&t.at, &target.deviceid, params).await }
    });
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(CommandError::Timeout(format!("no answer from the cloud within {}s", timeout.as_secs()))),
        Ok(Ok(())) => Ok(()),
        Ok(Err(CloudError::Device { code: 503, .. })) => Err(CommandError::Offline),
        Ok(Err(CloudError::Device { code: 504, .. })) if !target.online => Err(CommandError::Offline),
        Ok(Err(CloudError::Device { code: 504, .. })) => {
            Err(CommandError::Timeout("the device did not answer the cloud (504)".into()))
        }
        Ok(Err(CloudError::Device { code, msg })) => {
            Err(CommandError::Rejected(format!("the cloud refused it (error {code}: {msg})")))
        }
        Ok(Err(e)) => Err(CommandError::Unavailable(format!("the WebSocket is down and HTTP failed: {e}"))),
    }
}

/// Asks one device for its state and hands the answer back to the adapter.
async fn query_device(ctx: &Ctx, deviceid: String, owner: String) {
    let own = match ctx.auth.tokens().await {
        Ok(t) => t.apikey,
        Err(_) => return,
    };
    match ctx.ws.query(&deviceid, &owner, &own, &[], ctx.command_timeout).await {
        Ok(reply) => {
            if let Some(params) = reply.get("params").and_then(Value::as_object).filter(|p| !p.is_empty()) {
                let _ = ctx.internal.send(Internal::Params { deviceid, params: params.clone() }).await;
            }
        }
        Err(RequestError::Refused { code: 503, .. }) => {
            let _ = ctx.internal.send(Internal::Online { deviceid, online: false }).await;
        }
        Err(e) => tracing::debug!(device = %deviceid, error = %e, "a state query got no answer"),
    }
}

/// A 64-bit fingerprint of a device spec, to tell whether it changed since it was announced.
fn spec_fingerprint(spec: &DeviceSpec) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    spec.hash(&mut hasher);
    hasher.finish()
}
