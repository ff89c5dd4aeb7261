//! The eWeLink HTTP API, both generations behind one client: v1 exactly as `ewelink-api-v1.md` describes it
//! (`/api/...`, common parameters in the query or body), and v2 (`/v2/...`, `X-CK-Appid` / `X-CK-Nonce`
//! headers, the `{error, msg, data}` envelope). Endpoints follow the region, or `base_url` when the user
//! set one. Every call is paced per CoolKit's published limits.
//!
//! Owns request building, signing, response shapes and error codes. Knows nothing of token life cycles
//! (see `auth`), WebSockets or MQTT.

mod v1;
mod v2;

use std::sync::RwLock;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value};

use crate::config::{EwelinkApi, Region};
use crate::secret::Secret;

use super::error::CloudError;
use super::pace::{PaceRules, Pacer};
use super::sign;

/// How the user logs in.
#[derive(Debug, Clone)]
pub enum LoginId {
    Email(String),
    /// With its country code, `+8613800000000`.
    Phone(String),
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub login: LoginId,
    pub password: Secret,
    /// `+86`.
    pub country_code: String,
}

/// A session: what a login or refresh gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    pub at: Secret,
    pub rt: Option<Secret>,
    pub apikey: String,
    pub region: Region,
}

/// A device as the device list describes it, normalised across API generations.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudDevice {
    pub deviceid: String,
    pub name: String,
    pub uiid: Option<u32>,
    /// The apikey of the device's owner (differs from the account's own for shared devices).
    pub apikey: String,
    pub online: bool,
    pub params: Map<String, Value>,
    pub tags: Map<String, Value>,
    pub brand: Option<String>,
    pub model: Option<String>,
}

impl CloudDevice {
    /// Reads a device object of either generation leniently; `None` without a `deviceid`.
    pub fn from_json(v: &Value) -> Option<CloudDevice> {
        let o = v.as_object()?;
        let deviceid = o.get("deviceid")?.as_str()?.to_owned();
        let str_of = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let extra = o.get("extra");
        let uiid = [
            o.get("uiid"),
            extra.and_then(|e| e.get("uiid")),
            extra.and_then(|e| e.get("extra")).and_then(|e| e.get("uiid")),
        ]
        .into_iter()
        .flatten()
        .find_map(number_u32);
        let model = str_of(o.get("productModel"))
            .or_else(|| str_of(extra.and_then(|e| e.get("model"))))
            .or_else(|| str_of(extra.and_then(|e| e.get("extra")).and_then(|e| e.get("model"))));
        Some(CloudDevice {
            name: str_of(o.get("name")).unwrap_or_else(|| deviceid.clone()),
            deviceid,
            uiid,
            apikey: str_of(o.get("apikey")).unwrap_or_default(),
            online: o.get("online").and_then(Value::as_bool).unwrap_or(false),
            params: o.get("params").and_then(Value::as_object).cloned().unwrap_or_default(),
            tags: o.get("tags").and_then(Value::as_object).cloned().unwrap_or_default(),
            brand: str_of(o.get("brandName")),
            model,
        })
    }
}

