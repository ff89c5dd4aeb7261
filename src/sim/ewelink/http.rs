//! The simulated cloud's HTTP side: v1 routes exactly as `ewelink-api-v1.md` (common parameters, Sign
//! before login, Bearer after, `error` in a 200 body) and v2 routes per the field notes (`X-CK-*` headers,
//! `{error, msg, data}` envelope). Every request is checked strictly; the first failed check answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::fixtures::{USER_APIKEY, device_json};
use super::state::{AtomicCounters, Shared, TokenState, apply_params, device_push, is_shared};
use crate::ewelink::sign;

type Answer = Result<Value, Value>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Gen {
    V1,
    V2,
}

struct Req {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn q(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().route("/api/ws", get(ws_upgrade)).fallback(handle).with_state(shared)
}

async fn ws_upgrade(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    if shared.state().refuse_sockets {
        return (StatusCode::SERVICE_UNAVAILABLE, "sockets refused").into_response();
    }
    upgrade.on_upgrade(move |socket| super::ws::serve(shared, socket))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query =
        uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let req = Req { method, path: uri.path().to_owned(), query, headers, body };
    shared.note_call(&req.path);
    let generation = if req.path.starts_with("/v2/") || (req.path == "/dispatch/app" && req.method == Method::GET) {
        Gen::V2
    } else {
        Gen::V1
    };
    let answer = route(&shared, &req, generation);
    let body = match (generation, answer) {
        (Gen::V1, Ok(v)) => v,
        (Gen::V1, Err(e)) => e,
        // The v2 dispatch host answers plainly, without the envelope.
        (Gen::V2, Ok(v)) if req.path == "/dispatch/app" => v,
        (Gen::V2, Ok(data)) => json!({"error": 0, "msg": "", "data": data}),
        (Gen::V2, Err(e)) => {
            let code = e.get("error").cloned().unwrap_or(json!(500));
            let msg = e.get("msg").cloned().unwrap_or(json!(""));
            let data = e.get("data").cloned().unwrap_or(json!({}));
            json!({"error": code, "msg": msg, "data": data})
        }
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn fail(shared: &Shared, code: i64, msg: impl Into<String>) -> Value {
    let msg = msg.into();
    if matches!(code, 400 | 406) {
        AtomicCounters::bump(&shared.counters.bad_requests);
        tracing::debug!(code, msg = %msg, "the simulated cloud refused a request");
    }
    json!({"error": code, "msg": msg})
}

fn route(shared: &Shared, req: &Req, generation: Gen) -> Answer {
    let content_type = req.header("content-type").unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(fail(shared, 400, "Content-Type must be application/json"));
    }
    if shared.state().quota_exceeded {
        return Err(json!({"error": 412, "msg": "request limit exceeded"}));
    }
    let m = &req.method;
    match (generation, m.as_str(), req.path.as_str()) {
        (Gen::V1, "GET", "/api/user/region") => v1_region(shared, req),
        (Gen::V1, "POST", "/api/user/login") => v1_login(shared, req),
        (Gen::V1, "GET", "/api/user/refresh") => v1_refresh(shared, req),
        (Gen::V1, "GET", "/api/user/device") => v1_devices(shared, req),
        (Gen::V1, "GET", "/api/user/device/status") => v1_status_get(shared, req),
        (Gen::V1, "POST", "/api/user/device/status") => v1_status_post(shared, req),
        (Gen::V1, "GET", p) if p.starts_with("/api/user/device/") => v1_device(shared, req),
        (Gen::V1, "GET", "/api/group") => v1_groups(shared, req),
        (Gen::V1, "POST", "/dispatch/app") => v1_dispatch(shared, req),
        (Gen::V2, "POST", "/v2/user/login") => v2_login(shared, req),
        (Gen::V2, "POST", "/v2/user/refresh") => v2_refresh(shared, req),
        (Gen::V2, "GET", "/v2/device/thing") => v2_devices(shared, req),
        (Gen::V2, "GET", "/v2/device/thing/status") => v2_status_get(shared, req),
        (Gen::V2, "POST", "/v2/device/thing/status") => v2_status_post(shared, req),
        (Gen::V2, "GET", "/dispatch/app") => Ok(dispatch_answer(shared)),
        _ => Err(json!({"error": 404, "msg": format!("no route {} {}", req.method, req.path)})),
    }
}

// ----- checks -----

/// v1 common parameters in the query: `appid`, `nonce`, `ts`, `version=8`.
fn v1_query_common(shared: &Shared, req: &Req) -> Result<(), Value> {
    let appid = req.q("appid").ok_or_else(|| fail(shared, 400, "appid is required"))?;
    if appid != shared.opts.app_id {
        return Err(fail(shared, 406, "appid is not known"));
    }
    shared.take_nonce(req.q("nonce").unwrap_or("")).map_err(|e| fail(shared, 400, e))?;
    let ts = req.q("ts").and_then(|t| t.parse::<u64>().ok()).ok_or_else(|| fail(shared, 400, "ts must be a number"))?;
    shared.check_ts(ts).map_err(|e| fail(shared, 400, e))?;
    if req.q("version") != Some("8") {
        return Err(fail(shared, 400, "version must be 8"));
    }
    Ok(())
}

/// v1 common parameters in a JSON body (numbers as numbers).
fn v1_body_common(shared: &Shared, body: &Map<String, Value>) -> Result<(), Value> {
    match body.get("appid").and_then(Value::as_str) {
        None => return Err(fail(shared, 400, "appid is required")),
        Some(a) if a != shared.opts.app_id => return Err(fail(shared, 406, "appid is not known")),
        _ => {}
    }
    shared.take_nonce(body.get("nonce").and_then(Value::as_str).unwrap_or("")).map_err(|e| fail(shared, 400, e))?;
    let ts = body.get("ts").and_then(Value::as_u64).ok_or_else(|| fail(shared, 400, "ts must be a number"))?;
    shared.check_ts(ts).map_err(|e| fail(shared, 400, e))?;
    if body.get("version").and_then(Value::as_u64) != Some(8) {
        return Err(fail(shared, 400, "version must be the number 8"));
    }
    Ok(())
}

fn json_body(shared: &Shared, req: &Req) -> Result<Map<String, Value>, Value> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(fail(shared, 400, "the body must be a JSON object")),
    }
}

