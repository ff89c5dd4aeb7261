//! The simulated cloud's WebSocket (`/api/ws`): the `userOnline` handshake checked field by field, `config`
//! with `hbl`/`hbInterval`, `ping`/`pong`, disconnection of clients silent for longer than the heartbeat
//! allows, `update` (applied, acked with the same `sequence`, then pushed by the device) and `query`;
//! 503 for offline devices and 504 for devices that do not answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fixtures::USER_APIKEY;
use super::http::{handshake_token_error, take_406};
use super::state::{AtomicCounters, ConnCmd, Shared, apply_params, device_push, is_shared};

pub(super) async fn serve(shared: Arc<Shared>, socket: WebSocket) {
    AtomicCounters::bump(&shared.counters.ws_connections);
    let (mut sink, mut stream) = socket.split();

    // The handshake: the first text frame, within 10 seconds.
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => return Some(t.to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    })
    .await;
    let Ok(Some(first)) = first else { return };
    AtomicCounters::bump(&shared.counters.handshake_attempts);
    let reply = match handshake(&shared, &first) {
        Ok(reply) => reply,
        Err(reply) => {
            let _ = sink.send(Message::Text(reply.to_string().into())).await;
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
    };
    if sink.send(Message::Text(reply.to_string().into())).await.is_err() {
        return;
    }
    AtomicCounters::bump(&shared.counters.handshakes);

    let (tx, mut rx) = mpsc::unbounded_channel::<ConnCmd>();
    let id = shared.register_conn(tx.clone());
    let closed = CancellationToken::new();
    let writer_closed = closed.clone();
    let writer_shared = shared.clone();
    let writer = tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                ConnCmd::Send(text) => {
                    if writer_shared.frozen.load(Ordering::SeqCst) {
                        continue;
                    }
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                ConnCmd::Close => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            }
        }
        writer_closed.cancel();
    });

    let silence = Duration::from_secs(shared.opts.hb_interval_s + 7) + shared.opts.heartbeat_grace;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        let frozen = shared.frozen.load(Ordering::SeqCst);
        if frozen {
            // Half-open: read nothing, answer nothing, enforce nothing.
            tokio::select! {
                _ = closed.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            last_heard = tokio::time::Instant::now();
            continue;
        }
        let deadline = last_heard + silence;
        tokio::select! {
            _ = closed.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => {
                if shared.frozen.load(Ordering::SeqCst) {
                    continue;
                }
                AtomicCounters::bump(&shared.counters.heartbeat_kills);
                tracing::debug!("the simulated cloud closes a silent WebSocket");
                let _ = tx.send(ConnCmd::Close);
                break;
            }
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                if shared.frozen.load(Ordering::SeqCst) {
                    continue;
                }
                last_heard = tokio::time::Instant::now();
                match msg {
                    Message::Text(text) => on_text(&shared, &tx, text.as_str()),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        }
    }
    shared.unregister_conn(id);
    let _ = tx.send(ConnCmd::Close);
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn is_ms_sequence(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Validates `userOnline`; the reply to send (success or the error that closes the socket).
fn handshake(shared: &Shared, text: &str) -> Result<Value, Value> {
    let bad = |reason: &str, seq: &Value| {
        AtomicCounters::bump(&shared.counters.bad_requests);
        json!({"error": 400, "reason": reason, "sequence": seq})
    };
    let Ok(v) = serde_json::from_str::<Value>(text) else { return Err(bad("not JSON", &Value::Null)) };
    let seq = v.get("sequence").cloned().unwrap_or(Value::Null);
    if str_field(&v, "action") != Some("userOnline") {
        return Err(bad("the first message must be action userOnline", &seq));
    }
    if !seq.as_str().is_some_and(is_ms_sequence) {
        return Err(bad("sequence must be a millisecond timestamp string", &seq));
    }
    if str_field(&v, "appid") != Some(shared.opts.app_id.as_str()) {
        return Err(bad("appid is missing or unknown", &seq));
    }
    if let Err(e) = shared.take_nonce(str_field(&v, "nonce").unwrap_or("")) {
        return Err(bad(&e, &seq));
    }
    match v.get("ts").and_then(Value::as_u64) {
        Some(ts) => {
            if let Err(e) = shared.check_ts(ts) {
                return Err(bad(&e, &seq));
            }
        }
        None => return Err(bad("ts must be a number (seconds)", &seq)),
    }
    if str_field(&v, "userAgent") != Some("app") {
        return Err(bad("userAgent must be app", &seq));
    }
    if v.get("version").and_then(Value::as_u64) != Some(8) {
        return Err(bad("version must be the number 8", &seq));
    }
    let Some(at) = str_field(&v, "at") else { return Err(bad("at is required", &seq)) };
    if let Some(code) = handshake_token_error(shared, at) {
        return Err(json!({"error": code, "reason": "Authentication Failed", "sequence": seq}));
    }
    if str_field(&v, "apikey") != Some(USER_APIKEY) {
        return Err(json!({"error": 401, "reason": "apikey does not match the token", "sequence": seq}));
    }
    if take_406(shared) {
        AtomicCounters::bump(&shared.counters.handshakes_406);
        return Err(json!({"error": 406, "reason": "Authentication Failed", "sequence": seq}));
    }
    Ok(json!({"error": 0, "apikey": USER_APIKEY,
              "config": {"hbl": 1, "hbInterval": shared.opts.hb_interval_s}, "sequence": seq}))
}

fn on_text(shared: &Arc<Shared>, tx: &mpsc::UnboundedSender<ConnCmd>, text: &str) {
    let arrived = std::time::Instant::now();
    if text == "ping" {
        AtomicCounters::bump(&shared.counters.pings);
        let _ = tx.send(ConnCmd::Send("pong".into()));
        return;
    }
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            AtomicCounters::bump(&shared.counters.bad_requests);
            let _ = tx.send(ConnCmd::Send(json!({"error": 400, "reason": "not JSON"}).to_string()));
            return;
        }
    };
    let outcome = match str_field(&v, "action") {
        Some("update") => {
            AtomicCounters::bump(&shared.counters.ws_updates);
            shared.state().updates.push((text.to_owned(), v.clone()));
            shared.notify_update(arrived, &v);
            update(shared, &v)
        }
        Some("query") => {
            AtomicCounters::bump(&shared.counters.ws_queries);
            shared.state().queries.push(v.clone());
            query(shared, &v)
        }
        _ => Err(json!({"error": 400, "reason": "unknown action"})),
    };
    let seq = v.get("sequence").cloned().unwrap_or(Value::Null);
    let (reply, push) = match outcome {
        Ok((reply, push)) => (reply, push),
        Err(mut e) => {
            if e.get("error").and_then(Value::as_i64) == Some(400) {
                AtomicCounters::bump(&shared.counters.bad_requests);
            }
            if let Some(o) = e.as_object_mut() {
                o.insert("sequence".into(), seq);
                if let Some(id) = v.get("deviceid") {
                    o.insert("deviceid".into(), id.clone());
                }
            }
            (e, None)
        }
    };
    let delay = shared.state().ack_delay;
    let (tx, shared) = (tx.clone(), shared.clone());
    let send = move || {
        let _ = tx.send(ConnCmd::Send(reply.to_string()));
        if let Some(push) = push {
            shared.broadcast(&push);
        }
    };
    if delay.is_zero() {
        send();
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            send();
        });
    }
}

