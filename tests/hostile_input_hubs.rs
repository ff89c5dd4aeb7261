//! Property tests over every hub parser of network or user input, each through its public path:
//!
//! - eWeLink WebSocket frames: a WebSocket server on 127.0.0.1 answers the client's `userOnline` with a
//!   random reply, answers its `update` with a random ack, and sends random frames (pushes, `sysmsg`, acks
//!   for nobody, garbage, binary);
//! - eWeLink HTTP answers (v1 and v2 envelopes, device lists, tokens, dispatch) from an HTTP server that
//!   answers whatever the case says, and every device it lists through the capability table;
//! - iKuai answers (both envelopes, every model type of the document mutated at random places) through
//!   the client, the model, the mapping and the presence merge;
//! - `set` payloads into the eWeLink device mapping, for every capability, and timer arrays/objects.
//!
//! Nothing may panic; what is accepted stays within its documented shape; an oversized answer is refused
//! with a reason that says so, without reading it all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hub2mqtt::config::{EwelinkApi, IkuaiConfig, Region};
use hub2mqtt::ewelink::devices::{self, Profile};
use hub2mqtt::ewelink::error::CloudError;
use hub2mqtt::ewelink::http::{CloudDevice, Credentials, Http, LoginId, Tokens};
use hub2mqtt::ewelink::pace::PaceRules;
use hub2mqtt::ewelink::timers;
use hub2mqtt::ewelink::ws::{self, RequestError, WsClient, WsEvent};
use hub2mqtt::hub::CommandOp;
use hub2mqtt::ikuai::client::{Client as RouterClient, ClientError};
use hub2mqtt::ikuai::mapping::{RouterReadings, SlowReadings, router_view};
use hub2mqtt::ikuai::model::{self, DataList, Homepage, LanClient, MonitorIface, MonitorL7qos, Oddities};
use hub2mqtt::ikuai::presence::merge_clients;
use hub2mqtt::secret::Secret;
use hub2mqtt::sim::ewelink::fixtures;
use hub2mqtt::sim::ikuai::examples::example_data;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// One runtime for every case (proptest drives cases synchronously).
static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
});

/// `cases` random cases; failures are reported with their input, not saved to files in the source tree.
/// `PROPTEST_CASES` overrides the count (for long runs).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

// ----- strategies -----

/// Arbitrary JSON up to a few levels deep, with keys the parsers look for among random ones.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        prop_oneof![".{0,12}", "[0-9]{1,4}(\\.[0-9]{1,2})?%?", Just("--".to_owned()), Just("on".to_owned())]
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,8}",
        prop::sample::select(vec![
            "error",
            "msg",
            "data",
            "at",
            "rt",
            "user",
            "apikey",
            "region",
            "devicelist",
            "thingList",
            "itemType",
            "itemData",
            "deviceid",
            "params",
            "online",
            "extra",
            "uiid",
            "tags",
            "switch",
            "switches",
            "outlet",
            "port",
            "IP",
            "domain",
            "config",
            "hbInterval",
            "sequence",
            "action",
            "Result",
            "ErrMsg",
            "Data",
            "code",
            "message",
            "results",
            "total",
            "ck_channel_name",
            "0",
            "1",
        ])
        .prop_map(str::to_owned),
    ]
}

/// A number as the clouds spell them: a number, a numeric string, or something else.
fn code_like() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            0i64, 301, 400, 401, 402, 403, 404, 406, 407, 412, 500, 503, 504, 10001, 10003, 10004
        ])
        .prop_map(Value::from),
        prop::sample::select(vec!["0", "401", " 402 ", "x", ""]).prop_map(Value::from),
        json_value(),
    ]
}

// ----- an HTTP server that answers whatever the case says -----

#[derive(Debug, Clone)]
enum Answer {
    Fixed {
        status: u16,
        body: Vec<u8>,
        cookie: Option<String>,
    },
    /// 64 KiB chunks until the client hangs up.
    Endless,
}

impl Default for Answer {
    fn default() -> Self {
        Answer::Fixed { status: 200, body: b"{}".to_vec(), cookie: None }
    }
}

#[derive(Clone, Default)]
struct Canned {
    /// By path; `""` for any other path.
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    /// Bytes of endless bodies written.
    streamed: Arc<AtomicU64>,
}

struct CannedServer {
    addr: SocketAddr,
    canned: Canned,
}

impl CannedServer {
    async fn start() -> CannedServer {
        let canned = Canned::default();
        let state = canned.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let state = state.clone();
            async move { state.answer(req.uri().path()) }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CannedServer { addr, canned }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, path: &str, answer: Answer) {
        self.canned.answers.lock().unwrap().insert(path.to_owned(), answer);
    }

    fn clear(&self) {
        self.canned.answers.lock().unwrap().clear();
    }
}

