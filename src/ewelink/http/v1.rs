//! API v1, exactly as `ewelink-api-v1.md` describes it: the common parameters `appid`, `nonce`, `ts`,
//! `version: 8` in the query (GET) or the JSON body (POST); `Authorization: Sign ...` before login and
//! `Bearer <at>` after; answers carry `error` in the body, often with HTTP 200.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::secret::Secret;

use super::{
    Call, CloudDevice, CloudError, Credentials, Group, Http, LoginId, Tokens, bearer, check, token, tokens_from,
};
use crate::ewelink::sign;

const VERSION: u32 = 8;

fn common_params(http: &Http) -> Vec<(String, String)> {
    vec![
        ("appid".into(), http.app_id.clone()),
        ("nonce".into(), sign::nonce()),
        ("ts".into(), sign::now_s().to_string()),
        ("version".into(), VERSION.to_string()),
    ]
}

fn with_common(http: &Http, mut body: Map<String, Value>) -> Map<String, Value> {
    body.insert("appid".into(), json!(http.app_id));
    body.insert("nonce".into(), json!(sign::nonce()));
    body.insert("ts".into(), json!(sign::now_s()));
    body.insert("version".into(), json!(VERSION));
    body
}

fn serialize(body: &Map<String, Value>) -> Result<Vec<u8>, CloudError> {
    serde_json::to_vec(body).map_err(|e| CloudError::Protocol(e.to_string()))
}

async fn signed_get(
    http: &Http,
    url: &str,
    mut params: Vec<(String, String)>,
    call: Call,
) -> Result<Value, CloudError> {
    params.extend(common_params(http));
    let message = sign::query_message(&params);
    let url = http.url_with_query(url, &params)?;
    let (status, body) = http.send(Method::GET, &url, &[http.sign_header(message.as_bytes())], None).await?;
    check(http.api, call, status, &body)?;
    Ok(body)
}

async fn signed_post(http: &Http, url: &str, body: Map<String, Value>, call: Call) -> Result<Value, CloudError> {
    // Serialise once, sign exactly those bytes, send exactly those bytes.
    let bytes = serialize(&with_common(http, body))?;
    let auth = http.sign_header(&bytes);
    let (status, body) = http.send(Method::POST, url, &[auth], Some(bytes)).await?;
    check(http.api, call, status, &body)?;
    Ok(body)
}

async fn bearer_get(
    http: &Http,
    at: &Secret,
    url: &str,
    mut params: Vec<(String, String)>,
    call: Call,
) -> Result<Value, CloudError> {
    params.extend(common_params(http));
    let url = http.url_with_query(url, &params)?;
    let (status, body) = http.send(Method::GET, &url, &[bearer(at)], None).await?;
    check(http.api, call, status, &body)?;
    Ok(body)
}

async fn bearer_post(
    http: &Http,
    at: &Secret,
    url: &str,
    body: Map<String, Value>,
    call: Call,
) -> Result<Value, CloudError> {
    let bytes = serialize(&with_common(http, body))?;
    let (status, body) = http.send(Method::POST, url, &[bearer(at)], Some(bytes)).await?;
    check(http.api, call, status, &body)?;
    Ok(body)
}

pub(super) async fn login(http: &Http, creds: &Credentials) -> Result<Tokens, CloudError> {
    let mut body = Map::new();
    match &creds.login {
        LoginId::Email(email) => body.insert("email".into(), json!(email)),
        LoginId::Phone(phone) => body.insert("phoneNumber".into(), json!(phone)),
    };
    body.insert("password".into(), json!(creds.password.expose()));
    let url = format!("{}/api/user/login", http.api_root());
    let answer = match signed_post(http, &url, body, Call::Login).await {
        Err(CloudError::Redirect { region }) if region.is_empty() => {
            // 301 without a region: the document says to ask the region query.
            return Err(CloudError::Redirect { region: region_of(http, &creds.country_code).await? });
        }
        other => other?,
    };
    tokens_from(&answer, http)
}

/// `GET /api/user/region`: the region of the app for a country code.
async fn region_of(http: &Http, country_code: &str) -> Result<String, CloudError> {
    let params = vec![("country_code".to_owned(), country_code.trim_start_matches('+').to_owned())];
    let answer = signed_get(http, &http.region_query_url(), params, Call::Login).await?;
    answer
        .get("region")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| CloudError::Protocol("the region query has no region".into()))
}