type Handled = Result<(Value, Option<String>), Value>;

/// Fields every device request carries.
fn device_request(v: &Value) -> Result<(&str, &str, &str), Value> {
    let seq = str_field(v, "sequence").filter(|s| is_ms_sequence(s));
    let Some(seq) = seq else { return Err(json!({"error": 400, "reason": "sequence must be a millisecond string"})) };
    let Some(apikey) = str_field(v, "apikey") else {
        return Err(json!({"error": 400, "reason": "apikey is required"}));
    };
    let Some(id) = str_field(v, "deviceid") else {
        return Err(json!({"error": 400, "reason": "deviceid is required"}));
    };
    if str_field(v, "userAgent") != Some("app") {
        return Err(json!({"error": 400, "reason": "userAgent must be app"}));
    }
    if v.get("ts").and_then(Value::as_u64) != Some(0) {
        return Err(json!({"error": 400, "reason": "ts must be the number 0"}));
    }
    Ok((seq, apikey, id))
}

fn update(shared: &Shared, v: &Value) -> Handled {
    let (seq, apikey, id) = device_request(v)?;
    let params = v
        .get("params")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| json!({"error": 400, "reason": "params must be a non-empty object"}))?;
    let mut st = shared.state();
    let d = st.devices.get_mut(id).ok_or_else(|| json!({"error": 400, "reason": "no such device"}))?;
    if apikey != d.owner_apikey {
        return Err(json!({"error": 403, "reason": "apikey is not the device owner's"}));
    }
    if let Some(own) = str_field(v, "selfApikey")
        && own != USER_APIKEY
    {
        return Err(json!({"error": 403, "reason": "selfApikey is not the user's"}));
    }
    if is_shared(d) {
        if str_field(v, "selfApikey") != Some(USER_APIKEY) {
            return Err(json!({"error": 403, "reason": "a shared device needs selfApikey"}));
        }
        if params.contains_key("timers") {
            return Err(json!({"error": 403, "reason": "shared users cannot change timers"}));
        }
    }
    if let Some(timers) = params.get("timers") {
        check_timers(timers).map_err(|reason| json!({"error": 400, "reason": reason}))?;
    }
    if !d.online {
        return Err(json!({"error": 503, "reason": "device offline"}));
    }
    if !d.responsive {
        return Err(json!({"error": 504, "reason": "device did not answer"}));
    }
    let applied = apply_params(d, params);
    let push = device_push(d, &applied);
    Ok((json!({"error": 0, "deviceid": id, "apikey": apikey, "sequence": seq}), Some(push)))
}