impl Canned {
    fn answer(&self, path: &str) -> Response {
        let answers = self.answers.lock().unwrap();
        let answer = answers.get(path).or_else(|| answers.get("")).cloned().unwrap_or_default();
        drop(answers);
        match answer {
            Answer::Fixed { status, body, cookie } => {
                let mut r = Response::new(Body::from(body));
                *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
                    r.headers_mut().insert(header::SET_COOKIE, c);
                }
                r
            }
            Answer::Endless => {
                let streamed = self.streamed.clone();
                let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
                let stream = futures_util::stream::repeat(chunk).map(move |c| {
                    streamed.fetch_add(c.len() as u64, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(c)
                });
                let mut r = Response::new(Body::from_stream(stream));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
        }
    }
}

// ----- eWeLink HTTP -----

fn ewelink_http(server: &CannedServer, api: EwelinkApi) -> Http {
    Http::new(api, Region::Eu, Some(server.url()), "appid-x".into(), Secret::new("app-secret-x1"), PaceRules::none())
        .expect("client")
}

fn credentials() -> Credentials {
    Credentials {
        login: LoginId::Email("a@b.c".into()),
        password: Secret::new("pw-123456"),
        country_code: "+49".into(),
    }
}

fn tokens() -> Tokens {
    Tokens {
        at: Secret::new("at-0123456789"),
        rt: Some(Secret::new("rt-0123456789")),
        apikey: "k".into(),
        region: Region::Eu,
    }
}

/// A device object as either API might send it, every field possibly odd.
fn cloud_device() -> impl Strategy<Value = Value> {
    let uiids = prop::sample::select(vec![
        1u32, 2, 4, 5, 6, 11, 15, 22, 34, 36, 44, 59, 77, 102, 103, 104, 126, 130, 136, 181, 190, 1770, 9999,
    ]);
    let param_keys = prop::sample::select(vec![
        "switch",
        "switches",
        "power",
        "voltage",
        "current",
        "actPow_00",
        "voltage_01",
        "current_00",
        "currentTemperature",
        "currentHumidity",
        "temperature",
        "humidity",
        "battery",
        "state",
        "zyx_mode",
        "channel0",
        "channel1",
        "channel2",
        "channel3",
        "channel4",
        "bright",
        "brightness",
        "colorR",
        "colorG",
        "colorB",
        "mode",
        "ltype",
        "white",
        "color",
        "setclose",
        "rssi",
        "fwVersion",
        "timers",
        "staMac",
        "mainSwitch",
    ]);
    let params = prop::collection::btree_map(param_keys.prop_map(str::to_owned), param_value(), 0..10);
    (
        prop_oneof![3 => "[0-9a-f]{10}".prop_map(Value::from), 1 => json_value()],
        prop_oneof![uiids.prop_map(Value::from), code_like()],
        params,
        json_value(),
        prop_oneof![Just(json!({})), Just(json!({"ck_channel_name": {"0": "A", "1": "B"}})), json_value()],
        any::<bool>(),
    )
        .prop_map(|(id, uiid, params, online, tags, nest)| {
            let extra = if nest { json!({"extra": {"uiid": uiid}}) } else { json!({"uiid": uiid}) };
            json!({"deviceid": id, "name": "dev", "apikey": "owner", "online": online, "extra": extra,
                   "params": Value::Object(params.into_iter().collect()), "tags": tags})
        })
}

/// Values a device parameter might take, well-formed or not.
fn param_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["on", "off", "pause", "white", "color", "1234", "22.5", "unavailable"])
            .prop_map(Value::from),
        (0i64..=300).prop_map(Value::from),
        prop::collection::vec((prop::sample::select(vec!["on", "off"]), 0u64..6), 0..6).prop_map(|outlets| {
            Value::Array(outlets.into_iter().map(|(s, o)| json!({"switch": s, "outlet": o})).collect())
        }),
        Just(json!({"br": 50, "ct": 128})),
        Just(json!({"br": 60, "r": 1, "g": 2, "b": 3})),
        json_value(),
    ]
}

/// An HTTP answer of the eWeLink cloud: an envelope of either generation, a device list, or junk.
fn ewelink_answer() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let status = prop::sample::select(vec![200u16, 200, 200, 401, 402, 404, 500]);
    let tokens = (json_value(), json_value(), json_value(), json_value())
        .prop_map(|(at, rt, apikey, region)| json!({"at": at, "rt": rt, "user": {"apikey": apikey}, "region": region}))
        .boxed();
    let devices = prop::collection::vec(cloud_device(), 0..8).boxed();
    let body = prop_oneof![
        (code_like(), json_value(), tokens.clone()).prop_map(|(e, m, t)| json!({"error": e, "msg": m, "data": t})),
        (code_like(), tokens).prop_map(|(e, t)| {
            let mut o = t.as_object().cloned().unwrap_or_default();
            o.insert("error".into(), e);
            Value::Object(o)
        }),
        (devices.clone(), prop::collection::vec(prop::sample::select(vec![1u64, 2, 3, 9]), 8)).prop_map(
            |(list, kinds)| {
                let things: Vec<Value> =
                    list.into_iter().zip(kinds).map(|(d, k)| json!({"itemType": k, "itemData": d})).collect();
                json!({"error": 0, "msg": "", "data": {"thingList": things, "total": 3}})
            }
        ),
        devices.clone().prop_map(|list| json!({"error": 0, "devicelist": list})),
        devices.prop_map(Value::Array),
        (json_value(), json_value(), json_value())
            .prop_map(|(p, ip, d)| json!({"error": 0, "port": p, "IP": ip, "domain": d})),
        json_value(),
    ]
    .prop_map(|v| v.to_string().into_bytes());
    let raw = prop_oneof![
        8 => body,
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(b"{\"error\":0,\"data\":{\"thingList\":[".to_vec()),
    ];
    (status, raw)
}

