//! One eWeLink WebSocket connection and the request table that outlives it.
//!
//! [`connect`] opens the socket and performs the `userOnline` handshake. [`run`] then owns the connection:
//! a writer task fed by a channel that also sends the text `ping` a little before the server's
//! `hbInterval`, and a reader with a deadline of two heartbeats, so a half-open socket is noticed. Replies
//! are matched to requests by `sequence` (unique and monotonic) through the [`WsClient`], which callers keep
//! across reconnections; pushed `update`s and `sysmsg`s become [`WsEvent`]s.
//!
//! Knows the wire format of the socket; nothing of devices' parameters, tokens' life cycle or MQTT.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::error::CloudError;
use super::pace::{PaceRules, Pacer};
use super::sign;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the socket tells the adapter.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// Handshake done; requests can be sent.
    Connected,
    /// The socket is gone (the supervisor reconnects by itself).
    Disconnected { reason: String },
    /// Something the user should know (e.g. logged in elsewhere), not a plain disconnection.
    Problem { reason: String },
    /// New parameters of a device: a push (`update` from the device or another app) or a late query answer.
    Params { deviceid: String, params: Map<String, Value> },
    /// `sysmsg`: the device went online/offline.
    Online { deviceid: String, online: bool },
}

/// Why a request got no positive answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the connection to the cloud is down")]
    NotConnected,
    #[error("the connection to the cloud dropped before the answer")]
    ConnectionLost,
    #[error("no answer from the cloud within {0:?}")]
    Timeout(Duration),
    #[error("the cloud answered error {code}{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Refused { code: i64, reason: String },
}

/// The handshake's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// `hbInterval` from the server's `config` (90 s when absent, as the document says).
    pub hb_interval: Duration,
}

impl Session {
    /// Pings go out a little before `hbInterval` (the document says hbInterval + 7 s; servers have been
    /// seen to drop sockets near that mark, so we stay 10 % under it).
    pub fn ping_every(&self) -> Duration {
        (self.hb_interval.mul_f64(0.9)).max(Duration::from_millis(500))
    }

    /// Nothing heard for this long means the connection is dead (about two heartbeats).
    pub fn read_deadline(&self) -> Duration {
        self.ping_every() * 2 + Duration::from_secs(1)
    }
}

/// Opens the socket and sends `userOnline`; fails with [`CloudError::LoggedInElsewhere`] on 406 and
/// [`CloudError::TokenExpired`] / [`CloudError::TokenInvalid`] on 402 / 401.
pub async fn connect(
    url: &str,
    at: &str,
    apikey: &str,
    appid: &str,
    timeout: Duration,
) -> Result<(Socket, Session), CloudError> {
    let (mut socket, _) = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| CloudError::Network(format!("no WebSocket connection within {timeout:?}")))?
        .map_err(|e| CloudError::Network(format!("WebSocket: {e}")))?;
    let sequence = sign::now_ms().to_string();
    // Compact JSON, as the document insists.
    let hello = json!({
        "action": "userOnline", "version": 8, "ts": sign::now_s(), "at": at, "userAgent": "app",
        "apikey": apikey, "appid": appid, "nonce": sign::nonce(), "sequence": sequence,
    });
    socket.send(Message::text(hello.to_string())).await.map_err(|e| CloudError::Network(format!("WebSocket: {e}")))?;
    let reply = tokio::time::timeout(timeout, async {
        while let Some(msg) = socket.next().await {
            match msg {
                Ok(Message::Text(t)) => return Ok(t.to_string()),
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(e) => return Err(CloudError::Network(format!("WebSocket: {e}"))),
            }
        }
        Err(CloudError::Network("the cloud closed the WebSocket during the handshake".into()))
    })
    .await
    .map_err(|_| CloudError::Network(format!("no handshake answer within {timeout:?}")))??;
    let reply: Value =
        serde_json::from_str(&reply).map_err(|_| CloudError::Protocol("the handshake answer is not JSON".into()))?;
    let code = reply.get("error").and_then(Value::as_i64).unwrap_or(-1);
    let reason = reply.get("reason").and_then(Value::as_str).unwrap_or("").to_owned();
    match code {
        0 => {}
        406 => return Err(CloudError::LoggedInElsewhere),
        401 => return Err(CloudError::TokenInvalid),
        402 => return Err(CloudError::TokenExpired),
        code => return Err(CloudError::Rejected { code, msg: format!("WebSocket handshake: {reason}") }),
    }
    let config = reply.get("config");
    // The document spells the switch `hbl`; live servers send `hb`. Only the interval matters to us.
    let hb = config.and_then(|c| c.get("hbInterval")).and_then(Value::as_u64).filter(|s| *s > 0).unwrap_or(90);
    Ok((socket, Session { hb_interval: Duration::from_secs(hb) }))
}

