//! The eWeLink WebSocket client and its supervisor against the strict simulated cloud over real sockets on
//! 127.0.0.1: handshake, heartbeat both ways, requests matched by sequence, 503/504/timeouts, pushes,
//! `sysmsg`, half-open detection, reconnection with backoff, 406 and token renewal.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hub2mqtt::config::{EwelinkApi, Region};
use hub2mqtt::ewelink::auth::Auth;
use hub2mqtt::ewelink::error::CloudError;
use hub2mqtt::ewelink::http::{Credentials, Http, LoginId};
use hub2mqtt::ewelink::pace::PaceRules;
use hub2mqtt::ewelink::session::{self, SessionTuning};
use hub2mqtt::ewelink::sign;
use hub2mqtt::ewelink::ws::{self, RequestError, WsClient, WsEvent};
use hub2mqtt::secret::Secret;
use hub2mqtt::sim::ewelink::{OWNER_APIKEY, SimCloud, SimOptions, USER_APIKEY, ids};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

async fn sim_with(hb_interval_s: u64) -> SimCloud {
    let options = SimOptions { hb_interval_s, heartbeat_grace: Duration::ZERO, ..SimOptions::default() };
    SimCloud::start(options).await.unwrap()
}

fn auth(sim: &SimCloud, api: EwelinkApi, dir: &tempfile::TempDir) -> Arc<Auth> {
    let o = sim.options();
    let http = Http::new(
        api,
        Region::Eu,
        Some(sim.base_url()),
        o.app_id.clone(),
        Secret::new(o.app_secret.clone()),
        PaceRules::cloud_http(),
    )
    .unwrap();
    let creds = Credentials {
        login: LoginId::Email(o.email.clone()),
        password: Secret::new(o.password.clone()),
        country_code: "+49".into(),
    };
    Arc::new(Auth::new(Arc::new(http), Some(creds), None, dir.path().join("state.json"), Duration::from_secs(60)))
}

/// Logs in, dispatches and connects: a handshaken socket.
async fn connect(sim: &SimCloud, auth: &Auth) -> (ws::Socket, ws::Session) {
    let tokens = auth.tokens().await.unwrap();
    let target = auth.http().dispatch(&tokens.at).await.unwrap();
    ws::connect(&target.url, tokens.at.expose(), &tokens.apikey, &sim.options().app_id, WAIT).await.unwrap()
}

/// A connection run in the background, with its client and events.
struct Running {
    session: ws::Session,
    client: Arc<WsClient>,
    events: mpsc::Receiver<WsEvent>,
    stop: CancellationToken,
    ended: tokio::task::JoinHandle<String>,
}

async fn run(sim: &SimCloud, auth: &Auth) -> Running {
    let (socket, session) = connect(sim, auth).await;
    let client = Arc::new(WsClient::new(PaceRules::none()));
    let (tx, events) = mpsc::channel(100);
    let stop = CancellationToken::new();
    let (c, s) = (client.clone(), stop.clone());
    let ended = tokio::spawn(async move { ws::run(socket, session, &c, &tx, &s).await });
    assert!(client.wait_connected(WAIT).await);
    Running { session, client, events, stop, ended }
}

async fn next_event(events: &mut mpsc::Receiver<WsEvent>, pred: impl Fn(&WsEvent) -> bool) -> WsEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("events ended");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
    .expect("no such event in time")
}

fn params(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn handshake_then_heartbeats_keep_the_socket_alive() {
    let sim = sim_with(1).await; // the sim closes a client silent for 1 + 7 s
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V1, &dir);
    let r = run(&sim, &auth).await;
    assert_eq!(r.session.hb_interval, Duration::from_secs(1), "hbInterval comes from the handshake's config");
    // Long enough that a client without pings would be cut off (8 s of silence).
    assert!(sim.wait_until(WAIT, |s| s.counters().pings >= 12).await, "{:?}", sim.counters());
    assert_eq!(sim.counters().heartbeat_kills, 0);
    assert!(r.client.is_connected());
    r.stop.cancel();
    r.ended.await.unwrap();
    assert!(!r.client.is_connected());
}

#[tokio::test]
async fn the_simulator_closes_a_silent_client() {
    let sim = sim_with(1).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V2, &dir);
    let (mut socket, _) = connect(&sim, &auth).await;
    // Say nothing: the sim must close within hbInterval + 7 s.
    let closed = tokio::time::timeout(WAIT, async {
        while let Some(Ok(msg)) = socket.next().await {
            if matches!(msg, Message::Close(_)) {
                return true;
            }
        }
        true
    })
    .await;
    assert_eq!(closed, Ok(true));
    assert_eq!(sim.counters().heartbeat_kills, 1);
}

