//! The HTTP client of one iKuai router, exactly as the API document says: `POST /Action/login` with a JSON
//! body `{username, passwd: md5hex(pw), pass: base64("salt_11" + md5hex(pw))}` gives a `sess_key` cookie;
//! `POST /Action/call` with `Cookie: username=<u>; login=1; sess_key=<k>` and
//! `{func_name, action: "show", param: {TYPE, ...}}` answers `Data`.
//!
//! The envelope is detected by its keys on every answer: firmware 3.x `Result`/`ErrMsg`/`Data`
//! (success 10000 / 30000, expired session 10014), firmware 4.x `code`/`message`/`results` (success 0,
//! expired session 1008). An expired session is renewed and the call retried once, transparently.
//! Every request has a timeout and at most [`MAX_IN_FLIGHT`] requests are in flight per router (weak routers
//! time out under concurrent calls). Certificates are checked unless the router's `insecure_tls` is set.
//!
//! Knows nothing of polling, entities or MQTT; retries beyond the one re-login belong to the poller.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, Semaphore};

use crate::config::IkuaiConfig;

/// Requests in flight at most per router.
pub const MAX_IN_FLIGHT: usize = 2;

/// Largest answer read from a router (a page of 1000 LAN clients is about 1 MiB); a larger one is refused
/// without being read whole.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Why a login or a call failed. Every message names the router.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The router refused the credentials (or answered without a session cookie).
    #[error(
        "router `{router}`: login as `{user}` refused ({reason}); check the username and password configured for this router"
    )]
    LoginRefused { router: String, user: String, reason: String },
    /// The router's certificate was not accepted.
    #[error(
        "router `{router}`: certificate not accepted ({detail}); use http://, give the router a valid certificate, or set insecure_tls = true for this router"
    )]
    Certificate { router: String, detail: String },
    #[error("router `{router}` ({url}) did not answer within {timeout_s} s")]
    Timeout { router: String, url: String, timeout_s: u64 },
    #[error("router `{router}` ({url}) is unreachable: {detail}")]
    Unreachable { router: String, url: String, detail: String },
    #[error("router `{router}`: HTTP {status} from {path}")]
    Http { router: String, path: String, status: u16 },
    #[error("router `{router}`: unreadable answer from {path}: {detail}")]
    Malformed { router: String, path: String, detail: String },
    /// The router answered the call with an error code.
    #[error("router `{router}`: {func} failed ({code}: {message})")]
    Api { router: String, func: String, code: i64, message: String },
    /// The session was refused again right after logging in.
    #[error("router `{router}`: the session was refused right after a successful login")]
    SessionRejected { router: String },
}

impl ClientError {
    /// A failure of the login itself (credentials), as opposed to the network or the router's health.
    pub fn is_login_refused(&self) -> bool {
        matches!(self, ClientError::LoginRefused { .. })
    }
}

/// Which envelope the router answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// `Result` / `ErrMsg` / `Data` (firmware 3.x, the document).
    V3,
    /// `code` / `message` / `results` (firmware 4.x).
    V4,
}

/// An answer, its envelope taken off.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Ok { envelope: Envelope, data: Map<String, Value> },
    Expired,
    Failed { code: i64, message: String },
}

const V3_LOGIN_OK: i64 = 10000;
const V3_CALL_OK: i64 = 30000;
const V3_EXPIRED: i64 = 10014;
const V4_OK: i64 = 0;
const V4_EXPIRED: i64 = 1008;

