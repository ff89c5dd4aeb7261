//! The eWeLink HTTP client (v1 and v2) and the token life cycle against the strict simulated cloud over real
//! sockets on 127.0.0.1: logins, region redirects, refresh, pre-obtained sessions, the state file, the
//! errors a user can act on, and the simulator's own strictness.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hub2mqtt::config::{EwelinkApi, Region};
use hub2mqtt::ewelink::auth::Auth;
use hub2mqtt::ewelink::error::CloudError;
use hub2mqtt::ewelink::http::{CloudDevice, Credentials, Http, LoginId, Tokens};
use hub2mqtt::ewelink::pace::PaceRules;
use hub2mqtt::ewelink::sign;
use hub2mqtt::secret::Secret;
use hub2mqtt::sim::ewelink::{OWNER_APIKEY, SimCloud, SimOptions, USER_APIKEY, ids};
use serde_json::{Value, json};

const APIS: [EwelinkApi; 2] = [EwelinkApi::V1, EwelinkApi::V2];

async fn sim() -> SimCloud {
    SimCloud::start(SimOptions::default()).await.unwrap()
}

fn http(sim: &SimCloud, api: EwelinkApi) -> Arc<Http> {
    http_with_secret(sim, api, &sim.options().app_secret)
}

fn http_with_secret(sim: &SimCloud, api: EwelinkApi, secret: &str) -> Arc<Http> {
    let o = sim.options();
    Arc::new(
        Http::new(
            api,
            Region::Cn,
            Some(sim.base_url()),
            o.app_id.clone(),
            Secret::new(secret),
            PaceRules::cloud_http(),
        )
        .unwrap(),
    )
}

fn email(sim: &SimCloud) -> Credentials {
    let o = sim.options();
    Credentials {
        login: LoginId::Email(o.email.clone()),
        password: Secret::new(o.password.clone()),
        country_code: "+86".into(),
    }
}

fn auth(http: Arc<Http>, creds: Option<Credentials>, session: Option<Tokens>, file: PathBuf) -> Auth {
    Auth::new(http, creds, session, file, Duration::from_secs(60))
}

/// An `Auth` that may log in again right away (the default waits a minute between logins).
fn eager_auth(http: Arc<Http>, creds: Option<Credentials>, file: PathBuf) -> Auth {
    Auth::new(http, creds, None, file, Duration::ZERO)
}

/// The device list through the token life cycle (renewed once on 401/402).
async fn list(auth: &Auth) -> Result<Vec<CloudDevice>, CloudError> {
    let h = auth.http().clone();
    auth.with_tokens(|t| {
        let h = h.clone();
        async move { h.devices(&t.at).await }
    })
    .await
}

#[tokio::test]
async fn login_by_email_and_phone_then_every_v1_read() {
    let sim = sim().await;
    let http = http(&sim, EwelinkApi::V1);
    let tokens = http.login(&email(&sim)).await.unwrap();
    assert_eq!(tokens.apikey, USER_APIKEY);
    let phone = Credentials { login: LoginId::Phone(sim.options().phone.clone()), ..email(&sim) };
    http.login(&phone).await.unwrap();
    assert_eq!(sim.counters().logins, 2);

    let devices = http.devices(&tokens.at).await.unwrap();
    assert_eq!(devices.len(), sim.device_ids().len());
    let shared = devices.iter().find(|d| d.deviceid == ids::SHARED).unwrap();
    assert_eq!(shared.apikey, OWNER_APIKEY, "a shared device carries its owner's apikey");
    let two = devices.iter().find(|d| d.deviceid == ids::TWO_CHANNEL).unwrap();
    assert_eq!(two.tags["ck_channel_name"]["0"], "Lamp", "getTags=1 brings channel names");
    assert!(!devices.iter().find(|d| d.deviceid == ids::OFFLINE).unwrap().online);

    let one = http.device(&tokens.at, &tokens.apikey, ids::SWITCH).await.unwrap();
    assert_eq!((one.uiid, one.name.as_str()), (Some(6), "我的设备213ac8"));
    let groups = http.groups(&tokens.at, &tokens.apikey).await.unwrap();
    assert_eq!(groups[0].name, "Living room");

    let status = http.status(&tokens.at, ids::SWITCH, &["switch", "timers"]).await.unwrap();
    assert_eq!(Value::Object(status), json!({"switch": "off", "timers": []}));
    let params = json!({"switch": "on"}).as_object().unwrap().clone();
    http.set_status(&tokens.at, ids::SWITCH, &params).await.unwrap();
    assert_eq!(sim.device_params(ids::SWITCH).unwrap()["switch"], "on");
    let offline = http.set_status(&tokens.at, ids::OFFLINE, &params).await.unwrap_err();
    assert!(matches!(offline, CloudError::Device { code: 504, .. }), "{offline:?}");

    let target = http.dispatch(&tokens.at).await.unwrap();
    assert_eq!(target.url, format!("ws://127.0.0.1:{}/api/ws", sim.addr().port()));
    let c = sim.counters();
    assert_eq!((c.bad_requests, c.rate_violations), (0, 0), "{c:?}");
}