#[tokio::test]
async fn handshake_errors_are_told_apart() {
    let sim = sim_with(145).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V2, &dir);
    let tokens = auth.tokens().await.unwrap();
    let url = auth.http().dispatch(&tokens.at).await.unwrap().url;
    let appid = sim.options().app_id.clone();
    let e = ws::connect(&url, "0000000000", &tokens.apikey, &appid, WAIT).await.unwrap_err();
    assert_eq!(e, CloudError::TokenInvalid);
    let e = ws::connect(&url, tokens.at.expose(), &tokens.apikey, "not-the-app-id", WAIT).await.unwrap_err();
    assert!(matches!(e, CloudError::Rejected { code: 400, .. }), "{e:?}");
    sim.fail_handshakes_406(1);
    let e = ws::connect(&url, tokens.at.expose(), &tokens.apikey, &appid, WAIT).await.unwrap_err();
    assert_eq!(e, CloudError::LoggedInElsewhere);
    assert!(e.to_string().contains("own eWeLink account"), "the advice is in the message: {e}");
    sim.expire_access_tokens();
    let e = ws::connect(&url, tokens.at.expose(), &tokens.apikey, &appid, WAIT).await.unwrap_err();
    assert_eq!(e, CloudError::TokenExpired);
    let c = sim.counters();
    assert_eq!((c.handshakes, c.handshakes_406), (0, 1));
}

#[tokio::test]
async fn update_is_acked_by_sequence_and_pushed_back_by_the_device() {
    let sim = sim_with(145).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V1, &dir);
    let mut r = run(&sim, &auth).await;
    let change = params(json!({"switches": [{"switch": "on", "outlet": 1}]}));
    let ack = r.client.update(ids::TWO_CHANNEL, USER_APIKEY, USER_APIKEY, &change, WAIT).await.unwrap();
    assert_eq!(ack["error"], 0);
    let frames = sim.updates();
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(ack["sequence"], f["sequence"], "the ack carries the request's sequence");
    assert_eq!(
        (
            f["action"].as_str(),
            f["apikey"].as_str(),
            f["selfApikey"].as_str(),
            f["userAgent"].as_str(),
            f["ts"].as_u64()
        ),
        (Some("update"), Some(USER_APIKEY), Some(USER_APIKEY), Some("app"), Some(0))
    );
    assert_eq!(f["deviceid"], ids::TWO_CHANNEL);
    assert_eq!(f["params"], json!({"switches": [{"switch": "on", "outlet": 1}]}));
    // The device pushes its new state.
    let pushed =
        next_event(&mut r.events, |e| matches!(e, WsEvent::Params { deviceid, .. } if deviceid == ids::TWO_CHANNEL))
            .await;
    let WsEvent::Params { params: p, .. } = pushed else { unreachable!() };
    assert_eq!(p["switches"][1], json!({"switch": "on", "outlet": 1}));

    // A shared device is commanded with its owner's apikey.
    let ack = r.client.update(ids::SHARED, OWNER_APIKEY, USER_APIKEY, &params(json!({"switch": "on"})), WAIT).await;
    assert!(ack.is_ok(), "{ack:?}");
    let wrong = r.client.update(ids::SHARED, USER_APIKEY, USER_APIKEY, &params(json!({"switch": "on"})), WAIT).await;
    assert!(matches!(wrong, Err(RequestError::Refused { code: 403, .. })), "{wrong:?}");
    assert_eq!(sim.counters().bad_requests, 0);
}

#[tokio::test]
async fn watchers_see_each_update_frame_when_it_arrives() {
    let sim = sim_with(145).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V2, &dir);
    let r = run(&sim, &auth).await;
    let mut watch = sim.watch_updates();
    let before = std::time::Instant::now();
    let change = params(json!({"switch": "on"}));
    r.client.update(ids::SWITCH_UIID1, USER_APIKEY, USER_APIKEY, &change, WAIT).await.unwrap();
    let (at, frame) = watch.try_recv().expect("the frame, before its ack");
    assert!(at >= before && at <= std::time::Instant::now());
    assert_eq!((frame["deviceid"].as_str(), &frame["params"]), (Some(ids::SWITCH_UIID1), &json!({"switch": "on"})));
    assert!(watch.try_recv().is_err(), "one frame, one notice");
}