/// Reads an answer's envelope by its keys. The data is taken out of `body`, not copied (a page of clients
/// is megabytes).
fn take_envelope(mut body: Value, ok_code: i64) -> Option<Answer> {
    let obj = body.as_object_mut()?;
    let code_of = |v: Option<&Value>| -> Option<i64> {
        match v? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    // The router's own words end up in logs and events: cut, whatever it sends.
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().chars().take(200).collect::<String>();
    let (envelope, code, message, data_key, ok, expired) = if obj.contains_key("Result") {
        (Envelope::V3, code_of(obj.get("Result"))?, text(obj.get("ErrMsg")), "Data", ok_code, V3_EXPIRED)
    } else if obj.contains_key("code") {
        (Envelope::V4, code_of(obj.get("code"))?, text(obj.get("message")), "results", V4_OK, V4_EXPIRED)
    } else {
        return None;
    };
    Some(if code == ok {
        let data = match obj.remove(data_key) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Answer::Ok { envelope, data }
    } else if code == expired {
        Answer::Expired
    } else {
        Answer::Failed { code, message }
    })
}

#[cfg(test)]
fn unwrap_envelope(body: &Value, ok_code: i64) -> Option<Answer> {
    take_envelope(body.clone(), ok_code)
}

/// md5 of the password in lower-case hex, the document's `passwd`.
pub fn passwd_hash(password: &str) -> String {
    Md5::digest(password.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The document's `pass`: base64 of `"salt_11"` followed by `passwd`.
pub fn pass_field(passwd: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("salt_11{passwd}"))
}

/// The session and the outcome of the last login.
#[derive(Default)]
struct Session {
    key: Option<String>,
    finished: u64,
    last_error: Option<ClientError>,
}

/// One router's HTTP client. Cheap to share behind an `Arc`; calls may run concurrently (at most
/// [`MAX_IN_FLIGHT`] reach the router at once).
pub struct Client {
    router: String,
    base: url::Url,
    username: String,
    passwd: String,
    pass: String,
    timeout: Duration,
    http: reqwest::Client,
    session: Mutex<Session>,
    /// Logins finished (mirror of `Session::finished`, readable without the lock).
    logins_finished: AtomicU64,
    permits: Semaphore,
    logins: AtomicU64,
    envelope: std::sync::Mutex<Option<Envelope>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("router", &self.router).field("url", &self.base.as_str()).finish()
    }
}

impl Client {
    /// A client for the router `cfg` describes (no request is made yet).
    pub fn new(cfg: &IkuaiConfig) -> Result<Client, String> {
        let password = cfg.password.as_ref().map(|p| p.expose()).unwrap_or_default();
        let mut base = url::Url::parse(&cfg.url).map_err(|e| format!("ikuai `{}`: url: {e}", cfg.id))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        // The application installs it at start-up too; tests and embedders may build a client first.
        crate::install_crypto_provider();
        let timeout = Duration::from_secs(cfg.timeout_s.max(1));
        let mut http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .no_proxy()
            .user_agent(concat!("hub2mqtt/", env!("CARGO_PKG_VERSION")));
        if cfg.insecure_tls {
            http = http.danger_accept_invalid_certs(true);
        }
        let http = http.build().map_err(|e| format!("ikuai `{}`: HTTP client: {e}", cfg.id))?;
        let passwd = passwd_hash(password);
        let pass = pass_field(&passwd);
        // The hashes are as good as the password to anyone reading a log.
        crate::secret::register(&passwd);
        crate::secret::register(&pass);
        Ok(Client {
            router: cfg.id.clone(),
            base,
            username: cfg.username.clone(),
            passwd,
            pass,
            timeout,
            http,
            session: Mutex::new(Session::default()),
            logins_finished: AtomicU64::new(0),
            permits: Semaphore::new(MAX_IN_FLIGHT),
            logins: AtomicU64::new(0),
            envelope: std::sync::Mutex::new(None),
        })
    }

    pub fn router(&self) -> &str {
        &self.router
    }

    /// Login attempts made so far (successful or not).
    pub fn login_attempts(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// The envelope of the router's last answer, once it has answered.
    pub fn envelope(&self) -> Option<Envelope> {
        *self.envelope.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the session, so that the next call logs in first.
    pub async fn forget_session(&self) {
        self.session.lock().await.key = None;
    }

    /// Logs in now (replacing any session).
    pub async fn login(&self) -> Result<(), ClientError> {
        let _permit = self.permits.acquire().await;
        let mut session = self.session.lock().await;
        self.login_locked(&mut session).await.map(|_| ())
    }

    async fn login_locked(&self, session: &mut Session) -> Result<String, ClientError> {
        session.key = None;
        let outcome = self.post_login().await;
        session.finished += 1;
        self.logins_finished.store(session.finished, Ordering::SeqCst);
        match &outcome {
            Ok(key) => {
                session.key = Some(key.clone());
                session.last_error = None;
            }
            Err(e) => session.last_error = Some(e.clone()),
        }
        outcome
    }

    /// `func_name` with `action: "show"` and `param: {TYPE: types joined by ",", ...extra}`; the `Data`
    /// (or 4.x `results`) object. Logs in first when there is no session, and again (once) when the
    /// router says the session expired.
    pub async fn call(
        &self,
        func: &str,
        types: &[&str],
        extra: &[(&str, Value)],
    ) -> Result<Map<String, Value>, ClientError> {
        let mut param = Map::new();
        param.insert("TYPE".into(), Value::String(types.join(",")));
        for (k, v) in extra {
            param.insert((*k).to_owned(), v.clone());
        }
        let body = json!({ "func_name": func, "action": "show", "param": param });
        // Before queueing: a login that fails while this call waits is this call's answer too.
        let logins_seen = self.logins_finished.load(Ordering::SeqCst);
        let _permit = self.permits.acquire().await;
        let key = self.session_key(None, logins_seen).await?;
        match self.post_call(func, &key, &body).await? {
            Some(data) => Ok(data),
            None => {
                tracing::debug!(router = %self.router, func, "session expired; logging in again");
                let logins_seen = self.logins_finished.load(Ordering::SeqCst);
                let key = self.session_key(Some(&key), logins_seen).await?;
                self.post_call(func, &key, &body)
                    .await?
                    .ok_or_else(|| ClientError::SessionRejected { router: self.router.clone() })
            }
        }
    }

    /// The current session key, logging in when there is none or when it is `stale` (a key the router
    /// just refused; another call may already have replaced it). Calls waiting while another one logs in
    /// share its outcome: a refused login is tried once, not once per waiting call (`logins_seen` is the
    /// number of logins finished when the caller started waiting).
    async fn session_key(&self, stale: Option<&str>, logins_seen: u64) -> Result<String, ClientError> {
        let mut session = self.session.lock().await;
        if let Some(key) = session.key.as_deref()
            && Some(key) != stale
        {
            return Ok(key.to_owned());
        }
        if session.finished > logins_seen
            && let Some(e) = &session.last_error
        {
            return Err(e.clone());
        }
        self.login_locked(&mut session).await
    }

    fn url(&self, path: &str) -> url::Url {
        // `path` is one of two constants; joining them to a parsed base cannot fail.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    fn note_envelope(&self, envelope: Envelope) {
        *self.envelope.lock().unwrap_or_else(|e| e.into_inner()) = Some(envelope);
    }

    async fn post_login(&self) -> Result<String, ClientError> {
        const PATH: &str = "Action/login";
        self.logins.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "username": self.username, "passwd": self.passwd, "pass": self.pass });
        let response = self.http.post(self.url(PATH)).json(&body).send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let cookie =
            response.headers().get_all(reqwest::header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(
                |v| {
                    let first = v.split(';').next()?.trim();
                    let (name, value) = first.split_once('=')?;
                    (name.trim() == "sess_key" && !value.trim().is_empty()).then(|| value.trim().to_owned())
                },
            );
        if let Some(key) = &cookie {
            crate::secret::register(key);
        }
        let body = self.read_body(PATH, response, status).await?;
        let refused = |reason: String| ClientError::LoginRefused {
            router: self.router.clone(),
            user: self.username.clone(),
            reason,
        };
        match take_envelope(body, V3_LOGIN_OK) {
            Some(Answer::Ok { envelope, .. }) => {
                self.note_envelope(envelope);
                cookie.ok_or_else(|| refused("the router answered without a sess_key cookie".into()))
            }
            Some(Answer::Failed { code, message }) => Err(refused(format!("the router said {code}: {message}"))),
            Some(Answer::Expired) => Err(refused("the router said the session expired".into())),
            None => Err(self.malformed(PATH, "neither Result nor code in the answer")),
        }
    }

    /// `Some(data)`, or `None` when the router says the session expired.
    async fn post_call(&self, func: &str, key: &str, body: &Value) -> Result<Option<Map<String, Value>>, ClientError> {
        const PATH: &str = "Action/call";
        let cookie = format!("username={}; login=1; sess_key={key}", self.username);
        let response = self
            .http
            .post(self.url(PATH))
            .header(reqwest::header::COOKIE, cookie)
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        let body = self.read_body(PATH, response, status).await?;
        match take_envelope(body, V3_CALL_OK) {
            Some(Answer::Ok { envelope, data }) => {
                self.note_envelope(envelope);
                Ok(Some(data))
            }
            Some(Answer::Expired) => Ok(None),
            Some(Answer::Failed { code, message }) => {
                Err(ClientError::Api { router: self.router.clone(), func: func.to_owned(), code, message })
            }
            None => Err(self.malformed(PATH, "neither Result nor code in the answer")),
        }
    }

    async fn read_body(
        &self,
        path: &str,
        response: reqwest::Response,
        status: reqwest::StatusCode,
    ) -> Result<Value, ClientError> {
        if !status.is_success() {
            return Err(ClientError::Http {
                router: self.router.clone(),
                path: format!("/{path}"),
                status: status.as_u16(),
            });
        }
        let too_large =
            || self.malformed(path, &format!("the answer is larger than {} MiB; refused", MAX_ANSWER_BYTES >> 20));
        if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(too_large());
        }
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&bytes).map_err(|e| self.malformed(path, &format!("not JSON ({e})")))
    }

    fn malformed(&self, path: &str, detail: &str) -> ClientError {
        ClientError::Malformed { router: self.router.clone(), path: format!("/{path}"), detail: detail.to_owned() }
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        let router = self.router.clone();
        let url = self.base.as_str().trim_end_matches('/').to_owned();
        // The whole chain: reqwest's top-level message rarely says what went wrong.
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail = format!("{detail}: {s}");
            source = s.source();
        }
        let detail = crate::secret::redact(&detail).into_owned();
        if e.is_timeout() {
            return ClientError::Timeout { router, url, timeout_s: self.timeout.as_secs() };
        }
        let lower = detail.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("invalid peer") {
            return ClientError::Certificate { router, detail };
        }
        ClientError::Unreachable { router, url, detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_fields_follow_the_document() {
        // The document's example: passwd 572a…3b08 gives pass c2FsdF8x…YjA4.
        assert_eq!(
            pass_field("572a912b22bedddd7188688799cc3b08"),
            "c2FsdF8xMTU3MmE5MTJiMjJiZWRkZGQ3MTg4Njg4Nzk5Y2MzYjA4"
        );
        assert_eq!(passwd_hash("admin"), "21232f297a57a5a743894a0e4a801fc3");
    }

    #[test]
    fn envelopes_are_told_apart_by_their_keys() {
        let v3 = json!({"Result": 30000, "ErrMsg": "Success", "Data": {"a": 1}});
        assert_eq!(
            unwrap_envelope(&v3, V3_CALL_OK),
            Some(Answer::Ok { envelope: Envelope::V3, data: json!({"a": 1}).as_object().cloned().unwrap() })
        );
        let v4 = json!({"code": 0, "message": "Success", "results": {"a": 1}});
        assert!(matches!(unwrap_envelope(&v4, V3_CALL_OK), Some(Answer::Ok { envelope: Envelope::V4, .. })));
        assert_eq!(
            unwrap_envelope(&json!({"Result": 10014, "ErrMsg": "no login authentication"}), V3_CALL_OK),
            Some(Answer::Expired)
        );
        assert_eq!(unwrap_envelope(&json!({"code": "1008", "message": "expired"}), V3_CALL_OK), Some(Answer::Expired));
        assert_eq!(
            unwrap_envelope(&json!({"Result": 10001, "ErrMsg": "Post data error"}), V3_CALL_OK),
            Some(Answer::Failed { code: 10001, message: "Post data error".into() })
        );
        // Login success is 10000, not 30000.
        assert!(matches!(
            unwrap_envelope(&json!({"Result": 10000, "ErrMsg": "Success"}), V3_LOGIN_OK),
            Some(Answer::Ok { .. })
        ));
        assert_eq!(unwrap_envelope(&json!({"hello": 1}), V3_CALL_OK), None);
        assert_eq!(unwrap_envelope(&json!([1]), V3_CALL_OK), None);
    }
}