/// Every device a list gave, through the capability table: no panic, entities Home Assistant accepts.
fn through_the_table(list: &[CloudDevice]) {
    for d in list {
        let profile = Profile::of(d);
        let spec = devices::spec(d, &profile, "k");
        let mut keys = std::collections::HashSet::new();
        for e in &spec.entities {
            assert!(keys.insert(e.key.clone()), "two entities with key {}", e.key);
            hub2mqtt::hass::discovery::validate_entity(e).unwrap_or_else(|r| panic!("{}: {r}", e.key));
        }
        let state = devices::state(&profile, &d.params);
        serde_json::to_string(&state).expect("state serialises");
    }
}

static CLOUD: LazyLock<CannedServer> = LazyLock::new(|| RT.block_on(CannedServer::start()));

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn ewelink_http_answers_never_panic((status, body) in ewelink_answer(), v2 in any::<bool>()) {
        let server = &*CLOUD;
        server.clear();
        server.set("", Answer::Fixed { status, body, cookie: None });
        let api = if v2 { EwelinkApi::V2 } else { EwelinkApi::V1 };
        RT.block_on(async {
            let http = ewelink_http(server, api);
            let t = tokens();
            let results: Vec<Result<(), CloudError>> = vec![
                http.login(&credentials()).await.map(|t| assert!(!t.at.expose().is_empty() && !t.apikey.is_empty())),
                http.refresh(&t).await.map(|_| ()),
                http.devices(&t.at).await.map(|list| through_the_table(&list)),
                http.device(&t.at, "k", "1000000001").await.map(|d| through_the_table(&[d])),
                http.groups(&t.at, "k").await.map(|_| ()),
                http.dispatch(&t.at).await.map(|target| assert!(target.url.starts_with("ws://") && target.url.ends_with("/api/ws"))),
                http.status(&t.at, "1000000001", &["switch"]).await.map(|_| ()),
                http.set_status(&t.at, "1000000001", &Map::from_iter([("switch".to_owned(), json!("on"))])).await,
            ];
            for r in results {
                if let Err(e) = r {
                    let text = e.to_string();
                    prop_assert!(!text.is_empty() && text.len() < 1000, "{text}");
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn an_endless_ewelink_answer_is_refused_without_reading_it_all() {
    RT.block_on(async {
        let server = CannedServer::start().await;
        server.set("", Answer::Endless);
        let http = ewelink_http(&server, EwelinkApi::V2);
        let err = tokio::time::timeout(Duration::from_secs(15), http.devices(&tokens().at))
            .await
            .expect("refused well before the client's own 20 s timeout")
            .expect_err("an endless answer is no device list");
        assert!(err.to_string().contains("larger than"), "{err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let streamed = server.canned.streamed.load(Ordering::Relaxed);
        assert!(streamed < 64 << 20, "the client read {streamed} bytes before giving up");
    });
}

#[test]
fn a_huge_declared_ewelink_answer_is_refused_at_once() {
    RT.block_on(async {
        let addr = declared_huge_server().await;
        let http = Http::new(
            EwelinkApi::V2,
            Region::Eu,
            Some(format!("http://{addr}")),
            "a".into(),
            Secret::new("s3cr3t"),
            PaceRules::none(),
        )
        .unwrap();
        let err = tokio::time::timeout(Duration::from_secs(10), http.devices(&tokens().at))
            .await
            .expect("at once")
            .unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    });
}

/// Answers every request with `Content-Length: 10 GB` and a few bytes, then keeps the connection open.
async fn declared_huge_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{\"error\":0";
                let _ = socket.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    addr
}

// ----- eWeLink WebSocket -----

/// What the WebSocket server does in one case.
#[derive(Debug, Clone)]
struct WsCase {
    handshake: String,
    ack: Value,
    frames: Vec<Message>,
}

fn ws_frame() -> impl Strategy<Value = Message> {
    let device = prop_oneof!["[0-9a-f]{10}".prop_map(Value::from), json_value()];
    let text = prop_oneof![
        (device.clone(), json_value()).prop_map(|(d, p)| {
            json!({"action": "update", "deviceid": d, "apikey": "k", "userAgent": "device", "params": p}).to_string()
        }),
        (device.clone(), json_value())
            .prop_map(|(d, o)| json!({"action": "sysmsg", "deviceid": d, "params": {"online": o}}).to_string()),
        (device.clone(), code_like(), json_value(), json_value())
            .prop_map(|(d, e, s, p)| json!({"error": e, "deviceid": d, "sequence": s, "params": p}).to_string()),
        (device, json_value()).prop_map(|(d, a)| json!({"action": a, "deviceid": d}).to_string()),
        json_value().prop_map(|v| v.to_string()),
        Just("pong".to_owned()),
        ".{0,40}",
    ];
    prop_oneof![
        8 => text.prop_map(Message::text),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(|b| Message::Binary(b.into())),
        1 => Just(Message::Ping(vec![1, 2].into())),
    ]
}

fn ws_case() -> impl Strategy<Value = WsCase> {
    let handshake = prop_oneof![
        4 => (prop_oneof![json_value(), (0u64..400).prop_map(Value::from), any::<u64>().prop_map(Value::from)], json_value())
            .prop_map(|(hb, extra)| json!({"error": 0, "apikey": "k", "config": {"hb": 1, "hbInterval": hb}, "x": extra}).to_string()),
        1 => code_like().prop_map(|e| json!({"error": e, "reason": "nope"}).to_string()),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => ".{0,20}",
    ];
    let ack =
        prop_oneof![(code_like(), json_value()).prop_map(|(e, r)| json!({"error": e, "reason": r})), json_value(),];
    (handshake, ack, prop::collection::vec(ws_frame(), 0..24)).prop_map(|(handshake, ack, frames)| WsCase {
        handshake,
        ack,
        frames,
    })
}

/// A WebSocket server for one connection playing `case`: the handshake reply, an ack (with the request's
/// sequence) for the first request, the frames, then close.
async fn ws_server(case: WsCase) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((socket, _)) = listener.accept().await else { return };
        let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else { return };
        let _hello = ws.next().await;
        if ws.send(Message::text(case.handshake)).await.is_err() {
            return;
        }
        // The client's request, if it makes one soon.
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await
            && let Ok(req) = serde_json::from_str::<Value>(t.as_str())
        {
            let mut ack = case.ack.clone();
            if let Some(o) = ack.as_object_mut() {
                o.insert("sequence".into(), req["sequence"].clone());
            }
            let _ = ws.send(Message::text(ack.to_string())).await;
        }
        for f in case.frames {
            if ws.send(f).await.is_err() {
                return;
            }
        }
        let _ = ws.close(None).await;
    });
    addr
}

/// Connects to a server playing `case`, makes one `update`, and collects what comes out.
async fn play(case: WsCase) -> Result<(String, Vec<WsEvent>, Result<Value, RequestError>), CloudError> {
    let addr = ws_server(case).await;
    let (socket, session) =
        ws::connect(&format!("ws://{addr}/api/ws"), "at-x", "k", "appid", Duration::from_secs(5)).await?;
    let client = WsClient::new(PaceRules::none());
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let stop = CancellationToken::new();
    let params = Map::from_iter([("switch".to_owned(), json!("on"))]);
    let (reason, outcome) = tokio::join!(ws::run(socket, session, &client, &tx, &stop), async {
        client.wait_connected(Duration::from_secs(2)).await;
        client.update("1000000001", "k", "k", &params, Duration::from_secs(2)).await
    });
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    Ok((reason, events, outcome))
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn ewelink_websocket_frames_never_panic(case in ws_case()) {
        let result = RT.block_on(async { tokio::time::timeout(Duration::from_secs(20), play(case)).await });
        let Ok(result) = result else { panic!("a connection playing a finite script did not end within 20 s") };
        match result {
            Err(e) => prop_assert!(!e.to_string().is_empty()),
            Ok((reason, events, outcome)) => {
                prop_assert!(!reason.is_empty());
                for e in events {
                    match e {
                        WsEvent::Params { params, .. } => prop_assert!(!params.is_empty(), "a push without parameters is no news"),
                        WsEvent::Online { .. } => {}
                        other => prop_assert!(false, "run() only reports params and availability: {other:?}"),
                    }
                }
                if let Err(RequestError::Refused { code, reason }) = outcome {
                    prop_assert!(code != 0 && reason.chars().count() <= 200);
                }
            }
        }
    }
}

#[test]
fn an_oversized_websocket_message_ends_the_connection_with_a_reason() {
    let big = format!(
        "{{\"action\":\"update\",\"deviceid\":\"1000000001\",\"params\":{{\"x\":\"{}\"}}}}",
        "y".repeat(3 << 20)
    );
    let case = WsCase {
        handshake: json!({"error": 0, "config": {"hbInterval": 145}}).to_string(),
        ack: json!({"error": 0}),
        frames: vec![Message::text(big)],
    };
    let (reason, events, _) = RT.block_on(play(case)).expect("the handshake succeeds");
    assert!(events.is_empty(), "the oversized push was not taken: {events:?}");
    assert!(reason.contains("larger than 1024 KiB"), "{reason}");
}

// ----- iKuai -----

fn router_cfg(url: &str) -> IkuaiConfig {
    IkuaiConfig {
        id: "hostile".into(),
        url: url.to_owned(),
        password: Some(Secret::new("pw-hostile")),
        timeout_s: 5,
        ..IkuaiConfig::default()
    }
}

fn ikuai_envelope() -> impl Strategy<Value = Value> {
    let data = prop_oneof![json_value(), mutated_example()];
    prop_oneof![
        (code_like(), json_value(), data.clone()).prop_map(|(r, m, d)| json!({"Result": r, "ErrMsg": m, "Data": d})),
        (prop::sample::select(vec![10000i64, 30000, 10014]), data.clone())
            .prop_map(|(r, d)| json!({"Result": r, "ErrMsg": "Success", "Data": d})),
        (code_like(), json_value(), data.clone()).prop_map(|(c, m, d)| json!({"code": c, "message": m, "results": d})),
        (prop::sample::select(vec![0i64, 1008]), data)
            .prop_map(|(c, d)| json!({"code": c, "message": "Success", "results": d})),
        json_value(),
    ]
}

fn ikuai_answer() -> impl Strategy<Value = (u16, Vec<u8>, Option<String>)> {
    let status = prop::sample::select(vec![200u16, 200, 200, 302, 500]);
    let body = prop_oneof![
        8 => ikuai_envelope().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..48),
        1 => Just(b"{\"Result\":30000,\"ErrMsg\":\"Succ".to_vec()),
    ];
    let cookie = prop::option::of(prop_oneof![
        "sess_key=[0-9a-f]{32}; path=/",
        Just("sess_key=; path=/".to_owned()),
        "[a-z_]{1,8}=[a-z0-9]{0,8}",
    ]);
    (status, body, cookie)
}

static ROUTER: LazyLock<CannedServer> = LazyLock::new(|| RT.block_on(CannedServer::start()));

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn ikuai_answers_never_panic(login in ikuai_answer(), call in ikuai_answer()) {
        let server = &*ROUTER;
        server.clear();
        server.set("/Action/login", Answer::Fixed { status: login.0, body: login.1, cookie: login.2 });
        server.set("/Action/call", Answer::Fixed { status: call.0, body: call.1, cookie: call.2 });
        RT.block_on(async {
            let client = RouterClient::new(&router_cfg(&server.url())).expect("client");
            match client.call("homepage", &["sysstat", "snapshoot"], &[]).await {
                Ok(data) => {
                    let home: Homepage = model::parse(&data).unwrap_or_default();
                    let readings = RouterReadings { home, ..RouterReadings::default() };
                    check_view(&readings);
                }
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(text.contains("router `hostile`") && text.len() < 2000, "{text}");
                    if let ClientError::LoginRefused { reason, .. } = &e {
                        prop_assert!(!reason.contains("pw-hostile"));
                    }
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn an_endless_router_answer_is_refused_without_reading_it_all() {
    RT.block_on(async {
        let server = CannedServer::start().await;
        server.set("/Action/login", Answer::Endless);
        let client = RouterClient::new(&IkuaiConfig { timeout_s: 30, ..router_cfg(&server.url()) }).unwrap();
        let err = tokio::time::timeout(Duration::from_secs(20), client.login())
            .await
            .expect("refused well before the router timeout")
            .expect_err("an endless answer is no login");
        assert!(err.to_string().contains("larger than"), "{err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let streamed = server.canned.streamed.load(Ordering::Relaxed);
        assert!(streamed < 64 << 20, "the client read {streamed} bytes before giving up");
    });
}

#[test]
fn a_huge_declared_router_answer_is_refused_at_once() {
    RT.block_on(async {
        let addr = declared_huge_server().await;
        let client =
            RouterClient::new(&IkuaiConfig { timeout_s: 30, ..router_cfg(&format!("http://{addr}")) }).unwrap();
        let err = tokio::time::timeout(Duration::from_secs(10), client.login()).await.expect("at once").unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    });
}

/// The `Data` of a document example (any TYPE), with random values put at random places.
fn mutated_example() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "sysstat",
        "snapshoot",
        "ether_info",
        "app_historical",
        "app_flow",
        "ac_status",
        "dhcp_addrpool_num",
        "iface_check",
        "iface_stream",
        "monitor_lanipv6",
        "monitor_l7qos",
        "dns_config",
        "dns_proxy",
        "dns_proxy_total",
        "dns_cache",
        "ipgroup",
        "ipgroupv6",
        "macgroupv6",
        "static_rt",
        "static_rt_table_data",
        "static_rt_table_data6",
        "vlan",
    ]);
    (names, prop::collection::vec((any::<prop::sample::Index>(), json_value(), any::<bool>()), 0..6)).prop_map(
        |(name, edits)| {
            let mut data = example_data(name);
            for (at, value, remove) in edits {
                mutate(&mut data, at, value, remove);
            }
            data
        },
    )
}

/// Replaces (or removes) one node of `v`, chosen by `at` among all its nodes.
fn mutate(v: &mut Value, at: prop::sample::Index, value: Value, remove: bool) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn nth(v: &mut Value, mut n: usize, value: Value, remove: bool) -> usize {
        if n == 0 {
            *v = value;
            return usize::MAX;
        }
        n -= 1;
        match v {
            Value::Array(a) => {
                for i in 0..a.len() {
                    let c = count(&a[i]);
                    if n < c {
                        if n == 0 && remove {
                            a.remove(i);
                            return usize::MAX;
                        }
                        return nth(&mut a[i], n, value, remove);
                    }
                    n -= c;
                }
            }
            Value::Object(o) => {
                let keys: Vec<String> = o.keys().cloned().collect();
                for k in keys {
                    let c = count(&o[&k]);
                    if n < c {
                        if n == 0 && remove {
                            o.remove(&k);
                            return usize::MAX;
                        }
                        return nth(o.get_mut(&k).unwrap(), n, value, remove);
                    }
                    n -= c;
                }
            }
            _ => {}
        }
        n
    }
    let total = count(v);
    nth(v, at.index(total), value, remove);
}

fn readings_from(home: &Value, iface: &Value, other: &Value) -> RouterReadings {
    let obj = |v: &Value| v.as_object().cloned().unwrap_or_default();
    let parse_or = |v: &Value| obj(v);
    let (h, i, o) = (parse_or(home), parse_or(iface), parse_or(other));
    RouterReadings {
        home: model::parse::<Homepage>(&h).unwrap_or_default(),
        iface: model::parse::<MonitorIface>(&i).unwrap_or_default(),
        dns_cache: model::parse(&o).unwrap_or_default(),
        qos: model::parse::<MonitorL7qos>(&o).unwrap_or_default(),
        slow: SlowReadings {
            dns_config: model::parse(&o).unwrap_or_default(),
            dns_proxy: model::parse(&o).unwrap_or_default(),
            ipgroup: model::parse(&o).unwrap_or_default(),
            ipgroupv6: model::parse(&o).unwrap_or_default(),
            macgroupv6: model::parse(&o).unwrap_or_default(),
            static_rt: model::parse(&o).unwrap_or_default(),
            route_table: model::parse(&o).unwrap_or_default(),
            route_table6: model::parse(&o).unwrap_or_default(),
            vlan: model::parse(&o).unwrap_or_default(),
        },
    }
}

/// The router's entities and values from any readings: valid for Home Assistant, keys unique, values JSON.
fn check_view(readings: &RouterReadings) {
    let cfg =
        IkuaiConfig { app_traffic: true, qos_traffic: true, track_clients: true, ..router_cfg("http://192.168.9.1") };
    let mut odd = Oddities::default();
    let view = router_view(&cfg, readings, &mut odd);
    let mut keys = std::collections::HashSet::new();
    for e in &view.entities {
        assert!(keys.insert(e.key.clone()), "two entities with key {}", e.key);
        hub2mqtt::hass::discovery::validate_entity(e).unwrap_or_else(|r| panic!("{}: {r}", e.key));
        assert!(e.key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "key {:?}", e.key);
    }
    serde_json::to_string(&view.values).expect("values serialise");
    for (name, raw) in odd.drain() {
        assert!(!name.is_empty() && raw.to_string().len() < 200);
    }
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn ikuai_model_and_mapping_take_any_mutation(
        home_parts in prop::collection::vec(mutated_example(), 1..4),
        iface in mutated_example(),
        other in mutated_example(),
        v4 in prop::collection::vec(mutated_client(), 0..5),
        v6 in prop::collection::vec(mutated_client(), 0..5),
    ) {
        let mut home = Map::new();
        for part in home_parts {
            if let Value::Object(o) = part {
                home.extend(o);
            }
        }
        check_view(&readings_from(&Value::Object(home), &iface, &other));
        let rows = |list: Vec<Value>| -> Vec<LanClient> {
            let data: DataList<LanClient> = model::parse(&Map::from_iter([("data".to_owned(), Value::Array(list))])).unwrap_or_default();
            data.rows().to_vec()
        };
        let clients = merge_clients(&rows(v4), &rows(v6), &mut Oddities::default());
        let cfg = router_cfg("http://192.168.9.1");
        for c in &clients {
            prop_assert!(c.mac.len() == 17, "{}", c.mac);
            let spec = hub2mqtt::ikuai::presence::client_device(&cfg, c);
            for e in &spec.entities {
                hub2mqtt::hass::discovery::validate_entity(e).unwrap_or_else(|r| panic!("{}: {r}", e.key));
            }
            serde_json::to_string(&hub2mqtt::ikuai::presence::client_state(&cfg, c, true)).expect("serialises");
        }
    }
}

fn mutated_client() -> impl Strategy<Value = Value> {
    let base = prop_oneof![
        Just(hub2mqtt::sim::ikuai::examples::example("monitor_lanip_client")),
        Just(example_data("monitor_lanipv6")["data"][0].clone()),
    ];
    (base, prop::collection::vec((any::<prop::sample::Index>(), json_value(), any::<bool>()), 0..4)).prop_map(
        |(mut c, edits)| {
            for (at, value, remove) in edits {
                mutate(&mut c, at, value, remove);
            }
            c
        },
    )
}

// ----- set payloads into the eWeLink device mapping, timers -----

/// Every fixture device (one per capability) as the adapter sees it.
static DEVICES: LazyLock<Vec<(CloudDevice, Profile)>> = LazyLock::new(|| {
    fixtures::all()
        .iter()
        .filter_map(|d| CloudDevice::from_json(&fixtures::device_json(d)))
        .map(|d| {
            let p = Profile::of(&d);
            (d, p)
        })
        .collect()
});

fn command_value() -> impl Strategy<Value = Value> {
    let word = prop::sample::select(vec!["ON", "OFF", "on", "TOGGLE", "OPEN", "CLOSE", "STOP", "PRESS", "maybe", ""])
        .prop_map(Value::from);
    let num =
        prop_oneof![(-50.0f64..400.0).prop_map(Value::from), any::<i64>().prop_map(Value::from), Just(json!(1e300))];
    let light = (
        prop::option::of(word.clone()),
        prop::option::of(num.clone()),
        prop::option::of(num.clone()),
        prop::option::of((num.clone(), num.clone(), num.clone())),
        prop::option::of(prop_oneof![Just(json!("RGB Pulse")), json_value()]),
        prop::option::of(json_value()),
    )
        .prop_map(|(state, brightness, ct, rgb, effect, junk)| {
            let mut o = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    o.insert(k.to_owned(), v);
                }
            };
            put("state", state);
            put("brightness", brightness);
            put("color_temp", ct);
            put("color", rgb.map(|(r, g, b)| json!({"r": r, "g": g, "b": b})));
            put("effect", effect);
            put("transition", junk);
            Value::Object(o)
        });
    let fan_cover = (
        prop::option::of(word.clone()),
        prop::option::of(num.clone()),
        prop::option::of(num.clone()),
        prop::option::of(json_value()),
    )
        .prop_map(|(state, pct, pos, mode)| {
            let mut o = Map::new();
            if let Some(s) = state {
                o.insert("state".into(), s);
            }
            if let Some(p) = pct {
                o.insert("percentage".into(), p);
            }
            if let Some(p) = pos {
                o.insert("position".into(), p);
            }
            if let Some(m) = mode {
                o.insert("preset_mode".into(), m);
            }
            Value::Object(o)
        });
    prop_oneof![word, any::<bool>().prop_map(Value::Bool), num, light, fan_cover, json_value()]
}

fn entity_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "switch",
            "switch_1",
            "switch_2",
            "switch_3",
            "switch_4",
            "switch_5",
            "light",
            "fan",
            "cover",
            "power",
            "temperature",
            "door",
            "rssi",
            "firmware",
            "uiid",
            "params",
            "battery",
            "timers",
        ])
        .prop_map(str::to_owned),
        "[a-z_0-9]{0,10}",
    ]
}