#[tokio::test]
async fn offline_unresponsive_and_late_devices_fail_with_their_reason() {
    let sim = sim_with(145).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V2, &dir);
    let r = run(&sim, &auth).await;
    let on = params(json!({"switch": "on"}));
    let offline = r.client.update(ids::OFFLINE, USER_APIKEY, USER_APIKEY, &on, WAIT).await;
    assert!(matches!(offline, Err(RequestError::Refused { code: 503, .. })), "{offline:?}");
    sim.set_responsive(ids::SWITCH, false);
    let silent = r.client.update(ids::SWITCH, USER_APIKEY, USER_APIKEY, &on, WAIT).await;
    assert!(matches!(silent, Err(RequestError::Refused { code: 504, .. })), "{silent:?}");
    sim.set_responsive(ids::SWITCH, true);
    sim.set_ack_delay(Duration::from_secs(3));
    let late = r.client.update(ids::SWITCH, USER_APIKEY, USER_APIKEY, &on, Duration::from_millis(500)).await;
    assert_eq!(late, Err(RequestError::Timeout(Duration::from_millis(500))));
    // The late ack arrives after the timeout and is dropped; the socket stays usable.
    sim.set_ack_delay(Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(r.client.query(ids::SWITCH, USER_APIKEY, USER_APIKEY, &["switch"], WAIT).await.is_ok());
}

#[tokio::test]
async fn concurrent_requests_get_unique_sequences_and_their_own_answers() {
    let sim = sim_with(145).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V1, &dir);
    let r = run(&sim, &auth).await;
    let devices = [ids::SWITCH, ids::DIMMER_36, ids::COVER_11, ids::STRIP_59, ids::FAN_34, ids::TH_RELAY];
    let queries = (0..30).map(|i| {
        let c = r.client.clone();
        let id = devices[i % devices.len()];
        async move { (id, c.query(id, USER_APIKEY, USER_APIKEY, &[], WAIT).await.unwrap()) }
    });
    let answers = futures_util::future::join_all(queries).await;
    for (id, answer) in &answers {
        assert_eq!(answer["deviceid"], *id, "each answer went to its own request");
    }
    let mut seqs: Vec<u64> = sim.queries().iter().map(|q| q["sequence"].as_str().unwrap().parse().unwrap()).collect();
    let n = seqs.len();
    seqs.sort();
    seqs.dedup();
    assert_eq!((n, seqs.len()), (30, 30), "sequences are unique");
    assert!(seqs[0] >= sign::now_ms() - 60_000, "sequences are millisecond timestamps");
}

#[tokio::test]
async fn pushes_and_sysmsg_become_events() {
    let sim = sim_with(145).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V2, &dir);
    let mut r = run(&sim, &auth).await;
    sim.push_from_device(ids::TH_RELAY, params(json!({"currentTemperature": "25.5"})));
    let e = next_event(&mut r.events, |e| matches!(e, WsEvent::Params { .. })).await;
    assert_eq!(
        e,
        WsEvent::Params { deviceid: ids::TH_RELAY.into(), params: params(json!({"currentTemperature": "25.5"})) }
    );
    sim.set_online(ids::SWITCH, false);
    let e = next_event(&mut r.events, |e| matches!(e, WsEvent::Online { .. })).await;
    assert_eq!(e, WsEvent::Online { deviceid: ids::SWITCH.into(), online: false });
    sim.press_button(ids::SWITCH_UIID1);
    let e = next_event(&mut r.events, |e| matches!(e, WsEvent::Params { .. })).await;
    assert_eq!(e, WsEvent::Params { deviceid: ids::SWITCH_UIID1.into(), params: params(json!({"switch": "off"})) });
}

#[tokio::test]
async fn an_animated_cloud_keeps_pushing_readings() {
    let options = SimOptions { animate: Some(Duration::from_millis(100)), ..SimOptions::default() };
    let sim = SimCloud::start(options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V2, &dir);
    let mut r = run(&sim, &auth).await;
    for _ in 0..3 {
        let e = next_event(
            &mut r.events,
            |e| matches!(e, WsEvent::Params { deviceid, .. } if deviceid == ids::POWER_METER),
        )
        .await;
        let WsEvent::Params { params: p, .. } = e else { unreachable!() };
        assert!(p["power"].as_str().unwrap().parse::<f64>().is_ok(), "{p:?}");
    }
}

#[tokio::test]
async fn a_half_open_socket_is_noticed_within_two_heartbeats() {
    let sim = sim_with(1).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V1, &dir);
    let r = run(&sim, &auth).await;
    sim.freeze_sockets(true);
    let reason = tokio::time::timeout(WAIT, r.ended).await.expect("the client noticed").unwrap();
    assert!(reason.contains("half-open"), "{reason}");
    assert!(!r.client.is_connected());
    let failed = r.client.update(ids::SWITCH, USER_APIKEY, USER_APIKEY, &params(json!({"switch": "on"})), WAIT).await;
    assert_eq!(failed, Err(RequestError::NotConnected));
}

