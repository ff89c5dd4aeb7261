//! The iKuai client against the simulated router, over real sockets on 127.0.0.1: login and calls as the
//! document says, batching, session expiry, the 4.x envelope, wrong passwords, HTTP errors, malformed and
//! hanging answers, an unreachable router, https certificates, and the simulator's own strictness.

use std::sync::Arc;
use std::time::Duration;

use hub2mqtt::config::IkuaiConfig;
use hub2mqtt::ikuai::client::{Client, ClientError, Envelope, passwd_hash};
use hub2mqtt::secret::Secret;
use hub2mqtt::sim::ikuai::{Envelope as SimEnvelope, FUNCS, Fault, SimOptions, SimRouter};
use serde_json::{Value, json};

fn config(sim: &SimRouter, password: &str) -> IkuaiConfig {
    IkuaiConfig {
        id: "home".into(),
        url: sim.url(),
        password: Some(Secret::new(password)),
        timeout_s: 2,
        ..IkuaiConfig::default()
    }
}

async fn router(options: SimOptions) -> SimRouter {
    SimRouter::start(SimOptions { password: "s3cret-pw".into(), ..options }).await.unwrap()
}

fn client(sim: &SimRouter) -> Client {
    Client::new(&config(sim, "s3cret-pw")).unwrap()
}

#[tokio::test]
async fn logs_in_and_batches_types_in_one_call() {
    let sim = router(SimOptions::default()).await;
    let c = client(&sim);
    let data = c.call("homepage", &["sysstat", "ac_status", "snapshoot"], &[]).await.unwrap();
    assert_eq!(data["sysstat"]["cpu"][0], "9.45%");
    assert_eq!(data["sysstat"]["online_user"]["count"], 7);
    assert_eq!(data["ac_status"]["ap_count"], 0);
    assert_eq!(data["snapshoot_wan"][0]["default_route"], 1);
    assert_eq!(data["snapshoot_lan"][0]["ip_addr"], "192.168.9.1");
    let data = c.call("monitor_iface", &["iface_check", "iface_stream"], &[]).await.unwrap();
    assert_eq!(data["iface_check"][0]["result"], "success");
    let stats = sim.stats();
    assert_eq!((stats.logins_ok, stats.calls_ok, stats.logins_failed), (1, 2, 0));
    assert_eq!(c.envelope(), Some(Envelope::V3));
}

#[tokio::test]
async fn every_documented_call_answers() {
    let sim = router(SimOptions::default()).await;
    let c = client(&sim);
    for (func, types) in FUNCS {
        for ty in *types {
            let extra = [("limit", json!("0,100"))];
            let data = c.call(func, &[ty], &extra).await.unwrap_or_else(|e| panic!("{func}/{ty}: {e}"));
            assert!(!data.is_empty(), "{func}/{ty}");
        }
    }
    assert_eq!(sim.stats().logins_ok, 1);
}

#[tokio::test]
async fn expired_session_is_renewed_once_transparently() {
    let sim = router(SimOptions::default()).await;
    let c = client(&sim);
    c.call("homepage", &["sysstat"], &[]).await.unwrap();
    sim.expire_sessions();
    let data = c.call("homepage", &["sysstat"], &[]).await.unwrap();
    assert_eq!(data["sysstat"]["stream"]["connect_num"], 158);
    let stats = sim.stats();
    assert_eq!((stats.logins_ok, stats.calls_unauthenticated, stats.calls_ok), (2, 1, 2));

    // Two calls refused together share one new login.
    sim.expire_sessions();
    let c = Arc::new(c);
    let (a, b) = tokio::join!(c.call("homepage", &["sysstat"], &[]), c.call("monitor_iface", &["iface_check"], &[]));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(sim.stats().logins_ok, 3);
}