#[tokio::test]
async fn v2_login_things_status_and_dispatch() {
    let sim = sim().await;
    let http = http(&sim, EwelinkApi::V2);
    let tokens = http.login(&email(&sim)).await.unwrap();
    assert_eq!(tokens.apikey, USER_APIKEY);
    assert_eq!(tokens.region, Region::Eu, "the login answer's region is remembered");
    let devices = http.devices(&tokens.at).await.unwrap();
    assert_eq!(devices.len(), sim.device_ids().len(), "groups (itemType 3) are not devices");
    assert_eq!(devices.iter().find(|d| d.deviceid == ids::SHARED).unwrap().apikey, OWNER_APIKEY);

    let status = http.status(&tokens.at, ids::DIMMER_36, &["bright"]).await.unwrap();
    assert_eq!(Value::Object(status), json!({"bright": 60}));
    let params = json!({"switch": "off"}).as_object().unwrap().clone();
    http.set_status(&tokens.at, ids::DIMMER_36, &params).await.unwrap();
    assert_eq!(sim.http_updates(), vec![(ids::DIMMER_36.to_owned(), params)]);
    let target = http.dispatch(&tokens.at).await.unwrap();
    assert!(target.url.starts_with("ws://127.0.0.1:"), "{}", target.url);
    let c = sim.counters();
    assert_eq!((c.bad_requests, c.rate_violations), (0, 0), "{c:?}");
}

#[tokio::test]
async fn both_shapes_of_the_v1_device_list_are_read() {
    let bare = SimCloud::start(SimOptions { v1_bare_device_list: true, ..SimOptions::default() }).await.unwrap();
    let table = sim().await;
    for sim in [&bare, &table] {
        let http = http(sim, EwelinkApi::V1);
        let tokens = http.login(&email(sim)).await.unwrap();
        assert_eq!(http.devices(&tokens.at).await.unwrap().len(), sim.device_ids().len());
    }
}

#[tokio::test]
async fn errors_name_what_the_user_can_fix() {
    for api in APIS {
        let sim = sim().await;
        let http = http(&sim, api);
        let wrong = Credentials { password: Secret::new("not-the-password"), ..email(&sim) };
        let e = http.login(&wrong).await.unwrap_err();
        assert!(matches!(e, CloudError::WrongPassword { .. }), "{api:?}: {e:?}");
        assert!(e.to_string().contains("wrong e-mail/phone or password"));
        assert!(!e.to_string().contains("not-the-password"));

        let nobody = Credentials { login: LoginId::Email("nobody@example.com".into()), ..email(&sim) };
        assert!(matches!(http.login(&nobody).await, Err(CloudError::NoSuchAccount { .. })), "{api:?}");

        sim.forbid_password_login(true);
        let e = http.login(&email(&sim)).await.unwrap_err();
        match api {
            EwelinkApi::V2 => {
                assert_eq!(e, CloudError::AppIdNotAllowed);
                assert!(e.to_string().contains("407") && e.to_string().contains("access_token"), "{e}");
            }
            EwelinkApi::V1 => assert!(matches!(e, CloudError::AppIdRefused { code: 406, .. }), "{e:?}"),
        }
        sim.forbid_password_login(false);

        sim.quota_exceeded(true);
        let e = http.login(&email(&sim)).await.unwrap_err();
        assert_eq!(e, CloudError::Quota, "{api:?}");
        assert!(e.to_string().contains("412"));
        sim.quota_exceeded(false);

        let bad_secret = http_with_secret(&sim, api, "a-secret-that-is-wrong");
        let e = bad_secret.login(&email(&sim)).await.unwrap_err();
        assert!(matches!(e, CloudError::AppIdRefused { .. }), "{api:?}: {e:?}");
        assert!(e.to_string().contains("app_secret"));
    }
}

