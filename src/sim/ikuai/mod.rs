//! A simulated iKuai router, strict about the API document (`ikuai-api.md`): `POST /Action/login` with
//! a JSON body `{username, passwd: md5hex(pw), pass: base64("salt_11" + md5hex(pw))}` answers
//! `Result 10000` and a `sess_key` cookie (32 hex digits); `POST /Action/call` needs that cookie and
//! answers `Result 10014` without a valid session; a body that is not JSON gets `Result 10001
//! "Post data error"`. Every `func_name`/`TYPE` of the document is served with the document's example
//! data (several TYPEs in one call merged into `Data`), counters move with time, and `limit`, `ORDER_BY`,
//! `ORDER`, `FINDS`, `KEYWORDS` are honoured on client lists.
//!
//! The document has no failure examples; this simulator answers a refused login with
//! `{"Result":10001,"ErrMsg":"wrong username or password"}` and no cookie, and an unknown function or
//! TYPE with `Result 10001`. In the firmware 4.x envelope ([`Envelope::V4`]) success is `code 0`, an
//! expired session `code 1008`, a refused login `code 1001`.
//!
//! Knobs for tests, benchmarks, fault soaks and `hub2mqtt demo`: expire sessions, change the password,
//! faults ([`Fault`]: slow, hanging, HTTP 500, malformed JSON), the 4.x envelope, N LAN clients, clients
//! coming and going, going down and coming back on the same port, patching any field, and counters of
//! logins and calls ([`SimStats`]). Knows nothing of the bridge or of hub2mqtt's client.

mod data;
pub mod examples;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use data::{FUNCS, SimClient};
use data::{RouterData, limit_is_valid};

/// Which response envelope the router speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Envelope {
    /// Firmware 3.x, as in the document: `{"Result":30000,"ErrMsg":"Success","Data":{...}}`.
    #[default]
    V3,
    /// Firmware 4.x: `{"code":0,"message":"Success","results":{...}}`, expired session `code 1008`.
    V4,
}

/// A fault applied to every request (login and calls) until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer after this delay.
    Delay(Duration),
    /// Never answer (the connection stays open until the client gives up or the router goes down).
    Hang,
    /// `500 Internal Server Error`.
    Http500,
    /// A truncated JSON body with status 200.
    MalformedJson,
}

/// How the simulated router starts.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub username: String,
    pub password: String,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Serve https with a self-signed certificate (for 127.0.0.1 and localhost).
    pub tls: bool,
    pub envelope: Envelope,
    /// Sessions unused for this long expire (`None`: never, unless [`SimRouter::expire_sessions`]).
    pub session_ttl: Option<Duration>,
    /// LAN clients: `None` for the document's two example clients, `Some(n)` for `n` (the document's two
    /// first, then synthetic ones).
    pub clients: Option<usize>,
    /// One client at a time is absent, a different one every period.
    pub client_churn: Option<Duration>,
    /// Rates, CPU, memory and connections drift; the online-user count follows the clients present.
    pub animate: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            username: "admin".into(),
            password: "admin".into(),
            port: 0,
            tls: false,
            envelope: Envelope::V3,
            session_ttl: None,
            clients: None,
            client_churn: None,
            animate: false,
        }
    }
}

impl SimOptions {
    /// What `hub2mqtt demo` shows: moving values, a dozen clients coming and going.
    pub fn demo() -> Self {
        SimOptions { animate: true, clients: Some(12), client_churn: Some(Duration::from_secs(45)), ..Self::default() }
    }
}

/// Counters of what the router has seen since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Every HTTP request, whatever its outcome.
    pub requests: u64,
    pub logins_ok: u64,
    pub logins_failed: u64,
    /// `/Action/call` answered with data.
    pub calls_ok: u64,
    /// `/Action/call` refused for want of a valid session (10014 / 1008).
    pub calls_unauthenticated: u64,
    /// Requests refused as malformed (10001).
    pub bad_requests: u64,
    /// The most requests ever being handled at the same time.
    pub max_in_flight: u64,
    /// Successful calls by `func_name`.
    pub calls_by_func: HashMap<String, u64>,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    calls_ok: AtomicU64,
    calls_unauthenticated: AtomicU64,
    bad_requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// A value patched into a `(func_name, TYPE)` answer at a JSON pointer.
#[derive(Debug, Clone)]
struct Patch {
    func: String,
    ty: String,
    pointer: String,
    value: Value,
}

struct Shared {
    username: String,
    password: Mutex<String>,
    sessions: Mutex<HashMap<String, Instant>>,
    session_ttl: Mutex<Option<Duration>>,
    envelope: Mutex<Envelope>,
    fault: Mutex<Option<Fault>>,
    data: Mutex<RouterData>,
    patches: Mutex<Vec<Patch>>,
    counters: Counters,
    calls_by_func: Mutex<HashMap<String, u64>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not take the simulator down).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sessions kept at most; the oldest go first (a login storm must not grow memory without bound).