fn query(shared: &Shared, v: &Value) -> Handled {
    let (seq, apikey, id) = device_request(v)?;
    let names = v
        .get("params")
        .and_then(Value::as_array)
        .ok_or_else(|| json!({"error": 400, "reason": "params must be an array of names"}))?;
    if names.iter().any(|n| !n.is_string()) {
        return Err(json!({"error": 400, "reason": "params must be an array of names"}));
    }
    let st = shared.state();
    let d = st.devices.get(id).ok_or_else(|| json!({"error": 400, "reason": "no such device"}))?;
    if apikey != d.owner_apikey {
        return Err(json!({"error": 403, "reason": "apikey is not the device owner's"}));
    }
    if !d.online {
        return Err(json!({"error": 503, "reason": "device offline"}));
    }
    let params: Map<String, Value> = if names.is_empty() {
        d.params.clone()
    } else {
        names
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|n| d.params.get(n).map(|v| (n.to_owned(), v.clone())))
            .collect()
    };
    Ok((json!({"error": 0, "deviceid": id, "apikey": apikey, "params": params, "sequence": seq}), None))
}

/// The document's timer shape: every field it marks required, with the types it names.
fn check_timers(timers: &Value) -> Result<(), String> {
    let list = timers.as_array().ok_or("timers must be an array")?;
    for (i, t) in list.iter().enumerate() {
        let e = |m: &str| format!("timers[{i}]: {m}");
        let o = t.as_object().ok_or_else(|| e("not an object"))?;
        if !matches!(o.get("enabled").and_then(Value::as_u64), Some(0 | 1)) {
            return Err(e("enabled must be 0 or 1"));
        }
        let mid = o.get("mId").and_then(Value::as_str).ok_or_else(|| e("mId is required"))?;
        if uuid::Uuid::parse_str(mid).is_err() {
            return Err(e("mId must look like xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"));
        }
        let kind = o.get("type").and_then(Value::as_str).ok_or_else(|| e("type is required"))?;
        let ck =
            o.get("coolkit_timer_type").and_then(Value::as_str).ok_or_else(|| e("coolkit_timer_type is required"))?;
        let expected = match ck {
            "once" | "delay" => "once",
            "repeat" => "repeat",
            "duration" => "duration",
            _ => return Err(e("coolkit_timer_type must be once, repeat, duration or delay")),
        };
        if kind != expected {
            return Err(e(&format!("type must be {expected} for coolkit_timer_type {ck}")));
        }
        if o.get("at").and_then(Value::as_str).is_none() {
            return Err(e("at is required"));
        }
        if ck == "duration" {
            if !(o.get("startDo").is_some_and(Value::is_object) && o.get("endDo").is_some_and(Value::is_object)) {
                return Err(e("a duration timer needs startDo and endDo"));
            }
        } else if !o.get("do").is_some_and(Value::is_object) {
            return Err(e("do is required"));
        }
        if ck == "delay" && o.get("period").and_then(Value::as_str).is_none() {
            return Err(e("a delay timer needs period (minutes, a string)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ewelink::sign;

    #[test]
    fn timers_follow_the_document() {
        let once = json!([{"enabled": 1, "mId": "c102f00f-db6f-fef0-f296-9dd10fdc2193", "type": "once",
            "at": "2017-07-24T08:28:00.000Z", "do": {"switch": "on"}, "coolkit_timer_type": "once"}]);
        assert_eq!(check_timers(&once), Ok(()));
        let delay = json!([{"enabled": 1, "mId": "95303c64-fbb4-f497-1341-c592432d1d0d", "type": "once",
            "at": "2017-07-24T09:10:43.223Z", "do": {"switch": "on"}, "period": "30", "coolkit_timer_type": "delay"}]);
        assert_eq!(check_timers(&delay), Ok(()));
        let bad =
            json!([{"enabled": true, "mId": "x", "type": "once", "at": "x", "do": {}, "coolkit_timer_type": "once"}]);
        assert!(check_timers(&bad).is_err());
        let no_period = json!([{"enabled": 1, "mId": "95303c64-fbb4-f497-1341-c592432d1d0d", "type": "once",
            "at": "2017-07-24T09:10:43.223Z", "do": {"switch": "on"}, "coolkit_timer_type": "delay"}]);
        assert!(check_timers(&no_period).unwrap_err().contains("period"));
    }

    #[test]
    fn sequences_are_millisecond_strings() {
        assert!(is_ms_sequence(&sign::now_ms().to_string()));
        assert!(!is_ms_sequence("12a"));
        assert!(!is_ms_sequence(""));
    }
}