#[tokio::test]
async fn a_region_redirect_is_followed_once_and_remembered() {
    for api in APIS {
        let sim = sim().await;
        let http = http(&sim, api);
        sim.redirect_logins("us", 1);
        let tokens = http.login(&email(&sim)).await.unwrap();
        assert_eq!(http.region(), Region::Us, "{api:?}: the new region is remembered");
        assert_eq!(tokens.region, Region::Us);
        assert_eq!(tokens.apikey, USER_APIKEY);
        let c = sim.counters();
        assert_eq!((c.region_redirects, c.logins), (1, 1), "{api:?}");

        // A cloud that keeps redirecting is not followed forever.
        sim.redirect_logins("as", 10);
        let e = http.login(&email(&sim)).await.unwrap_err();
        assert!(matches!(e, CloudError::RedirectLoop { .. }), "{api:?}: {e:?}");
        assert_eq!(sim.counters().region_redirects, 3, "{api:?}: exactly one redirect followed");
        assert_eq!(http.region(), Region::As);
    }
}

#[tokio::test]
async fn a_v1_redirect_without_a_region_asks_the_region_query() {
    let sim = sim().await;
    let http = http(&sim, EwelinkApi::V1);
    sim.redirect_logins_without_region("as", 1);
    http.login(&email(&sim)).await.unwrap();
    assert_eq!(http.region(), Region::As);
    let c = sim.counters();
    assert_eq!((c.region_redirects, c.logins, c.bad_requests), (1, 1, 0), "{c:?}");
}

#[tokio::test]
async fn thousands_of_devices_are_listed() {
    for api in APIS {
        let options = SimOptions { extra_devices: 3000, ..SimOptions::default() };
        let sim = SimCloud::start(options).await.unwrap();
        let http = http(&sim, api);
        let tokens = http.login(&email(&sim)).await.unwrap();
        let devices = http.devices(&tokens.at).await.unwrap();
        assert_eq!(devices.len(), sim.device_ids().len(), "{api:?}");
        assert!(devices.len() > 3000);
        assert!(devices.iter().filter(|d| d.deviceid.starts_with('a')).all(|d| d.uiid == Some(1)));
    }
}

#[tokio::test]
async fn an_expired_token_is_refreshed_without_a_login() {
    for api in APIS {
        let sim = sim().await;
        let dir = tempfile::tempdir().unwrap();
        let auth = eager_auth(http(&sim, api), Some(email(&sim)), dir.path().join("s.json"));
        assert!(!list(&auth).await.unwrap().is_empty());
        sim.expire_access_tokens();
        assert!(!list(&auth).await.unwrap().is_empty(), "{api:?}");
        let c = sim.counters();
        assert_eq!((c.logins, c.refreshes, c.device_lists), (1, 1, 2), "{api:?}: {c:?}");

        // A refused refresh token: one login, no more.
        sim.expire_access_tokens();
        sim.expire_refresh_tokens();
        assert!(!list(&auth).await.unwrap().is_empty(), "{api:?}");
        let c = sim.counters();
        assert_eq!((c.logins, c.refresh_failures), (2, 1), "{api:?}: {c:?}");
        assert_eq!(c.rate_violations, 0, "{api:?}: the retries are paced");
    }
}

#[tokio::test]
async fn a_pre_obtained_session_works_without_any_login() {
    for api in APIS {
        let sim = sim().await;
        let issued = sim.issue_session();
        let session = Tokens {
            at: Secret::new(issued.at),
            rt: Some(Secret::new(issued.rt)),
            apikey: issued.apikey,
            region: Region::Eu,
        };
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(http(&sim, api), None, Some(session), dir.path().join("s.json"));
        let tokens = auth.tokens().await.unwrap();
        assert!(!auth.http().devices(&tokens.at).await.unwrap().is_empty());
        // Even expiry is handled with the refresh token alone.
        sim.expire_access_tokens();
        assert!(!list(&auth).await.unwrap().is_empty());
        let c = sim.counters();
        assert_eq!((c.logins, c.refreshes), (0, 1), "{api:?}: {c:?}");

        // Without a refresh token or a password, a dead session is a clear error, not a login attempt.
        sim.revoke_access_tokens();
        sim.expire_refresh_tokens();
        let e = list(&auth).await.unwrap_err();
        assert_eq!(e, CloudError::NoCredentials, "{api:?}");
        assert_eq!(sim.counters().logins, 0);
    }
}