pub(super) async fn refresh(http: &Http, rt: &Secret) -> Result<(Secret, Secret), CloudError> {
    let params = vec![("grantType".to_owned(), "refresh".to_owned()), ("rt".to_owned(), rt.expose().to_owned())];
    let url = format!("{}/api/user/refresh", http.api_root());
    let answer = signed_get(http, &url, params, Call::Refresh).await?;
    Ok((token(answer.get("at"), "at")?, token(answer.get("rt"), "rt")?))
}

pub(super) async fn devices(http: &Http, at: &Secret) -> Result<Vec<CloudDevice>, CloudError> {
    let params = vec![("lang".to_owned(), "en".to_owned()), ("getTags".to_owned(), "1".to_owned())];
    let url = format!("{}/api/user/device", http.api_root());
    let answer = bearer_get(http, at, &url, params, Call::Bearer).await?;
    // The document's table names the field `devicelist`; its example is a bare array. Accept both.
    let list = match &answer {
        Value::Array(items) => items,
        other => other
            .get("devicelist")
            .and_then(Value::as_array)
            .ok_or_else(|| CloudError::Protocol("the device list has neither devicelist nor an array".into()))?,
    };
    Ok(parse_list(list.iter()))
}

pub(super) fn parse_list<'a>(items: impl Iterator<Item = &'a Value>) -> Vec<CloudDevice> {
    items
        .filter_map(|item| {
            let device = CloudDevice::from_json(item);
            if device.is_none() {
                tracing::warn!("skipping a device without a deviceid in the device list");
            }
            device
        })
        .collect()
}

pub(super) async fn device(http: &Http, at: &Secret, apikey: &str, deviceid: &str) -> Result<CloudDevice, CloudError> {
    let params = vec![("deviceid".to_owned(), deviceid.to_owned()), ("apikey".to_owned(), apikey.to_owned())];
    let url = format!("{}/api/user/device/{deviceid}", http.api_root());
    let answer = bearer_get(http, at, &url, params, Call::Bearer).await?;
    let object = answer.get("device").unwrap_or(&answer);
    CloudDevice::from_json(object).ok_or_else(|| CloudError::Protocol(format!("no device {deviceid} in the answer")))
}

pub(super) async fn groups(http: &Http, at: &Secret, apikey: &str) -> Result<Vec<Group>, CloudError> {
    let params = vec![("groupType".to_owned(), "0".to_owned()), ("apikey".to_owned(), apikey.to_owned())];
    let url = format!("{}/api/group", http.api_root());
    let answer = bearer_get(http, at, &url, params, Call::Bearer).await?;
    let infos = answer.get("groupinfos").and_then(Value::as_array).cloned().unwrap_or_default();
    Ok(infos
        .iter()
        .filter_map(|g| {
            Some(Group {
                id: g.get("id")?.as_str()?.to_owned(),
                name: g.get("name").and_then(Value::as_str).unwrap_or("").to_owned(),
            })
        })
        .collect())
}

pub(super) async fn status(
    http: &Http,
    at: &Secret,
    deviceid: &str,
    names: &[&str],
) -> Result<Map<String, Value>, CloudError> {
    let mut params = vec![("deviceid".to_owned(), deviceid.to_owned())];
    if !names.is_empty() {
        params.push(("params".to_owned(), names.join("|")));
    }
    let url = format!("{}/api/user/device/status", http.api_root());
    let answer = bearer_get(http, at, &url, params, Call::DeviceStatus).await?;
    Ok(answer.get("params").and_then(Value::as_object).cloned().unwrap_or_default())
}

pub(super) async fn set_status(
    http: &Http,
    at: &Secret,
    deviceid: &str,
    params: &Map<String, Value>,
) -> Result<(), CloudError> {
    let mut body = Map::new();
    body.insert("deviceid".into(), json!(deviceid));
    body.insert("params".into(), Value::Object(params.clone()));
    let url = format!("{}/api/user/device/status", http.api_root());
    bearer_post(http, at, &url, body, Call::DeviceStatus).await.map(|_| ())
}

pub(super) async fn dispatch(http: &Http, at: &Secret) -> Result<Value, CloudError> {
    let mut body = Map::new();
    body.insert("accept".into(), json!("ws"));
    bearer_post(http, at, &http.dispatch_url(), body, Call::Bearer).await
}