/// `Authorization: Sign <base64 HMAC>` over `message`. A bad signature is an authentication failure (406).
fn check_sign(shared: &Shared, req: &Req, message: &[u8]) -> Result<(), Value> {
    let sig = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Sign "))
        .ok_or_else(|| fail(shared, 400, "Authorization: Sign <signature> is required"))?;
    if !sign::verify(&shared.opts.app_secret, message, sig) {
        return Err(fail(shared, 406, "signature does not match"));
    }
    Ok(())
}

/// `Authorization: Bearer <at>`: 401 unknown or revoked, 402 expired.
fn check_bearer(shared: &Shared, req: &Req) -> Result<(), Value> {
    let at = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .ok_or_else(|| fail(shared, 401, "Authorization: Bearer <at> is required"))?;
    match shared.token_state(at) {
        Some(TokenState::Valid) => Ok(()),
        Some(TokenState::Expired) => Err(json!({"error": 402, "msg": "access token expired"})),
        Some(TokenState::Revoked) | None => Err(json!({"error": 401, "msg": "access token invalid"})),
    }
}

/// v2 headers: `X-CK-Appid` and a fresh `X-CK-Nonce`.
fn v2_headers(shared: &Shared, req: &Req) -> Result<(), Value> {
    match req.header("x-ck-appid") {
        None => return Err(fail(shared, 400, "X-CK-Appid is required")),
        Some(a) if a != shared.opts.app_id => return Err(fail(shared, 406, "appid is not known")),
        _ => {}
    }
    shared.take_nonce(req.header("x-ck-nonce").unwrap_or("")).map_err(|e| fail(shared, 400, e))
}

fn login_answer(shared: &Shared, login_field: (&str, &str)) -> Value {
    let (at, rt) = shared.issue_tokens();
    let region = shared.state().account_region.clone();
    AtomicCounters::bump(&shared.counters.logins);
    json!({
        "at": at, "rt": rt,
        "user": {"_id": "5c984cd3dc8295fa0ef3e592", login_field.0: login_field.1, "appId": shared.opts.app_id,
                 "lang": "en", "online": false, "onlineTime": "2019-05-16T10:48:42.091Z", "ip": "127.0.0.1",
                 "location": "sim", "offlineTime": "2019-05-16T10:51:22.090Z",
                 "appInfos": [{"appVersion": "3.6.1", "os": "android"}], "nickname": "sim",
                 "createdAt": "2019-03-25T03:36:51.335Z", "apikey": USER_APIKEY},
        "region": region,
    })
}