#[tokio::test]
async fn tokens_survive_a_restart_in_a_private_state_file() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state").join("ewelink_home.json");
    let first = auth(http(&sim, EwelinkApi::V2), Some(email(&sim)), None, file.clone());
    let tokens = first.tokens().await.unwrap();
    drop(first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "tokens are readable by their owner only");
    }
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains(tokens.at.expose()), "the file holds the real token, not a mask");
    assert!(!saved.contains(&sim.options().password), "never the password");

    // "Restart": a new client with the same account reuses the session.
    let second = auth(http(&sim, EwelinkApi::V2), Some(email(&sim)), None, file.clone());
    let again = second.tokens().await.unwrap();
    assert_eq!(again.at, tokens.at);
    assert!(!second.http().devices(&again.at).await.unwrap().is_empty());
    assert_eq!(sim.counters().logins, 1, "no second login after a restart");

    // Another account (or API generation) does not take over someone else's session.
    let other = Credentials { login: LoginId::Phone(sim.options().phone.clone()), ..email(&sim) };
    let third = auth(http(&sim, EwelinkApi::V2), Some(other), None, file.clone());
    assert_ne!(third.tokens().await.unwrap().at, tokens.at);
    let fourth = auth(http(&sim, EwelinkApi::V1), Some(email(&sim)), None, file);
    fourth.tokens().await.unwrap();
    assert_eq!(sim.counters().logins, 3);
}

#[tokio::test]
async fn a_failing_login_is_not_retried_in_a_loop() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = Credentials { password: Secret::new("wrong-password"), ..email(&sim) };
    let auth = auth(http(&sim, EwelinkApi::V2), Some(wrong), None, dir.path().join("s.json"));
    assert!(matches!(auth.tokens().await, Err(CloudError::WrongPassword { .. })));
    let again = auth.tokens().await.unwrap_err();
    assert!(matches!(again, CloudError::LoginThrottled { .. }), "{again:?}");
    assert!(again.to_string().contains("wrong e-mail/phone or password"), "{again}");
    assert_eq!(sim.counters().login_failures, 1, "the second attempt never reached the cloud");
}

// ----- the simulator is strict -----

async fn raw_post(sim: &SimCloud, path: &str, headers: &[(&str, String)], body: &str) -> Value {
    let client = reqwest::Client::new();
    let mut req = client.post(format!("{}{path}", sim.base_url())).body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap().json().await.unwrap()
}

fn v1_login_body(sim: &SimCloud, nonce: &str, ts: u64, version: u64) -> String {
    json!({"appid": sim.options().app_id, "email": sim.options().email, "password": sim.options().password,
           "nonce": nonce, "ts": ts, "version": version})
    .to_string()
}

#[tokio::test]
async fn the_simulator_refuses_what_the_document_forbids() {
    hub2mqtt::install_crypto_provider();
    let sim = sim().await;
    let secret = sim.options().app_secret.clone();
    let signed = |body: &str| {
        vec![
            ("Content-Type", "application/json".to_owned()),
            ("Authorization", format!("Sign {}", sign::sign(&secret, body.as_bytes()))),
        ]
    };
    let now = sign::now_s();
    let good = v1_login_body(&sim, "abcd1234", now, 8);
    assert!(raw_post(&sim, "/api/user/login", &signed(&good), &good).await.get("at").is_some());
    // The same nonce again.
    assert_eq!(raw_post(&sim, "/api/user/login", &signed(&good), &good).await["error"], 400);
    // Signed over other bytes than those sent (a space added after signing).
    let tampered = good.replace("\"ts\":", "\"ts\": ").replace("abcd1234", "abcd1235");
    assert_eq!(raw_post(&sim, "/api/user/login", &signed(&good), &tampered).await["error"], 406);
    // Milliseconds instead of seconds; version 7; no Content-Type; no signature.
    let ms = v1_login_body(&sim, "abcd1236", sign::now_ms(), 8);
    assert_eq!(raw_post(&sim, "/api/user/login", &signed(&ms), &ms).await["error"], 400);
    let v7 = v1_login_body(&sim, "abcd1237", now, 7);
    assert_eq!(raw_post(&sim, "/api/user/login", &signed(&v7), &v7).await["error"], 400);
    let b = v1_login_body(&sim, "abcd1238", now, 8);
    let no_type = vec![signed(&b)[1].clone()];
    assert_eq!(raw_post(&sim, "/api/user/login", &no_type, &b).await["error"], 400);
    let b = v1_login_body(&sim, "abcd1239", now, 8);
    assert_eq!(
        raw_post(&sim, "/api/user/login", &[("Content-Type", "application/json".into())], &b).await["error"],
        400
    );
    // v2: the common parameters moved to headers; a body that still carries them is refused.
    let v2 = json!({"countryCode": "+86", "email": sim.options().email, "password": sim.options().password,
                    "appid": sim.options().app_id})
    .to_string();
    let mut h = signed(&v2);
    h.push(("X-CK-Appid", sim.options().app_id.clone()));
    h.push(("X-CK-Nonce", "zzzz0001".into()));
    let answer = raw_post(&sim, "/v2/user/login", &h, &v2).await;
    assert_eq!((answer["error"].as_i64(), answer.get("data").is_some()), (Some(400), true), "{answer}");
    assert_eq!(sim.counters().logins, 1);
}