/// Checks the parameters of an `update` a command produced, by what the device understands.
fn check_params(params: &Map<String, Value>) {
    assert!(!params.is_empty());
    for (k, v) in params {
        match k.as_str() {
            "switch" | "state" | "mainSwitch" => {
                assert!(matches!(v.as_str(), Some("on" | "off" | "pause")), "{k}: {v}")
            }
            "switches" => {
                for o in v.as_array().expect("switches is an array") {
                    assert!(
                        matches!(o["switch"].as_str(), Some("on" | "off"))
                            && o["outlet"].as_u64().is_some_and(|n| n < 8),
                        "{o}"
                    );
                }
            }
            "bright" | "brightness" => assert!(v.as_u64().is_some_and(|b| (1..=100).contains(&b)), "{k}: {v}"),
            "setclose" => assert!(v.as_u64().is_some_and(|b| b <= 100), "{k}: {v}"),
            "colorR" | "colorG" | "colorB" => assert!(v.as_u64().is_some_and(|b| b <= 255), "{k}: {v}"),
            "mode" => assert!(v.as_u64().is_some_and(|m| m <= 12), "{k}: {v}"),
            "zyx_mode" => assert!(matches!(v.as_u64(), Some(1 | 2)), "{k}: {v}"),
            c if c.starts_with("channel") => {
                assert!(v.as_str().and_then(|s| s.parse::<u64>().ok()).is_some_and(|x| x <= 255), "{k}: {v}")
            }
            "white" => assert!(
                v["br"].as_u64().is_some_and(|b| (1..=100).contains(&b)) && v["ct"].as_u64().is_some_and(|c| c <= 255),
                "{v}"
            ),
            "color" => assert!(
                v["br"].as_u64().is_some_and(|b| (1..=100).contains(&b))
                    && ["r", "g", "b"].iter().all(|c| v[*c].as_u64().is_some_and(|x| x <= 255)),
                "{v}"
            ),
            "ltype" => assert!(matches!(v.as_str(), Some("white" | "color")), "{v}"),
            "operSide" | "deviceType" => {}
            other => panic!("unexpected parameter {other}: {v}"),
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn set_payloads_map_to_sane_device_parameters(
        device in any::<prop::sample::Index>(),
        changes in prop::collection::vec((entity_key(), command_value()), 1..4),
        params in prop::collection::btree_map(
            prop::sample::select(vec!["switch", "switches", "state", "zyx_mode", "channel0", "channel2", "bright", "white", "color", "ltype", "setclose", "mode"]).prop_map(str::to_owned),
            param_value(), 0..4),
    ) {
        let (cloud, profile) = &DEVICES[device.index(DEVICES.len())];
        let mut current = cloud.params.clone();
        devices::merge_params(&mut current, &params.into_iter().collect());
        let _ = devices::state(profile, &current);
        if let Ok(update) = devices::command(profile, &current, &changes) {
            check_params(&update);
        }
    }
}

fn timer() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec!["once", "repeat", "duration", "delay", "weekly", ""]);
    let at = prop_oneof![
        Just("2031-07-24T08:28:00.000Z".to_owned()),
        Just("2024-02-29T07:30Z".to_owned()),
        "[0-9]{1,2} [0-9]{1,2} \\* \\* [0-7](,[0-7]){0,3}",
        "[0-9*,-]{1,5} [0-9*]{1,3} [*] [*] [0-9,*-]{1,5}",
        Just("2026-11-21T10:24:00.980Z 10 5".to_owned()),
        ".{0,30}",
    ];
    let mid = prop_oneof![
        Just(Value::Null),
        Just(json!("c102f00f-db6f-fef0-f296-9dd10fdc2193")),
        "[0-9a-f-]{0,36}".prop_map(Value::from),
        json_value()
    ];
    (
        kind,
        prop::option::of(at),
        mid,
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        json_value(),
        any::<bool>(),
    )
        .prop_map(|(kind, at, mid, enabled, period, junk, with_do)| {
            let mut o = Map::new();
            o.insert("coolkit_timer_type".into(), json!(kind));
            if let Some(at) = at {
                o.insert("at".into(), json!(at));
            }
            o.insert("mId".into(), mid);
            if let Some(e) = enabled {
                o.insert("enabled".into(), e);
            }
            if let Some(p) = period {
                o.insert("period".into(), p);
            }
            if with_do {
                o.insert("do".into(), json!({"switch": "on"}));
                o.insert("startDo".into(), json!({"switch": "on"}));
                o.insert("endDo".into(), json!({"switch": "off"}));
            } else {
                o.insert("do".into(), junk);
            }
            Value::Object(o)
        })
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn timers_are_valid_or_refused(
        op in prop::sample::select(vec![CommandOp::Set, CommandOp::Add, CommandOp::Remove]),
        current in prop::collection::vec(timer(), 0..3),
        value in prop_oneof![timer(), prop::collection::vec(timer(), 0..4).prop_map(Value::Array), json_value(),
                             "[0-9a-f-]{36}".prop_map(Value::from)],
        now in 0u64..4_000_000_000,
    ) {
        // The device's current timers are whatever the cloud says: only what is added is validated.
        if let Ok(list) = timers::apply(op, &current, &value, now) {
            let kept = current.len();
            for (i, t) in list.iter().enumerate() {
                if op == CommandOp::Add && i < kept && current.contains(t) {
                    continue;
                }
                if op == CommandOp::Remove {
                    prop_assert!(current.contains(t));
                    continue;
                }
                let o = t.as_object().expect("a timer is an object");
                prop_assert!(uuid::Uuid::parse_str(o["mId"].as_str().unwrap_or("")).is_ok(), "{t}");
                prop_assert!(matches!(o["type"].as_str(), Some("once" | "repeat" | "duration")), "{t}");
                prop_assert!(matches!(o["coolkit_timer_type"].as_str(), Some("once" | "repeat" | "duration" | "delay")), "{t}");
                prop_assert!(matches!(o["enabled"].as_u64(), Some(0 | 1)), "{t}");
                prop_assert!(o["at"].is_string(), "{t}");
                if o["type"] == "duration" {
                    prop_assert!(o["startDo"].is_object() && o["endDo"].is_object(), "{t}");
                } else {
                    prop_assert!(o["do"].as_object().is_some_and(|d| !d.is_empty()), "{t}");
                }
            }
            if op == CommandOp::Set {
                let mids: std::collections::HashSet<&str> = list.iter().filter_map(|t| t["mId"].as_str()).collect();
                prop_assert_eq!(mids.len(), list.len());
            }
        }
        let _ = timers::parse_iso_utc(value.as_str().unwrap_or(""));
    }
}

