//! API v2 (field notes, section 2): `X-CK-Appid` and `X-CK-Nonce` headers instead of body parameters,
//! `Authorization: Sign` over the exact body for login and refresh, `Bearer <at>` otherwise, and the
//! `{"error", "msg", "data"}` envelope answered with HTTP 200.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::secret::Secret;

use super::{Call, CloudDevice, CloudError, Credentials, Http, LoginId, Tokens, bearer, check, token, tokens_from};
use crate::ewelink::sign;

fn ck_headers(http: &Http) -> Vec<(&'static str, String)> {
    vec![("X-CK-Appid", http.app_id.clone()), ("X-CK-Nonce", sign::nonce())]
}

/// The envelope's `data` after checking `error`.
fn data(http: &Http, call: Call, status: u16, body: Value) -> Result<Value, CloudError> {
    check(http.api, call, status, &body)?;
    Ok(match body {
        Value::Object(mut o) => o.remove("data").unwrap_or(Value::Null),
        other => other,
    })
}

async fn signed_post(http: &Http, path: &str, body: Value, call: Call) -> Result<Value, CloudError> {
    let bytes = serde_json::to_vec(&body).map_err(|e| CloudError::Protocol(e.to_string()))?;
    let mut headers = ck_headers(http);
    headers.push(http.sign_header(&bytes));
    let url = format!("{}{path}", http.api_root());
    let (status, answer) = http.send(Method::POST, &url, &headers, Some(bytes)).await?;
    data(http, call, status, answer)
}

async fn bearer_call(
    http: &Http,
    at: &Secret,
    method: Method,
    path: &str,
    query: &[(String, String)],
    body: Option<Value>,
    call: Call,
) -> Result<Value, CloudError> {
    let mut headers = ck_headers(http);
    headers.push(bearer(at));
    let url = http.url_with_query(&format!("{}{path}", http.api_root()), query)?;
    let bytes = body.map(|b| serde_json::to_vec(&b)).transpose().map_err(|e| CloudError::Protocol(e.to_string()))?;
    let (status, answer) = http.send(method, &url, &headers, bytes).await?;
    data(http, call, status, answer)
}

pub(super) async fn login(http: &Http, creds: &Credentials) -> Result<Tokens, CloudError> {
    let mut body = Map::new();
    body.insert("countryCode".into(), json!(creds.country_code));
    match &creds.login {
        LoginId::Email(email) => body.insert("email".into(), json!(email)),
        LoginId::Phone(phone) => body.insert("phoneNumber".into(), json!(phone)),
    };
    body.insert("password".into(), json!(creds.password.expose()));
    let data = signed_post(http, "/v2/user/login", Value::Object(body), Call::Login).await?;
    tokens_from(&data, http)
}

pub(super) async fn refresh(http: &Http, rt: &Secret) -> Result<(Secret, Secret), CloudError> {
    let data = signed_post(http, "/v2/user/refresh", json!({"rt": rt.expose()}), Call::Refresh).await?;
    Ok((token(data.get("at"), "at")?, token(data.get("rt"), "rt")?))
}

pub(super) async fn devices(http: &Http, at: &Secret) -> Result<Vec<CloudDevice>, CloudError> {
    let query = [("num".to_owned(), "0".to_owned())];
    let data = bearer_call(http, at, Method::GET, "/v2/device/thing", &query, None, Call::Bearer).await?;
    let things = data
        .get("thingList")
        .and_then(Value::as_array)
        .ok_or_else(|| CloudError::Protocol("the thing list has no thingList".into()))?;
    // itemType 1 (own) and 2 (shared) are devices; 3 is a group.
    let items = things
        .iter()
        .filter(|t| matches!(t.get("itemType").and_then(Value::as_u64), Some(1 | 2)))
        .filter_map(|t| t.get("itemData"));
    Ok(super::v1::parse_list(items))
}

pub(super) async fn status(
    http: &Http,
    at: &Secret,
    deviceid: &str,
    names: &[&str],
) -> Result<Map<String, Value>, CloudError> {
    let mut query = vec![("type".to_owned(), "1".to_owned()), ("id".to_owned(), deviceid.to_owned())];
    if !names.is_empty() {
        query.push(("params".to_owned(), names.join("|")));
    }
    let data = bearer_call(http, at, Method::GET, "/v2/device/thing/status", &query, None, Call::DeviceStatus).await?;
    Ok(data.get("params").and_then(Value::as_object).cloned().unwrap_or_default())
}

pub(super) async fn set_status(
    http: &Http,
    at: &Secret,
    deviceid: &str,
    params: &Map<String, Value>,
) -> Result<(), CloudError> {
    let body = json!({"type": 1, "id": deviceid, "params": params});
    bearer_call(http, at, Method::POST, "/v2/device/thing/status", &[], Some(body), Call::DeviceStatus)
        .await
        .map(|_| ())
}

/// `GET https://{region}-dispa.coolkit.cc/dispatch/app`: a plain answer, not the envelope.
pub(super) async fn dispatch(http: &Http, _at: &Secret) -> Result<Value, CloudError> {
    let (status, answer) = http.send(Method::GET, &http.dispatch_url(), &ck_headers(http), None).await?;
    check(http.api, Call::Bearer, status, &answer)?;
    Ok(answer)
}