/// Requests in flight and the way to the current connection's writer; survives reconnections.
#[derive(Debug)]
pub struct WsClient {
    writer: Mutex<Option<mpsc::Sender<String>>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    last_sequence: Mutex<u64>,
    connected: watch::Sender<bool>,
    pacer: Pacer,
}

impl WsClient {
    pub fn new(pace: PaceRules) -> WsClient {
        WsClient {
            writer: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            last_sequence: Mutex::new(0),
            connected: watch::Sender::new(false),
            pacer: Pacer::new(pace),
        }
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits up to `max` for the connection; true if it is up.
    pub async fn wait_connected(&self, max: Duration) -> bool {
        let mut rx = self.connected.subscribe();
        tokio::time::timeout(max, rx.wait_for(|up| *up)).await.is_ok_and(|r| r.is_ok())
    }

    /// A unique, increasing sequence: the current time in milliseconds, or one more than the last.
    pub fn next_sequence(&self) -> String {
        let mut last = self.last_sequence.lock().unwrap_or_else(|e| e.into_inner());
        *last = sign::now_ms().max(*last + 1);
        last.to_string()
    }

    /// Sends `update` for a device and waits for its ack.
    pub async fn update(
        &self,
        deviceid: &str,
        owner_apikey: &str,
        own_apikey: &str,
        params: &Map<String, Value>,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let frame = json!({
            "action": "update", "apikey": owner_apikey, "selfApikey": own_apikey, "deviceid": deviceid,
            "params": params, "userAgent": "app", "ts": 0,
        });
        self.request(deviceid, frame, timeout).await
    }

    /// Sends `query` (`names` empty = every parameter) and waits for the answer.
    pub async fn query(
        &self,
        deviceid: &str,
        owner_apikey: &str,
        own_apikey: &str,
        names: &[&str],
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let frame = json!({
            "action": "query", "apikey": owner_apikey, "selfApikey": own_apikey, "deviceid": deviceid,
            "params": names, "userAgent": "app", "from": "app", "ts": 0,
        });
        self.request(deviceid, frame, timeout).await
    }

    /// Sends a frame (a `sequence` is added) paced per device, and waits for the reply with that sequence.
    async fn request(&self, deviceid: &str, mut frame: Value, timeout: Duration) -> Result<Value, RequestError> {
        if !self.is_connected() {
            return Err(RequestError::NotConnected);
        }
        self.pacer.wait(deviceid).await;
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(writer) = writer else { return Err(RequestError::NotConnected) };
        let sequence = self.next_sequence();
        if let Some(o) = frame.as_object_mut() {
            o.insert("sequence".into(), json!(sequence));
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(sequence.clone(), tx);
        if writer.send(frame.to_string()).await.is_err() {
            self.forget(&sequence);
            return Err(RequestError::ConnectionLost);
        }
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(RequestError::ConnectionLost),
            Err(_) => {
                self.forget(&sequence);
                return Err(RequestError::Timeout(timeout));
            }
        };
        match reply.get("error").and_then(Value::as_i64) {
            Some(0) | None => Ok(reply),
            Some(code) => {
                let reason = reply.get("reason").or(reply.get("msg")).and_then(Value::as_str).unwrap_or("");
                Err(RequestError::Refused { code, reason: reason.chars().take(200).collect() })
            }
        }
    }

    fn forget(&self, sequence: &str) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(sequence);
    }

    /// Hands a reply to the request waiting for its sequence; gives it back if none waits.
    fn resolve(&self, sequence: &str, reply: Value) -> Option<Value> {
        let waiter = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(sequence);
        match waiter {
            Some(tx) => tx.send(reply).err(),
            None => Some(reply),
        }
    }

    fn attach(&self, writer: mpsc::Sender<String>) {
        *self.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(writer);
        self.connected.send_replace(true);
    }