#[test]
fn long_error_messages_from_a_router_are_cut() {
    RT.block_on(async {
        let server = CannedServer::start().await;
        let long = "刷".repeat(100_000);
        let refused = json!({"Result": 10001, "ErrMsg": long}).to_string().into_bytes();
        server.set("/Action/login", Answer::Fixed { status: 200, body: refused, cookie: None });
        let client = RouterClient::new(&router_cfg(&server.url())).unwrap();
        let err = client.login().await.unwrap_err().to_string();
        assert!(
            err.contains("login as `admin` refused") && err.len() < 1000,
            "{} bytes: {}…",
            err.len(),
            err.chars().take(100).collect::<String>()
        );

        let ok = json!({"Result": 10000, "ErrMsg": "Success"}).to_string().into_bytes();
        let cookie = Some("sess_key=0123456789abcdef0123456789abcdef; path=/".to_owned());
        server.set("/Action/login", Answer::Fixed { status: 200, body: ok, cookie });
        let failed = json!({"Result": 10002, "ErrMsg": "x".repeat(1 << 20)}).to_string().into_bytes();
        server.set("/Action/call", Answer::Fixed { status: 200, body: failed, cookie: None });
        let err = client.call("homepage", &["sysstat"], &[]).await.unwrap_err().to_string();
        assert!(err.contains("homepage failed (10002") && err.len() < 1000, "{} bytes", err.len());
    });
}