#[tokio::test]
async fn idle_sessions_expire_by_ttl() {
    let sim = router(SimOptions { session_ttl: Some(Duration::from_millis(200)), ..SimOptions::default() }).await;
    let c = client(&sim);
    c.call("homepage", &["sysstat"], &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.call("homepage", &["sysstat"], &[]).await.unwrap();
    assert_eq!(sim.stats().logins_ok, 2);
}

#[tokio::test]
async fn firmware_4_envelope_and_its_expiry() {
    let sim = router(SimOptions { envelope: SimEnvelope::V4, ..SimOptions::default() }).await;
    let c = client(&sim);
    let data = c.call("homepage", &["sysstat"], &[]).await.unwrap();
    assert_eq!(data["sysstat"]["online_user"]["count"], 7);
    assert_eq!(c.envelope(), Some(Envelope::V4));
    sim.expire_sessions();
    c.call("homepage", &["sysstat"], &[]).await.unwrap();
    assert_eq!(sim.stats().logins_ok, 2);
    // A firmware upgrade between two calls is fine too.
    sim.set_envelope(SimEnvelope::V3);
    c.call("homepage", &["sysstat"], &[]).await.unwrap();
    assert_eq!(c.envelope(), Some(Envelope::V3));
}

#[tokio::test]
async fn wrong_password_is_a_clear_error_naming_the_router() {
    let sim = router(SimOptions::default()).await;
    let c = Client::new(&config(&sim, "not-the-password")).unwrap();
    let err = c.call("homepage", &["sysstat"], &[]).await.unwrap_err();
    assert!(err.is_login_refused(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("router `home`") && text.contains("login as `admin` refused"), "{text}");
    assert!(text.contains("wrong username or password"), "{text}");
    // The router saw one failed login, no call.
    let stats = sim.stats();
    assert_eq!((stats.logins_failed, stats.calls_ok, stats.calls_unauthenticated), (1, 0, 0));

    // The password changes on the router: existing sessions live on, the next login fails.
    let good = client(&sim);
    good.call("homepage", &["sysstat"], &[]).await.unwrap();
    sim.set_password("changed-pw");
    good.call("homepage", &["sysstat"], &[]).await.unwrap();
    sim.expire_sessions();
    assert!(good.call("homepage", &["sysstat"], &[]).await.unwrap_err().is_login_refused());
}

#[tokio::test]
async fn concurrent_calls_share_one_refused_login() {
    let sim = router(SimOptions::default()).await;
    let c = Arc::new(Client::new(&config(&sim, "not-the-password")).unwrap());
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.call("homepage", &["sysstat"], &[]).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().unwrap_err().is_login_refused());
    }
    assert_eq!(sim.stats().logins_failed, 1);
}

#[tokio::test]
async fn http_500_and_malformed_answers_are_typed_errors() {
    let sim = router(SimOptions::default()).await;
    let c = client(&sim);
    c.login().await.unwrap();
    sim.set_fault(Some(Fault::Http500));
    let err = c.call("homepage", &["sysstat"], &[]).await.unwrap_err();
    assert!(matches!(err, ClientError::Http { status: 500, .. }), "{err:?}");
    sim.set_fault(Some(Fault::MalformedJson));
    let err = c.call("homepage", &["sysstat"], &[]).await.unwrap_err();
    assert!(matches!(err, ClientError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("router `home`"));
    sim.set_fault(None);
    c.call("homepage", &["sysstat"], &[]).await.unwrap();
}

#[tokio::test]
async fn hanging_router_times_out() {
    let sim = router(SimOptions::default()).await;
    let c = Client::new(&IkuaiConfig { timeout_s: 1, ..config(&sim, "s3cret-pw") }).unwrap();
    c.login().await.unwrap();
    sim.set_fault(Some(Fault::Hang));
    let err = c.call("homepage", &["sysstat"], &[]).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { timeout_s: 1, .. }), "{err:?}");
    sim.set_fault(Some(Fault::Delay(Duration::from_millis(200))));
    c.call("homepage", &["sysstat"], &[]).await.unwrap();
}