    /// The connection is gone: new requests fail fast, requests in flight learn it was lost.
    fn detach(&self) {
        self.connected.send_replace(false);
        *self.writer.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Runs a handshaken connection until it dies or `stop` is cancelled; returns why it ended.
pub async fn run(
    socket: Socket,
    session: Session,
    client: &WsClient,
    events: &mpsc::Sender<WsEvent>,
    stop: &CancellationToken,
) -> String {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(256);
    let ping_every = session.ping_every();
    let writer_stop = CancellationToken::new();
    let writer_done = writer_stop.clone();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reason = loop {
            let text = tokio::select! {
                _ = writer_done.cancelled() => break None,
                _ = ping.tick() => "ping".to_owned(),
                msg = rx.recv() => match msg {
                    Some(text) => text,
                    None => break None,
                },
            };
            if let Err(e) = sink.send(Message::text(text)).await {
                break Some(format!("cannot send: {e}"));
            }
        };
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
        writer_done.cancel();
        reason
    });
    client.attach(tx);
    let deadline = session.read_deadline();
    let reason = loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break "shutting down".to_owned(),
            _ = writer_stop.cancelled() => break "the connection failed while sending".to_owned(),
            next = tokio::time::timeout(deadline, stream.next()) => next,
        };
        match next {
            Err(_) => break format!("nothing heard from the cloud for {}s (half-open connection)", deadline.as_secs()),
            Ok(None) => break "the cloud closed the connection".to_owned(),
            Ok(Some(Err(e))) => break format!("connection error: {e}"),
            Ok(Some(Ok(Message::Text(text)))) => {
                if text.as_str() == "pong" {
                    continue;
                }
                if let Some(event) = on_text(client, text.as_str())
                    && events.send(event).await.is_err()
                {
                    break "the adapter stopped".to_owned();
                }
            }
            Ok(Some(Ok(Message::Close(_)))) => break "the cloud closed the connection".to_owned(),
            Ok(Some(Ok(_))) => {}
        }
    };
    client.detach();
    writer_stop.cancel();
    let write_failure = tokio::time::timeout(Duration::from_secs(2), writer).await.ok().and_then(|r| r.ok()).flatten();
    write_failure.map(|w| format!("{reason} ({w})")).unwrap_or(reason)
}

/// A text frame from the cloud: a reply (to its request) or a push (to the adapter).
fn on_text(client: &WsClient, text: &str) -> Option<WsEvent> {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            tracing::debug!(frame = %crate::secret::redact(text), "ignoring a frame that is not JSON");
            return None;
        }
    };
    let action = v.get("action").and_then(Value::as_str).map(str::to_owned);
    let sequence = match v.get("sequence") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    // Replies carry `error`; pushes carry `action`.
    let v = if action.is_none()
        && let Some(seq) = &sequence
    {
        client.resolve(seq, v)?
    } else {
        v
    };
    let deviceid = v.get("deviceid").and_then(Value::as_str)?.to_owned();
    let params = v.get("params").and_then(Value::as_object);
    match action.as_deref() {
        Some("sysmsg") => {
            let online = params.and_then(|p| p.get("online")).and_then(Value::as_bool)?;
            Some(WsEvent::Online { deviceid, online })
        }
        Some("update") | None => {
            if v.get("error").and_then(Value::as_i64).is_some_and(|e| e != 0) {
                return None;
            }
            let params = params.filter(|p| !p.is_empty())?.clone();
            Some(WsEvent::Params { deviceid, params })
        }
        Some(other) => {
            tracing::debug!(action = other, "ignoring an unknown WebSocket action");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_timing_follows_hb_interval() {
        let s = Session { hb_interval: Duration::from_secs(145) };
        assert_eq!(s.ping_every(), Duration::from_millis(130_500));
        assert!(s.read_deadline() > s.ping_every() * 2 && s.read_deadline() < s.ping_every() * 3);
        let tiny = Session { hb_interval: Duration::from_secs(0) };
        assert_eq!(tiny.ping_every(), Duration::from_millis(500));
    }

    #[test]
    fn sequences_are_unique_and_increasing() {
        let c = WsClient::new(PaceRules::none());
        let seqs: Vec<u64> = (0..1000).map(|_| c.next_sequence().parse().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] > w[0]));
        assert!(seqs[0] >= sign::now_ms() - 5_000);
    }

    #[test]
    fn frames_become_events_or_replies() {
        let c = WsClient::new(PaceRules::none());
        let push = r#"{"action":"update","deviceid":"1000000001","apikey":"k","userAgent":"device","params":{"switch":"on"},"from":"device"}"#;
        assert_eq!(
            on_text(&c, push),
            Some(WsEvent::Params {
                deviceid: "1000000001".into(),
                params: json!({"switch": "on"}).as_object().unwrap().clone()
            })
        );
        let sys = r#"{"action":"sysmsg","deviceid":"100084605c","apikey":"k","ts":0,"params":{"online":false}}"#;
        assert_eq!(on_text(&c, sys), Some(WsEvent::Online { deviceid: "100084605c".into(), online: false }));
        // An ack nobody waits for (timed out) carries no state.
        assert_eq!(on_text(&c, r#"{"error":0,"deviceid":"1","apikey":"k","sequence":"5"}"#), None);
        // A late query answer still carries the device's state.
        let late = r#"{"error":0,"deviceid":"1","apikey":"k","params":{"switch":"off"},"sequence":"6"}"#;
        assert!(matches!(on_text(&c, late), Some(WsEvent::Params { .. })));
        // A reply somebody waits for goes to them.
        let (tx, mut rx) = oneshot::channel();
        c.pending.lock().unwrap().insert("7".into(), tx);
        assert_eq!(on_text(&c, r#"{"error":0,"deviceid":"1","apikey":"k","sequence":"7"}"#), None);
        assert_eq!(rx.try_recv().unwrap()["sequence"], "7");
        assert_eq!(on_text(&c, "garbage"), None);
    }
}