fn quick() -> SessionTuning {
    SessionTuning {
        reconnect: (Duration::from_millis(200), Duration::from_secs(1)),
        logged_in_elsewhere: (Duration::from_secs(2), Duration::from_secs(4)),
        needs_user: (Duration::from_secs(2), Duration::from_secs(4)),
        stable_after: Duration::from_secs(60),
        handshake_timeout: WAIT,
    }
}

#[tokio::test]
async fn the_supervisor_reconnects_renews_tokens_and_reports_406_without_logging_in() {
    for api in [EwelinkApi::V1, EwelinkApi::V2] {
        let sim = sim_with(145).await;
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(&sim, api, &dir);
        let client = Arc::new(WsClient::new(PaceRules::none()));
        let (tx, mut events) = mpsc::channel(100);
        let stop = CancellationToken::new();
        let task = tokio::spawn(session::supervise(auth.clone(), client.clone(), tx, quick(), stop.clone()));
        next_event(&mut events, |e| *e == WsEvent::Connected).await;

        // A dropped socket: reported, then reconnected (with a new dispatch) by itself.
        sim.drop_sockets();
        next_event(&mut events, |e| matches!(e, WsEvent::Disconnected { .. })).await;
        next_event(&mut events, |e| *e == WsEvent::Connected).await;
        let c = sim.counters();
        assert_eq!((c.handshakes, c.dispatches, c.logins), (2, 2, 1), "{api:?}: {c:?}");

        // Tokens expired meanwhile: renewed with the refresh token on the way back, no login.
        sim.expire_access_tokens();
        sim.drop_sockets();
        next_event(&mut events, |e| *e == WsEvent::Connected).await;
        let c = sim.counters();
        assert_eq!((c.handshakes, c.refreshes, c.logins), (3, 1, 1), "{api:?}: {c:?}");

        // Logged in elsewhere: reported clearly, retried slowly, never answered with a login.
        sim.fail_handshakes_406(2);
        sim.drop_sockets();
        let problem = next_event(&mut events, |e| matches!(e, WsEvent::Problem { .. })).await;
        let WsEvent::Problem { reason } = problem else { unreachable!() };
        assert!(reason.contains("406") && reason.contains("logged in elsewhere"), "{reason}");
        next_event(&mut events, |e| *e == WsEvent::Connected).await;
        let c = sim.counters();
        assert_eq!((c.handshakes_406, c.logins, c.refreshes), (2, 1, 1), "{api:?}: {c:?}");
        assert_eq!(c.rate_violations, 0, "{api:?}");
        assert!(client.is_connected());
        stop.cancel();
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_raw_client_sees_the_documented_frames() {
    // The simulator's own protocol, as a foreign client would see it.
    let sim = sim_with(145).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth(&sim, EwelinkApi::V1, &dir);
    let (mut socket, _) = connect(&sim, &auth).await;
    socket.send(Message::text("ping")).await.unwrap();
    let pong = socket.next().await.unwrap().unwrap();
    assert_eq!(pong, Message::text("pong"));
    let query = json!({"action": "query", "deviceid": ids::DIMMER_44, "apikey": USER_APIKEY, "sequence": "1585297259553",
                       "params": ["brightness"], "ts": 0, "from": "app", "userAgent": "app"});
    socket.send(Message::text(query.to_string())).await.unwrap();
    let Message::Text(answer) = socket.next().await.unwrap().unwrap() else { panic!("not text") };
    let answer: Value = serde_json::from_str(answer.as_str()).unwrap();
    assert_eq!(
        answer,
        json!({"error": 0, "deviceid": ids::DIMMER_44, "apikey": USER_APIKEY,
                              "params": {"brightness": 40}, "sequence": "1585297259553"})
    );
    // ts must be 0 on device requests, as the document says.
    let bad = json!({"action": "update", "deviceid": ids::DIMMER_44, "apikey": USER_APIKEY, "sequence": "1585297259554",
                     "params": {"switch": "on"}, "ts": sign::now_s(), "userAgent": "app"});
    socket.send(Message::text(bad.to_string())).await.unwrap();
    let Message::Text(answer) = socket.next().await.unwrap().unwrap() else { panic!("not text") };
    let answer: Value = serde_json::from_str(answer.as_str()).unwrap();
    assert_eq!((answer["error"].as_i64(), answer["sequence"].as_str()), (Some(400), Some("1585297259554")));
    assert_eq!(sim.counters().bad_requests, 1);
}