#[tokio::test]
async fn unreachable_router_and_its_return() {
    let sim = router(SimOptions::default()).await;
    let c = client(&sim);
    c.call("homepage", &["sysstat"], &[]).await.unwrap();
    sim.go_down().await;
    let err = c.call("homepage", &["sysstat"], &[]).await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    sim.come_up().await.unwrap();
    c.call("homepage", &["sysstat"], &[]).await.unwrap();
    // Sessions survive an outage, as on a real router.
    assert_eq!(sim.stats().logins_ok, 1);
}

#[tokio::test]
async fn going_down_drops_hanging_requests() {
    let sim = router(SimOptions::default()).await;
    let c = Client::new(&IkuaiConfig { timeout_s: 20, ..config(&sim, "s3cret-pw") }).unwrap();
    c.login().await.unwrap();
    sim.set_fault(Some(Fault::Hang));
    let c = Arc::new(c);
    let pending = tokio::spawn({
        let c = c.clone();
        async move { c.call("homepage", &["sysstat"], &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.go_down().await;
    let result = tokio::time::timeout(Duration::from_secs(10), pending).await.unwrap().unwrap();
    assert!(result.is_err(), "{result:?}");
    sim.set_fault(None);
}

#[tokio::test]
async fn at_most_two_requests_in_flight() {
    let sim = router(SimOptions::default()).await;
    sim.set_fault(Some(Fault::Delay(Duration::from_millis(100))));
    let c = Arc::new(client(&sim));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.call("homepage", &["sysstat"], &[]).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let stats = sim.stats();
    assert_eq!(stats.calls_ok, 8);
    assert_eq!(stats.logins_ok, 1);
    assert_eq!(stats.max_in_flight, 2, "{stats:?}");
}

#[tokio::test]
async fn https_certificates_are_checked_unless_insecure_tls() {
    let sim = router(SimOptions { tls: true, ..SimOptions::default() }).await;
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let strict = client(&sim);
    let err = strict.call("homepage", &["sysstat"], &[]).await.unwrap_err();
    assert!(matches!(err, ClientError::Certificate { .. }), "{err:?}");
    assert!(err.to_string().contains("insecure_tls = true"), "{err}");
    let lax = Client::new(&IkuaiConfig { insecure_tls: true, ..config(&sim, "s3cret-pw") }).unwrap();
    let data = lax.call("homepage", &["sysstat"], &[]).await.unwrap();
    assert_eq!(data["sysstat"]["cpu"][0], "9.45%");
}

#[tokio::test]
async fn secrets_learned_are_redacted() {
    let sim = router(SimOptions::default()).await;
    let c = client(&sim);
    c.login().await.unwrap();
    let hash = passwd_hash("s3cret-pw");
    assert_eq!(hub2mqtt::secret::redact(&format!("passwd={hash}")), format!("passwd={}", hub2mqtt::secret::MASK));
}

// ---- the simulator's strictness ---------------------------------------------------------------------

async fn post(url: String, body: reqwest::Body, content_type: &str, cookie: Option<&str>) -> (Value, Option<String>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut req = reqwest::Client::new().post(url).header("content-type", content_type).body(body);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.unwrap();
    let cookie = resp.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    (resp.json().await.unwrap(), cookie)
}

#[tokio::test]
async fn simulator_is_strict_about_the_document() {
    let sim = router(SimOptions::default()).await;
    let login = format!("{}/Action/login", sim.url());
    let call = format!("{}/Action/call", sim.url());
    let passwd = passwd_hash("s3cret-pw");
    let pass = hub2mqtt::ikuai::client::pass_field(&passwd);

    // A form body is refused.
    let form = format!("username=admin&passwd={passwd}&pass={pass}");
    let (v, cookie) = post(login.clone(), form.into(), "application/x-www-form-urlencoded", None).await;
    assert_eq!(v, json!({"Result": 10001, "ErrMsg": "Post data error"}));
    assert!(cookie.is_none());
    // A wrong `pass` is refused even with the right `passwd`.
    let body = json!({"username": "admin", "passwd": passwd, "pass": "c2FsdF8xMXMzY3JldC1wdw=="}).to_string();
    let (v, cookie) = post(login.clone(), body.into(), "application/json", None).await;
    assert_eq!(v["Result"], 10001);
    assert!(cookie.is_none());
    // The right body: 10000 and a 32-hex sess_key.
    let body = json!({"username": "admin", "passwd": passwd, "pass": pass}).to_string();
    let (v, cookie) = post(login.clone(), body.into(), "application/json", None).await;
    assert_eq!(v, json!({"Result": 10000, "ErrMsg": "Success"}));
    let cookie = cookie.unwrap();
    let key = cookie.strip_prefix("sess_key=").unwrap().split(';').next().unwrap().to_owned();
    assert!(key.len() == 32 && key.chars().all(|c| c.is_ascii_hexdigit()), "{cookie}");

    let show = json!({"func_name": "homepage", "action": "show", "param": {"TYPE": "ac_status,dhcp_addrpool_num"}});
    // No cookie, or an unknown key: 10014.
    let (v, _) = post(call.clone(), show.to_string().into(), "application/json", None).await;
    assert_eq!(v, json!({"Result": 10014, "ErrMsg": "no login authentication"}));
    let (v, _) = post(call.clone(), show.to_string().into(), "application/json", Some("sess_key=0123")).await;
    assert_eq!(v["Result"], 10014);
    // The document's cookie: merged Data.
    let full = format!("username=admin; login=1; sess_key={key}");
    let (v, _) = post(call.clone(), show.to_string().into(), "application/json", Some(&full)).await;
    assert_eq!(v["Result"], 30000);
    assert_eq!(
        v["Data"],
        json!({"ac_status": {"ap_count": 0, "ap_online": 0}, "dhcp_addrpool_num": {"available_num": 290}})
    );
    // sess_key alone works too.
    let (v, _) =
        post(call.clone(), show.to_string().into(), "application/json", Some(&format!("sess_key={key}"))).await;
    assert_eq!(v["Result"], 30000);
    // Unknown TYPE, wrong action, bad limit: refused.
    for bad in [
        json!({"func_name": "homepage", "action": "show", "param": {"TYPE": "nope"}}),
        json!({"func_name": "homepage", "action": "edit", "param": {"TYPE": "sysstat"}}),
        json!({"func_name": "monitor_lanip", "action": "show", "param": {"TYPE": "data", "limit": "all"}}),
        json!({"func_name": "homepage", "action": "show"}),
    ] {
        let (v, _) = post(call.clone(), bad.to_string().into(), "application/json", Some(&full)).await;
        assert_eq!(v["Result"], 10001, "{bad}");
    }
}

#[tokio::test]
async fn simulator_counters_move_and_clients_come_and_go() {
    let sim = router(SimOptions { clients: Some(3000), ..SimOptions::default() }).await;
    let c = client(&sim);
    let a = c.call("homepage", &["sysstat"], &[]).await.unwrap();
    let total = c.call("monitor_lanip", &["total"], &[]).await.unwrap();
    assert_eq!(total["total"], 2999); // the document's second client is IPv6-only
    let page = c.call("monitor_lanip", &["data", "total"], &[("limit", json!("1000,500"))]).await.unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 500);
    assert_eq!(page["total"], 2999);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = c.call("homepage", &["sysstat"], &[]).await.unwrap();
    let up = |v: &serde_json::Map<String, Value>| v["sysstat"]["uptime"].as_u64().unwrap();
    let total_up = |v: &serde_json::Map<String, Value>| v["sysstat"]["stream"]["total_up"].as_u64().unwrap();
    assert!(up(&b) > up(&a) && total_up(&b) > total_up(&a));
    assert!(sim.remove_client("36:6E:24:13:BA:6E"));
    let total = c.call("monitor_lanip", &["total"], &[]).await.unwrap();
    assert_eq!(total["total"], 2998);
}