const MAX_SESSIONS: usize = 256;

struct Server {
    kill: CancellationToken,
    task: JoinHandle<()>,
}

/// A running simulated router. Dropping it stops it.
pub struct SimRouter {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: bool,
    server: tokio::sync::Mutex<Option<Server>>,
}

impl SimRouter {
    /// Starts the router on 127.0.0.1.
    pub async fn start(options: SimOptions) -> std::io::Result<SimRouter> {
        let tls = if options.tls { Some(tls_acceptor()?) } else { None };
        let clients = SimClient::population(options.clients.unwrap_or(2));
        let shared = Arc::new(Shared {
            username: options.username,
            password: Mutex::new(options.password),
            sessions: Mutex::new(HashMap::new()),
            session_ttl: Mutex::new(options.session_ttl),
            envelope: Mutex::new(options.envelope),
            fault: Mutex::new(None),
            data: Mutex::new(RouterData::new(options.animate, clients, options.client_churn)),
            patches: Mutex::new(Vec::new()),
            counters: Counters::default(),
            calls_by_func: Mutex::new(HashMap::new()),
            tls,
        });
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], options.port)))?;
        let addr = listener.local_addr()?;
        let server = spawn_server(listener, shared.clone());
        Ok(SimRouter { shared, addr, tls: options.tls, server: tokio::sync::Mutex::new(Some(server)) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (or `https://`).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Forgets every session: the next call of each client gets `10014` (or `code 1008`).
    pub fn expire_sessions(&self) {
        lock(&self.shared.sessions).clear();
    }

    pub fn set_session_ttl(&self, ttl: Option<Duration>) {
        *lock(&self.shared.session_ttl) = ttl;
    }

    /// Changes the password the router accepts (existing sessions stay valid, as on a real router).
    pub fn set_password(&self, password: &str) {
        *lock(&self.shared.password) = password.to_owned();
    }

    pub fn set_fault(&self, fault: Option<Fault>) {
        *lock(&self.shared.fault) = fault;
    }

    pub fn set_envelope(&self, envelope: Envelope) {
        *lock(&self.shared.envelope) = envelope;
    }

    /// Replaces the LAN clients by `n` of them (the document's two first, then synthetic ones).
    pub fn set_clients(&self, n: usize) {
        lock(&self.shared.data).clients = SimClient::population(n);
    }

    pub fn add_client(&self, client: SimClient) {
        let mut data = lock(&self.shared.data);
        data.clients.retain(|c| c.mac != client.mac);
        data.clients.push(client);
    }

    /// Removes the client with this MAC (any case); whether it was there.
    pub fn remove_client(&self, mac: &str) -> bool {
        let mac = mac.to_ascii_lowercase();
        let mut data = lock(&self.shared.data);
        let before = data.clients.len();
        data.clients.retain(|c| c.mac != mac);
        data.clients.len() != before
    }

    /// The MACs of the router's clients (present or not while churning).
    pub fn client_macs(&self) -> Vec<String> {
        lock(&self.shared.data).clients.iter().map(|c| c.mac.clone()).collect()
    }

    pub fn set_client_churn(&self, period: Option<Duration>) {
        lock(&self.shared.data).client_churn = period;
    }

    pub fn set_animate(&self, animate: bool) {
        lock(&self.shared.data).animate = animate;
    }

    /// From now on, the answer to `func`/`ty` has `value` at the JSON pointer `pointer` (relative to the
    /// keys that TYPE adds to `Data`, e.g. `("homepage", "sysstat", "/sysstat/cputemp", [44])`). The last
    /// key of the pointer is created if missing. Later patches of the same place win.
    pub fn patch(&self, func: &str, ty: &str, pointer: &str, value: Value) {
        let mut patches = lock(&self.shared.patches);
        patches.retain(|p| !(p.func == func && p.ty == ty && p.pointer == pointer));
        patches.push(Patch { func: func.into(), ty: ty.into(), pointer: pointer.into(), value });
    }

    pub fn clear_patches(&self) {
        lock(&self.shared.patches).clear();
    }

    pub fn stats(&self) -> SimStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            requests: get(&c.requests),
            logins_ok: get(&c.logins_ok),
            logins_failed: get(&c.logins_failed),
            calls_ok: get(&c.calls_ok),
            calls_unauthenticated: get(&c.calls_unauthenticated),
            bad_requests: get(&c.bad_requests),
            max_in_flight: get(&c.max_in_flight),
            calls_by_func: lock(&self.shared.calls_by_func).clone(),
        }
    }

    /// Whether the router accepts connections.
    pub async fn is_up(&self) -> bool {
        self.server.lock().await.is_some()
    }

    /// The router becomes unreachable: the listener is closed (connections are refused) and every open
    /// connection is dropped, including requests in progress. Sessions survive, as on a network outage.
    pub async fn go_down(&self) {
        if let Some(server) = self.server.lock().await.take() {
            server.kill.cancel();
            let _ = server.task.await;
        }
    }

    /// The router is back on the same address.
    pub async fn come_up(&self) -> std::io::Result<()> {
        let mut server = self.server.lock().await;
        if server.is_none() {
            let listener = bind(self.addr)?;
            *server = Some(spawn_server(listener, self.shared.clone()));
        }
        Ok(())
    }

    /// Reboots the router: down, sessions lost, counters (uptime, totals) not reset in this simulator.
    pub async fn restart(&self) -> std::io::Result<()> {
        self.go_down().await;
        self.expire_sessions();
        self.come_up().await
    }

    /// Stops the router for good.
    pub async fn stop(self) {
        self.go_down().await;
    }
}