/// Login refusals shared by both generations: redirect, forbidden password login, account, password.
fn login_checks(shared: &Shared, generation: Gen, body: &Map<String, Value>) -> Result<(&'static str, String), Value> {
    let bump_fail = || AtomicCounters::bump(&shared.counters.login_failures);
    let redirect = {
        let mut st = shared.state();
        let hide = st.redirect_hides_region;
        match st.redirect.as_mut() {
            Some((region, n)) if *n > 0 => {
                *n -= 1;
                Some((region.clone(), hide))
            }
            _ => None,
        }
    };
    if let Some((region, hide)) = redirect {
        bump_fail();
        AtomicCounters::bump(&shared.counters.region_redirects);
        return Err(match generation {
            Gen::V1 if hide => json!({"error": 301}),
            Gen::V1 => json!({"error": 301, "region": region}),
            Gen::V2 => json!({"error": 10004, "msg": "user is in another region", "data": {"region": region}}),
        });
    }
    if shared.state().forbid_password_login {
        bump_fail();
        return Err(match generation {
            Gen::V1 => json!({"error": 406, "msg": "appid is not allowed to log in with a password"}),
            Gen::V2 => json!({"error": 407, "msg": "appid has no permission for this path"}),
        });
    }
    // The phone number takes priority (v1 document).
    let (field, login) =
        match (body.get("phoneNumber").and_then(Value::as_str), body.get("email").and_then(Value::as_str)) {
            (Some(p), _) if !p.is_empty() => ("phoneNumber", p.to_owned()),
            (_, Some(e)) if !e.is_empty() => ("email", e.to_owned()),
            _ => {
                bump_fail();
                return Err(fail(shared, 400, "email or phoneNumber is required"));
            }
        };
    let known = match field {
        "phoneNumber" => login == shared.opts.phone,
        _ => login.eq_ignore_ascii_case(&shared.opts.email),
    };
    if !known {
        bump_fail();
        return Err(match generation {
            Gen::V1 => json!({"error": 404, "msg": "user does not exist"}),
            Gen::V2 => json!({"error": 10003, "msg": "user does not exists", "data": {}}),
        });
    }
    if body.get("password").and_then(Value::as_str) != Some(shared.opts.password.as_str()) {
        bump_fail();
        return Err(match generation {
            Gen::V1 => json!({"error": 401, "msg": "wrong account or password"}),
            Gen::V2 => json!({"error": 10001, "msg": "password error!", "data": {}}),
        });
    }
    Ok((field, login))
}

// ----- v1 -----

fn v1_signed_get(shared: &Shared, req: &Req) -> Result<(), Value> {
    v1_query_common(shared, req)?;
    check_sign(shared, req, sign::query_message(&req.query).as_bytes())
}

fn v1_region(shared: &Shared, req: &Req) -> Answer {
    v1_signed_get(shared, req)?;
    let requestid = format!("{}-{}", req.q("nonce").unwrap_or(""), req.q("ts").unwrap_or(""));
    let region = shared.state().account_region.clone();
    Ok(json!({"region": region, "error": 0, "requestid": requestid}))
}

fn v1_login(shared: &Shared, req: &Req) -> Answer {
    check_sign(shared, req, &req.body)?;
    let body = json_body(shared, req)?;
    v1_body_common(shared, &body)?;
    if body.get("password").and_then(Value::as_str).is_none() {
        AtomicCounters::bump(&shared.counters.login_failures);
        return Err(fail(shared, 400, "password is required"));
    }
    let (field, login) = login_checks(shared, Gen::V1, &body)?;
    Ok(login_answer(shared, (field, &login)))
}

fn v1_refresh(shared: &Shared, req: &Req) -> Answer {
    v1_signed_get(shared, req)?;
    if req.q("grantType") != Some("refresh") {
        return Err(fail(shared, 400, "grantType must be refresh"));
    }
    let rt = req.q("rt").ok_or_else(|| fail(shared, 400, "rt is required"))?;
    match shared.refresh_tokens(rt) {
        Some((at, rt)) => {
            AtomicCounters::bump(&shared.counters.refreshes);
            let mut answer = login_answer_user(shared);
            answer.insert("at".into(), json!(at));
            answer.insert("rt".into(), json!(rt));
            Ok(Value::Object(answer))
        }
        None => {
            AtomicCounters::bump(&shared.counters.refresh_failures);
            Err(json!({"error": 402, "msg": "rt expired"}))
        }
    }
}

fn login_answer_user(shared: &Shared) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "user".into(),
        json!({"_id": "5c984cd3dc8295fa0ef3e592", "apikey": USER_APIKEY, "appId": shared.opts.app_id}),
    );
    m.insert("region".into(), json!(shared.state().account_region));
    m
}