fn number_u32(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A device group (v1 `/api/group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
}

/// Where the WebSocket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsTarget {
    pub url: String,
}

/// The HTTP client of one account.
#[derive(Debug)]
pub struct Http {
    client: reqwest::Client,
    api: EwelinkApi,
    app_id: String,
    app_secret: Secret,
    base_url: Option<String>,
    region: RwLock<Region>,
    pacer: Pacer,
}

/// Which rule turns an `error` code into a [`CloudError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Login,
    Refresh,
    /// Any call with `Authorization: Bearer`.
    Bearer,
    /// A device status call (Bearer): 503/504 are the device's.
    DeviceStatus,
}

impl Http {
    pub fn new(
        api: EwelinkApi,
        region: Region,
        base_url: Option<String>,
        app_id: String,
        app_secret: Secret,
        pace: PaceRules,
    ) -> Result<Http, CloudError> {
        // reqwest is built without a default TLS crypto provider (idempotent).
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("hub2mqtt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CloudError::Network(e.without_url().to_string()))?;
        let base_url = base_url.map(|u| u.trim_end_matches('/').to_owned()).filter(|u| !u.is_empty());
        Ok(Http { client, api, app_id, app_secret, base_url, region: RwLock::new(region), pacer: Pacer::new(pace) })
    }

    pub fn api(&self) -> EwelinkApi {
        self.api
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    pub fn region(&self) -> Region {
        *self.region.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the account's region (after a redirect, or from saved tokens).
    pub fn set_region(&self, region: Region) {
        *self.region.write().unwrap_or_else(|e| e.into_inner()) = region;
    }

    /// The root of the HTTP API for the current region (or `base_url`).
    pub fn api_root(&self) -> String {
        if let Some(base) = &self.base_url {
            return base.clone();
        }
        let r = self.region();
        match (self.api, r) {
            (EwelinkApi::V1, Region::Cn) => "https://cn-api.coolkit.cn:8080".into(),
            (EwelinkApi::V1, r) => format!("https://{}-api.coolkit.cc:8080", r.as_str()),
            (EwelinkApi::V2, Region::Cn) => "https://cn-apia.coolkit.cn".into(),
            (EwelinkApi::V2, r) => format!("https://{}-apia.coolkit.cc", r.as_str()),
        }
    }

    /// Where the WebSocket dispatch is asked.
    pub fn dispatch_url(&self) -> String {
        match (self.api, &self.base_url, self.region()) {
            (_, Some(base), _) => format!("{base}/dispatch/app"),
            (EwelinkApi::V1, None, _) => format!("{}/dispatch/app", self.api_root()),
            (EwelinkApi::V2, None, Region::Cn) => "https://cn-dispa.coolkit.cn/dispatch/app".into(),
            (EwelinkApi::V2, None, r) => format!("https://{}-dispa.coolkit.cc/dispatch/app", r.as_str()),
        }
    }

    /// The region query of v1 (region-independent host).
    fn region_query_url(&self) -> String {
        match &self.base_url {
            Some(base) => format!("{base}/api/user/region"),
            None => "https://api.coolkit.cc:8080/api/user/region".into(),
        }
    }

    /// The WebSocket URL for a dispatch answer: `wss://domain:port/api/ws` (the domain, for the certificate),
    /// or `ws://` when the HTTP root is plain `http://` (a local simulator).
    pub fn ws_url(&self, domain: &str, ip: &str, port: u16) -> String {
        let plain = self.base_url.as_deref().is_some_and(|b| b.starts_with("http://"));
        let host = if domain.is_empty() { ip } else { domain };
        format!("{}://{host}:{port}/api/ws", if plain { "ws" } else { "wss" })
    }

    /// Logs in; a region redirect is followed once (and the new region remembered).
    pub async fn login(&self, creds: &Credentials) -> Result<Tokens, CloudError> {
        let first = match self.api {
            EwelinkApi::V1 => v1::login(self, creds).await,
            EwelinkApi::V2 => v2::login(self, creds).await,
        };
        let region = match first {
            Err(CloudError::Redirect { region }) => region,
            other => return other,
        };
        let parsed = Region::parse(&region)
            .ok_or_else(|| CloudError::Protocol(format!("redirected to unknown region {region:?}")))?;
        tracing::info!(region = %region, "the eWeLink account lives in another region; following the redirect");
        self.set_region(parsed);
        let second = match self.api {
            EwelinkApi::V1 => v1::login(self, creds).await,
            EwelinkApi::V2 => v2::login(self, creds).await,
        };
        match second {
            Err(CloudError::Redirect { region }) => Err(CloudError::RedirectLoop { region }),
            other => other,
        }
    }

    /// Exchanges the refresh token for new tokens (`apikey` is kept from `current`).
    pub async fn refresh(&self, current: &Tokens) -> Result<Tokens, CloudError> {
        let rt = current.rt.as_ref().ok_or(CloudError::RefreshRefused { code: 0 })?;
        let (at, rt) = match self.api {
            EwelinkApi::V1 => v1::refresh(self, rt).await?,
            EwelinkApi::V2 => v2::refresh(self, rt).await?,
        };
        Ok(Tokens { at, rt: Some(rt), apikey: current.apikey.clone(), region: self.region() })
    }

    /// Every device of the account (own and shared).
    pub async fn devices(&self, at: &Secret) -> Result<Vec<CloudDevice>, CloudError> {
        match self.api {
            EwelinkApi::V1 => v1::devices(self, at).await,
            EwelinkApi::V2 => v2::devices(self, at).await,
        }
    }

    /// One device by id (v1 `/api/user/device/{id}`; v2 reads the device list).
    pub async fn device(&self, at: &Secret, apikey: &str, deviceid: &str) -> Result<CloudDevice, CloudError> {
        match self.api {
            EwelinkApi::V1 => v1::device(self, at, apikey, deviceid).await,
            EwelinkApi::V2 => v2::devices(self, at)
                .await?
                .into_iter()
                .find(|d| d.deviceid == deviceid)
                .ok_or(CloudError::Rejected { code: 404, msg: format!("no device {deviceid}") }),
        }
    }

    /// The account's device groups (v1 only; v2 lists groups in the thing list, which we skip).
    pub async fn groups(&self, at: &Secret, apikey: &str) -> Result<Vec<Group>, CloudError> {
        match self.api {
            EwelinkApi::V1 => v1::groups(self, at, apikey).await,
            EwelinkApi::V2 => Ok(Vec::new()),
        }
    }

    /// A device's parameters over HTTP (`names` empty = all).
    pub async fn status(&self, at: &Secret, deviceid: &str, names: &[&str]) -> Result<Map<String, Value>, CloudError> {
        match self.api {
            EwelinkApi::V1 => v1::status(self, at, deviceid, names).await,
            EwelinkApi::V2 => v2::status(self, at, deviceid, names).await,
        }
    }

    /// Changes a device's parameters over HTTP (the fallback while the WebSocket is down).
    pub async fn set_status(&self, at: &Secret, deviceid: &str, params: &Map<String, Value>) -> Result<(), CloudError> {
        match self.api {
            EwelinkApi::V1 => v1::set_status(self, at, deviceid, params).await,
            EwelinkApi::V2 => v2::set_status(self, at, deviceid, params).await,
        }
    }

    /// Asks where the WebSocket is.
    pub async fn dispatch(&self, at: &Secret) -> Result<WsTarget, CloudError> {
        let answer = match self.api {
            EwelinkApi::V1 => v1::dispatch(self, at).await?,
            EwelinkApi::V2 => v2::dispatch(self, at).await?,
        };
        let port = answer
            .get("port")
            .and_then(number_u32)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| CloudError::Protocol("dispatch without a port".into()))?;
        let domain = answer.get("domain").and_then(Value::as_str).unwrap_or("");
        let ip = answer.get("IP").and_then(Value::as_str).unwrap_or("");
        if domain.is_empty() && ip.is_empty() {
            return Err(CloudError::Protocol("dispatch without a domain or IP".into()));
        }
        Ok(WsTarget { url: self.ws_url(domain, ip, port) })
    }

    // ----- transport shared by v1 and v2 -----

    /// Sends one request and returns the HTTP status and the JSON body (`Null` for an empty body).
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), CloudError> {
        let path = url::Url::parse(url)
            .map(|u| u.path().to_owned())
            .map_err(|e| CloudError::Protocol(format!("bad URL: {e}")))?;
        let _paced = self.pacer.hold(&path).await;
        let mut req = self.client.request(method, url).header("Content-Type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req.send().await.map_err(|e| CloudError::Network(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| CloudError::Network(e.without_url().to_string()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return if (200..300).contains(&status) { Ok((status, Value::Null)) } else { Err(http_error(status)) };
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Ok((status, v)),
            Err(_) if !(200..300).contains(&status) => Err(http_error(status)),
            Err(e) => Err(CloudError::Protocol(format!("{path}: not JSON ({e})"))),
        }
    }

    /// A URL with the query parameters encoded.
    fn url_with_query(&self, url: &str, params: &[(String, String)]) -> Result<String, CloudError> {
        let mut u = url::Url::parse(url).map_err(|e| CloudError::Protocol(format!("bad URL {url}: {e}")))?;
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        Ok(u.to_string())
    }

    fn sign_header(&self, message: &[u8]) -> (&'static str, String) {
        ("Authorization", format!("Sign {}", sign::sign(self.app_secret.expose(), message)))
    }
}

fn bearer(at: &Secret) -> (&'static str, String) {
    ("Authorization", format!("Bearer {}", at.expose()))
}

fn http_error(status: u16) -> CloudError {
    match status {
        401 => CloudError::TokenInvalid,
        402 => CloudError::TokenExpired,
        412 => CloudError::Quota,
        _ => CloudError::Http { status },
    }
}

/// The `error` field as a number (it is sometimes a string); `None` when absent.
fn error_code(v: &Value) -> Option<i64> {
    match v.get("error")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok().or(Some(-1)),
        Value::Null => None,
        _ => Some(-1),
    }
}

fn message_of(v: &Value) -> String {
    ["msg", "reason", "errmsg", "info", "message"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

/// Turns a non-zero `error` into the failure it means for this kind of call.
fn classify(api: EwelinkApi, call: Call, code: i64, body: &Value) -> CloudError {
    let msg = message_of(body);
    let region = || {
        body.get("region")
            .or_else(|| body.get("data").and_then(|d| d.get("region")))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match (api, call, code) {
        (_, _, 407) => CloudError::AppIdNotAllowed,
        (_, _, 412) => CloudError::Quota,
        (EwelinkApi::V1, Call::Login, 301) | (EwelinkApi::V2, Call::Login, 10004) => {
            CloudError::Redirect { region: region().unwrap_or_default() }
        }
        (EwelinkApi::V1, Call::Login, 401) | (EwelinkApi::V2, Call::Login, 10001) => CloudError::WrongPassword { code },
        (EwelinkApi::V1, Call::Login, 404) | (EwelinkApi::V2, Call::Login, 10003) => CloudError::NoSuchAccount { code },
        (EwelinkApi::V1, Call::Login, 402) => CloudError::EmailNotActivated,
        (_, Call::Login, 406) => CloudError::AppIdRefused { code, msg },
        (_, Call::Refresh, 401 | 402) => CloudError::RefreshRefused { code },
        (_, Call::Refresh, 406) => CloudError::AppIdRefused { code, msg },
        (_, Call::Bearer | Call::DeviceStatus, 401) => CloudError::TokenInvalid,
        (_, Call::Bearer | Call::DeviceStatus, 402) => CloudError::TokenExpired,
        // v1: 406 on a Bearer call is "authentication failed"; v2: 406 is "no permission".
        (EwelinkApi::V1, Call::Bearer | Call::DeviceStatus, 406) => CloudError::TokenInvalid,
        (_, Call::DeviceStatus, _) => CloudError::Device { code, msg },
        _ => CloudError::Rejected { code, msg },
    }
}

/// Checks the body's `error` (whatever the HTTP status) and the status itself.
fn check(api: EwelinkApi, call: Call, status: u16, body: &Value) -> Result<(), CloudError> {
    match error_code(body) {
        Some(0) => Ok(()),
        Some(code) => Err(classify(api, call, code, body)),
        None if (200..300).contains(&status) => Ok(()),
        None => Err(match (call, status) {
            (Call::Login, 401) => CloudError::WrongPassword { code: 401 },
            (Call::Refresh, 401 | 402) => CloudError::RefreshRefused { code: status as i64 },
            _ => http_error(status),
        }),
    }
}

/// The session in a login answer (the same fields in v1 and in v2's `data`); remembers the region it names.
fn tokens_from(answer: &Value, http: &Http) -> Result<Tokens, CloudError> {
    let apikey = answer
        .get("user")
        .and_then(|u| u.get("apikey"))
        .and_then(Value::as_str)
        .ok_or_else(|| CloudError::Protocol("the login answer has no user.apikey".into()))?
        .to_owned();
    if let Some(region) = answer.get("region").and_then(Value::as_str).and_then(crate::config::Region::parse) {
        http.set_region(region);
    }
    Ok(Tokens {
        at: token(answer.get("at"), "at")?,
        rt: Some(token(answer.get("rt"), "rt")?),
        apikey,
        region: http.region(),
    })
}

/// A token from a login or refresh answer, registered for redaction.
fn token(v: Option<&Value>, what: &str) -> Result<Secret, CloudError> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .ok_or_else(|| CloudError::Protocol(format!("the answer has no {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn http(api: EwelinkApi, region: Region, base: Option<&str>) -> Http {
        Http::new(api, region, base.map(str::to_owned), "app".into(), Secret::new("s3cr3t-x"), PaceRules::none())
            .unwrap()
    }

    #[test]
    fn endpoints_follow_region_and_generation() {
        let h = http(EwelinkApi::V1, Region::Eu, None);
        assert_eq!(h.api_root(), "https://eu-api.coolkit.cc:8080");
        assert_eq!(h.dispatch_url(), "https://eu-api.coolkit.cc:8080/dispatch/app");
        assert_eq!(h.region_query_url(), "https://api.coolkit.cc:8080/api/user/region");
        h.set_region(Region::Cn);
        assert_eq!(h.api_root(), "https://cn-api.coolkit.cn:8080");

        let h = http(EwelinkApi::V2, Region::Us, None);
        assert_eq!(h.api_root(), "https://us-apia.coolkit.cc");
        assert_eq!(h.dispatch_url(), "https://us-dispa.coolkit.cc/dispatch/app");
        assert_eq!(h.ws_url("us-pconnect3.coolkit.cc", "1.2.3.4", 8080), "wss://us-pconnect3.coolkit.cc:8080/api/ws");
        h.set_region(Region::Cn);
        assert_eq!(h.dispatch_url(), "https://cn-dispa.coolkit.cn/dispatch/app");
    }

    #[test]
    fn base_url_takes_every_call_and_plain_http_means_ws() {
        let h = http(EwelinkApi::V2, Region::Eu, Some("http://127.0.0.1:4000/"));
        assert_eq!(h.api_root(), "http://127.0.0.1:4000");
        assert_eq!(h.dispatch_url(), "http://127.0.0.1:4000/dispatch/app");
        assert_eq!(h.ws_url("", "127.0.0.1", 4000), "ws://127.0.0.1:4000/api/ws");
        h.set_region(Region::As);
        assert_eq!(h.api_root(), "http://127.0.0.1:4000");
        let h = http(EwelinkApi::V1, Region::Eu, Some("https://proxy.example"));
        assert_eq!(h.region_query_url(), "https://proxy.example/api/user/region");
        assert_eq!(h.ws_url("ws.example", "", 443), "wss://ws.example:443/api/ws");
    }

    #[test]
    fn errors_are_read_from_the_body_whatever_the_status() {
        let v1 = EwelinkApi::V1;
        assert_eq!(check(v1, Call::Login, 200, &json!({"error": 401})), Err(CloudError::WrongPassword { code: 401 }));
        assert_eq!(
            check(v1, Call::Login, 200, &json!({"error": 301, "region": "eu"})),
            Err(CloudError::Redirect { region: "eu".into() })
        );
        assert_eq!(check(v1, Call::Bearer, 200, &json!({"error": 402})), Err(CloudError::TokenExpired));
        assert_eq!(check(v1, Call::Bearer, 401, &Value::Null), Err(CloudError::TokenInvalid));
        assert_eq!(check(v1, Call::Bearer, 200, &json!([1, 2])), Ok(()));
        assert_eq!(check(v1, Call::Bearer, 200, &json!({"error": "0"})), Ok(()));
        assert_eq!(
            check(v1, Call::DeviceStatus, 200, &json!({"error": 504})),
            Err(CloudError::Device { code: 504, msg: String::new() })
        );
        let v2 = EwelinkApi::V2;
        assert_eq!(
            check(v2, Call::Login, 200, &json!({"error": 10004, "msg": "", "data": {"region": "us"}})),
            Err(CloudError::Redirect { region: "us".into() })
        );
        assert_eq!(
            check(v2, Call::Login, 200, &json!({"error": 10001, "msg": "password error!", "data": {}})),
            Err(CloudError::WrongPassword { code: 10001 })
        );
        assert_eq!(
            check(v2, Call::Login, 200, &json!({"error": 407, "msg": "", "data": {}})),
            Err(CloudError::AppIdNotAllowed)
        );
        assert_eq!(check(v2, Call::Bearer, 200, &json!({"error": 412, "msg": "", "data": {}})), Err(CloudError::Quota));
        assert_eq!(
            check(v2, Call::Bearer, 200, &json!({"error": 406, "msg": "no permission", "data": {}})),
            Err(CloudError::Rejected { code: 406, msg: "no permission".into() })
        );
    }

    #[test]
    fn devices_parse_from_either_generation() {
        let v1 = json!({
            "name": "我的设备213ac8", "deviceid": "1000213ac8", "apikey": "owner-key", "online": true,
            "extra": {"extra": {"uiid": 6, "model": "PSA-B11-GL"}},
            "params": {"switch": "off", "fwVersion": "3.0.1"}, "brandName": "Maker", "productModel": "Sonoff basic R2"
        });
        let d = CloudDevice::from_json(&v1).unwrap();
        assert_eq!((d.uiid, d.apikey.as_str(), d.online), (Some(6), "owner-key", true));
        assert_eq!(d.model.as_deref(), Some("Sonoff basic R2"));
        let v2 = json!({"deviceid": "1000000002", "name": "x", "extra": {"uiid": "104"}, "tags": {"a": 1}});
        let d = CloudDevice::from_json(&v2).unwrap();
        assert_eq!((d.uiid, d.online, d.tags.len()), (Some(104), false, 1));
        assert!(CloudDevice::from_json(&json!({"name": "no id"})).is_none());
    }
}