impl Drop for SimRouter {
    fn drop(&mut self) {
        if let Ok(mut server) = self.server.try_lock()
            && let Some(server) = server.take()
        {
            server.kill.cancel();
            server.task.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn tls_acceptor() -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |e: String| std::io::Error::other(format!("simulator TLS: {e}"));
    // A self-signed test certificate for 127.0.0.1 and localhost, valid for a century; its key protects
    // nothing but this simulator.
    let cert = CertificateDer::from_pem_slice(include_bytes!("sim_cert.pem")).map_err(|e| err(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("sim_key.pem")).map_err(|e| err(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| err(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn spawn_server(listener: TcpListener, shared: Arc<Shared>) -> Server {
    let kill = CancellationToken::new();
    let app =
        Router::new().route("/Action/login", post(login)).route("/Action/call", post(call)).with_state(shared.clone());
    let task = tokio::spawn(accept_loop(listener, app, shared, kill.clone()));
    Server { kill, task }
}

async fn accept_loop(listener: TcpListener, app: Router, shared: Arc<Shared>, kill: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = kill.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors or similar: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (app, kill, tls) = (app.clone(), kill.clone(), shared.tls.clone());
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! { _ = conn => {}, _ = kill.cancelled() => {} }
                }
                Some(acceptor) => {
                    let stream = tokio::select! {
                        _ = kill.cancelled() => return,
                        accepted = acceptor.accept(stream) => match accepted { Ok(s) => s, Err(_) => return },
                    };
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! { _ = conn => {}, _ = kill.cancelled() => {} }
                }
            }
        });
    }
}

/// Counts a request in flight for as long as it lives (also when a hanging request is dropped).
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn new(c: &'a Counters) -> Self {
        c.requests.fetch_add(1, Ordering::Relaxed);
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Applies the current fault; `Some(response)` when it replaces the answer.
async fn apply_fault(shared: &Shared) -> Option<Response> {
    let fault = *lock(&shared.fault);
    match fault {
        None => None,
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::Http500) => Some((StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()),
        Some(Fault::MalformedJson) => {
            Some(([(header::CONTENT_TYPE, "application/json")], "{\"Result\":30000,\"ErrMsg\":\"Succ").into_response())
        }
    }
}

fn json_response(value: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// An error answer in the router's envelope (`code4` in the 4.x one).
fn error_response(shared: &Shared, result: u32, code4: u32, message: &str) -> Response {
    match *lock(&shared.envelope) {
        Envelope::V3 => json_response(json!({ "Result": result, "ErrMsg": message })),
        Envelope::V4 => json_response(json!({ "code": code4, "message": message })),
    }
}

fn post_data_error(shared: &Shared) -> Response {
    shared.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
    error_response(shared, 10001, 1001, "Post data error")
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn login(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let _in_flight = InFlight::new(&shared.counters);
    if let Some(response) = apply_fault(&shared).await {
        return response;
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return post_data_error(&shared);
    };
    let field = |k: &str| body.get(k).and_then(Value::as_str);
    let (Some(username), Some(passwd), Some(pass)) = (field("username"), field("passwd"), field("pass")) else {
        return post_data_error(&shared);
    };
    let expected_passwd = md5_hex(&lock(&shared.password));
    let expected_pass = base64::engine::general_purpose::STANDARD.encode(format!("salt_11{expected_passwd}"));
    if username != shared.username || passwd != expected_passwd || pass != expected_pass {
        shared.counters.logins_failed.fetch_add(1, Ordering::Relaxed);
        return error_response(&shared, 10001, 1001, "wrong username or password");
    }
    shared.counters.logins_ok.fetch_add(1, Ordering::Relaxed);
    let key: String = (0..32).map(|_| char::from_digit(rand::random_range(0..16u32), 16).unwrap_or('0')).collect();
    {
        let mut sessions = lock(&shared.sessions);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(key.clone(), Instant::now());
    }
    let mut response = match *lock(&shared.envelope) {
        Envelope::V3 => json_response(json!({ "Result": 10000, "ErrMsg": "Success" })),
        Envelope::V4 => json_response(json!({ "code": 0, "message": "Success" })),
    };
    if let Ok(cookie) = HeaderValue::from_str(&format!("sess_key={key}; path=/")) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The `sess_key` of the request's cookies, if it names a live session (which it refreshes).
fn valid_session(shared: &Shared, headers: &HeaderMap) -> bool {
    let key = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "sess_key")
        .map(|(_, value)| value.trim().to_owned());
    let Some(key) = key else { return false };
    let ttl = *lock(&shared.session_ttl);
    let mut sessions = lock(&shared.sessions);
    match sessions.get_mut(&key) {
        Some(last) if ttl.is_none_or(|ttl| last.elapsed() < ttl) => {
            *last = Instant::now();
            true
        }
        Some(_) => {
            sessions.remove(&key);
            false
        }
        None => false,
    }
}

async fn call(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = InFlight::new(&shared.counters);
    if let Some(response) = apply_fault(&shared).await {
        return response;
    }
    if !valid_session(&shared, &headers) {
        shared.counters.calls_unauthenticated.fetch_add(1, Ordering::Relaxed);
        return error_response(&shared, 10014, 1008, "no login authentication");
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return post_data_error(&shared);
    };
    let func = body.get("func_name").and_then(Value::as_str);
    let action = body.get("action").and_then(Value::as_str);
    let param = body.get("param").and_then(Value::as_object);
    let (Some(func), Some("show"), Some(param)) = (func, action, param) else {
        return post_data_error(&shared);
    };
    let types: Vec<&str> = match param.get("TYPE").and_then(Value::as_str) {
        Some(t) => t.split(',').map(str::trim).filter(|t| !t.is_empty()).collect(),
        None => Vec::new(),
    };
    if types.is_empty() || !limit_is_valid(param) {
        return post_data_error(&shared);
    }
    let mut merged = Map::new();
    {
        let data = lock(&shared.data);
        let patches = lock(&shared.patches);
        for ty in &types {
            let Some(mut fragment) = data.fragment(func, ty, param) else {
                drop((data, patches));
                shared.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                return error_response(&shared, 10001, 1001, &format!("unknown func_name or TYPE: {func}/{ty}"));
            };
            for p in patches.iter().filter(|p| p.func == func && p.ty == *ty) {
                apply_patch(&mut fragment, &p.pointer, p.value.clone());
            }
            merged.extend(fragment);
        }
    }
    shared.counters.calls_ok.fetch_add(1, Ordering::Relaxed);
    *lock(&shared.calls_by_func).entry(func.to_owned()).or_default() += 1;
    match *lock(&shared.envelope) {
        Envelope::V3 => json_response(json!({ "Result": 30000, "ErrMsg": "Success", "Data": merged })),
        Envelope::V4 => json_response(json!({ "code": 0, "message": "Success", "results": merged })),
    }
}

fn apply_patch(fragment: &mut Map<String, Value>, pointer: &str, value: Value) {
    let mut root = Value::Object(std::mem::take(fragment));
    if let Some(slot) = root.pointer_mut(pointer) {
        *slot = value;
    } else if let Some((parent, last)) = pointer.rsplit_once('/')
        && let Some(Value::Object(parent)) = root.pointer_mut(parent)
    {
        parent.insert(last.replace("~1", "/").replace("~0", "~"), value);
    }
    if let Value::Object(map) = root {
        *fragment = map;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_login_hashes() {
        // The document's example: passwd is md5hex(password), pass is base64("salt_11" + passwd).
        let passwd = "572a912b22bedddd7188688799cc3b08";
        let pass = base64::engine::general_purpose::STANDARD.encode(format!("salt_11{passwd}"));
        assert_eq!(pass, "c2FsdF8xMTU3MmE5MTJiMjJiZWRkZGQ3MTg4Njg4Nzk5Y2MzYjA4");
        assert_eq!(md5_hex("admin"), "21232f297a57a5a743894a0e4a801fc3");
    }

    #[test]
    fn patches_replace_or_add() {
        let mut m = json!({"sysstat": {"cputemp": [], "memory": {"used": "47%"}}}).as_object().cloned().unwrap();
        apply_patch(&mut m, "/sysstat/cputemp", json!([44]));
        apply_patch(&mut m, "/sysstat/memory/extra", json!(1));
        apply_patch(&mut m, "/nope/deeper", json!(1));
        assert_eq!(Value::Object(m), json!({"sysstat": {"cputemp": [44], "memory": {"used": "47%", "extra": 1}}}));
    }
}