fn v1_bearer_get(shared: &Shared, req: &Req) -> Result<(), Value> {
    check_bearer(shared, req)?;
    v1_query_common(shared, req)
}

fn v1_devices(shared: &Shared, req: &Req) -> Answer {
    v1_bearer_get(shared, req)?;
    AtomicCounters::bump(&shared.counters.device_lists);
    let with_tags = req.q("getTags") == Some("1");
    let list: Vec<Value> = shared
        .state()
        .devices
        .values()
        .map(|d| {
            let mut v = device_json(d);
            if !with_tags && let Some(o) = v.as_object_mut() {
                o.remove("tags");
            }
            v
        })
        .collect();
    if shared.opts.v1_bare_device_list { Ok(Value::Array(list)) } else { Ok(json!({"error": 0, "devicelist": list})) }
}

fn v1_device(shared: &Shared, req: &Req) -> Answer {
    v1_bearer_get(shared, req)?;
    let id = req.path.trim_start_matches("/api/user/device/");
    if req.q("deviceid") != Some(id) {
        return Err(fail(shared, 400, "deviceid must repeat the path's device id"));
    }
    if req.q("apikey") != Some(USER_APIKEY) {
        return Err(fail(shared, 400, "apikey must be the user's apikey"));
    }
    match shared.state().devices.get(id) {
        Some(d) => Ok(json!({"error": 0, "device": device_json(d)})),
        None => Err(json!({"error": 404, "msg": "device not found"})),
    }
}

fn v1_groups(shared: &Shared, req: &Req) -> Answer {
    v1_bearer_get(shared, req)?;
    if req.q("groupType") != Some("0") || req.q("apikey") != Some(USER_APIKEY) {
        return Err(fail(shared, 400, "groupType=0 and the user's apikey are required"));
    }
    Ok(json!({"groupinfos": [{"id": "12345678", "name": "Living room", "index": 0,
                              "createdAt": "2019-03-25T03:36:51.335Z"}], "error": 0}))
}

fn status_get(shared: &Shared, deviceid: Option<&str>, names: Option<&str>) -> Answer {
    let id = deviceid.ok_or_else(|| fail(shared, 400, "the device id is required"))?;
    AtomicCounters::bump(&shared.counters.http_status_queries);
    let st = shared.state();
    let d = st.devices.get(id).ok_or_else(|| json!({"error": 400, "msg": "device not found"}))?;
    let params = match names.filter(|n| !n.is_empty()) {
        Some(names) => names.split('|').filter_map(|n| d.params.get(n).map(|v| (n.to_owned(), v.clone()))).collect(),
        None => d.params.clone(),
    };
    Ok(json!({"error": 0, "params": params}))
}

fn v1_status_get(shared: &Shared, req: &Req) -> Answer {
    v1_bearer_get(shared, req)?;
    status_get(shared, req.q("deviceid"), req.q("params"))
}

/// Applies an HTTP status update; 504 when the device is offline or does not answer (v1 document).
fn status_post(shared: &Shared, deviceid: Option<&str>, params: Option<&Value>) -> Answer {
    let id = deviceid.ok_or_else(|| fail(shared, 400, "the device id is required"))?.to_owned();
    let params = params
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| fail(shared, 400, "params must be a non-empty object"))?
        .clone();
    AtomicCounters::bump(&shared.counters.http_status_updates);
    let push = {
        let mut st = shared.state();
        st.http_updates.push((id.clone(), params.clone()));
        let d = st.devices.get_mut(&id).ok_or_else(|| json!({"error": 400, "msg": "device not found"}))?;
        if !d.online || !d.responsive {
            return Err(json!({"error": 504, "msg": "device did not answer"}));
        }
        let applied = apply_params(d, &params);
        device_push(d, &applied)
    };
    shared.broadcast(&push);
    Ok(json!({"error": 0, "deviceid": id}))
}

fn v1_status_post(shared: &Shared, req: &Req) -> Answer {
    check_bearer(shared, req)?;
    let body = json_body(shared, req)?;
    v1_body_common(shared, &body)?;
    status_post(shared, body.get("deviceid").and_then(Value::as_str), body.get("params"))
}

fn dispatch_answer(shared: &Shared) -> Value {
    AtomicCounters::bump(&shared.counters.dispatches);
    json!({"port": shared.port, "IP": "127.0.0.1", "reason": "ok", "domain": "127.0.0.1", "error": 0})
}