#[test]
fn long_error_messages_from_the_cloud_are_cut() {
    let handshake = json!({"error": 499, "reason": "r".repeat(500_000)}).to_string();
    let case = WsCase { handshake, ack: json!({}), frames: vec![] };
    let err = RT.block_on(play(case)).expect_err("error 499 refuses the handshake").to_string();
    assert!(err.contains("499") && err.len() < 1000, "{} bytes", err.len());

    RT.block_on(async {
        let server = CannedServer::start().await;
        let body = json!({"error": 499, "msg": "m".repeat(1 << 20), "data": {}}).to_string().into_bytes();
        server.set("", Answer::Fixed { status: 200, body, cookie: None });
        let err = ewelink_http(&server, EwelinkApi::V2).devices(&tokens().at).await.unwrap_err().to_string();
        assert!(err.contains("499") && err.len() < 1000, "{} bytes", err.len());
    });
}

proptest! {
    #![proptest_config(config(500))]

    /// `consider_home_s` and `prune_clients_after_days` come from the user's config unbounded.
    #[test]
    fn presence_takes_any_configured_durations(consider in any::<u64>(), days in any::<u64>(), away_s in 0u64..100_000) {
        use hub2mqtt::ikuai::presence::Presence;
        let cfg = IkuaiConfig { consider_home_s: consider, prune_clients_after_days: days, ..router_cfg("http://192.168.9.1") };
        let mut presence = Presence::from_config(&cfg);
        let client: DataList<LanClient> = model::parse(&Map::from_iter([(
            "data".to_owned(),
            json!([hub2mqtt::sim::ikuai::examples::example("monitor_lanip_client")]),
        )]))
        .unwrap();
        let listed = merge_clients(client.rows(), &[], &mut Oddities::default());
        let t0 = std::time::Instant::now();
        presence.update(t0, listed);
        let later = presence.update(t0 + Duration::from_secs(away_s), Vec::new());
        let pruned = !later.pruned.is_empty();
        // Pruned only once the configured number of days has passed, whatever that number.
        prop_assert!(!pruned || (days > 0 && u128::from(away_s) >= u128::from(days) * 86_400), "pruned after {away_s} s with {days} days");
    }
}