fn v1_dispatch(shared: &Shared, req: &Req) -> Answer {
    check_bearer(shared, req)?;
    let body = json_body(shared, req)?;
    v1_body_common(shared, &body)?;
    if body.get("accept").and_then(Value::as_str) != Some("ws") {
        return Err(fail(shared, 400, "accept must be ws"));
    }
    Ok(dispatch_answer(shared))
}

// ----- v2 -----

fn v2_login(shared: &Shared, req: &Req) -> Answer {
    v2_headers(shared, req)?;
    check_sign(shared, req, &req.body)?;
    let body = json_body(shared, req)?;
    for moved in ["appid", "ts", "version", "nonce"] {
        if body.contains_key(moved) {
            return Err(fail(shared, 400, format!("{moved} belongs in the X-CK headers in v2, not the body")));
        }
    }
    let cc = body.get("countryCode").and_then(Value::as_str).unwrap_or("");
    if !(cc.starts_with('+') && cc.len() > 1 && cc[1..].bytes().all(|b| b.is_ascii_digit())) {
        AtomicCounters::bump(&shared.counters.login_failures);
        return Err(fail(shared, 400, "countryCode like +86 is required"));
    }
    if body.get("password").and_then(Value::as_str).is_none() {
        AtomicCounters::bump(&shared.counters.login_failures);
        return Err(fail(shared, 400, "password is required"));
    }
    let (field, login) = login_checks(shared, Gen::V2, &body)?;
    Ok(login_answer(shared, (field, &login)))
}

fn v2_refresh(shared: &Shared, req: &Req) -> Answer {
    v2_headers(shared, req)?;
    check_sign(shared, req, &req.body)?;
    let body = json_body(shared, req)?;
    let rt = body.get("rt").and_then(Value::as_str).ok_or_else(|| fail(shared, 400, "rt is required"))?;
    match shared.refresh_tokens(rt) {
        Some((at, rt)) => {
            AtomicCounters::bump(&shared.counters.refreshes);
            Ok(json!({"at": at, "rt": rt}))
        }
        None => {
            AtomicCounters::bump(&shared.counters.refresh_failures);
            Err(json!({"error": 402, "msg": "rt invalid"}))
        }
    }
}

fn v2_bearer(shared: &Shared, req: &Req) -> Result<(), Value> {
    v2_headers(shared, req)?;
    check_bearer(shared, req)
}

fn v2_devices(shared: &Shared, req: &Req) -> Answer {
    v2_bearer(shared, req)?;
    AtomicCounters::bump(&shared.counters.device_lists);
    let st = shared.state();
    let things: Vec<Value> = st
        .devices
        .values()
        .enumerate()
        .map(|(i, d)| json!({"itemType": if is_shared(d) { 2 } else { 1 }, "itemData": device_json(d), "index": i}))
        .chain(std::iter::once(json!({"itemType": 3, "itemData": {"id": "g1", "name": "Living room"}, "index": 9999})))
        .collect();
    let total = things.len();
    Ok(json!({"thingList": things, "total": total}))
}

fn v2_status_get(shared: &Shared, req: &Req) -> Answer {
    v2_bearer(shared, req)?;
    if req.q("type") != Some("1") {
        return Err(fail(shared, 400, "type must be 1 (a device)"));
    }
    status_get(shared, req.q("id"), req.q("params")).map(|mut v| {
        // The envelope carries {params}; drop the v1 error field.
        if let Some(o) = v.as_object_mut() {
            o.remove("error");
        }
        v
    })
}

fn v2_status_post(shared: &Shared, req: &Req) -> Answer {
    v2_bearer(shared, req)?;
    let body = json_body(shared, req)?;
    if body.get("type").and_then(Value::as_u64) != Some(1) {
        return Err(fail(shared, 400, "type must be 1 (a device)"));
    }
    status_post(shared, body.get("id").and_then(Value::as_str), body.get("params")).map(|_| json!({}))
}

/// Handshake-time checks of the WebSocket, shared with `ws`.
pub(super) fn handshake_token_error(shared: &Shared, at: &str) -> Option<i64> {
    match shared.token_state(at) {
        Some(TokenState::Valid) => None,
        Some(TokenState::Expired) => Some(402),
        Some(TokenState::Revoked) | None => Some(401),
    }
}

/// How many handshakes are still to fail with 406 (decrements).
pub(super) fn take_406(shared: &Shared) -> bool {
    shared.counters.pending_406.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}
