//! Supervision of the account's WebSocket: dispatch → connect → `userOnline` → run, and on any drop the
//! same again after a capped, jittered backoff (never a fixed short delay). The backoff only resets after
//! a connection stayed up for a while, so a socket that flaps cannot turn into a handshake storm.
//!
//! Errors are told apart: 401/402 renew the tokens (refresh first; a login only if that is refused);
//! 406 ("logged in elsewhere") is reported and retried slowly, never answered with a login; errors the user
//! must fix (wrong password, app id refused) are reported and retried very slowly.
//!
//! Knows the `auth`, `http` and `ws` parts; nothing of devices or MQTT.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

use super::auth::Auth;
use super::error::CloudError;
use super::ws::{self, WsClient, WsEvent};

/// Delays of the supervisor (defaults per the cloud's published limits; tests shorten them).
#[derive(Debug, Clone)]
pub struct SessionTuning {
    /// Reconnects after a drop or a network failure: (first, cap).
    pub reconnect: (Duration, Duration),
    /// Retries after 406 "logged in elsewhere".
    pub logged_in_elsewhere: (Duration, Duration),
    /// Retries after an error only the user can fix (wrong password, app id refused, quota).
    pub needs_user: (Duration, Duration),
    /// A connection up this long resets the backoff.
    pub stable_after: Duration,
    pub handshake_timeout: Duration,
}

impl Default for SessionTuning {
    fn default() -> Self {
        SessionTuning {
            reconnect: (Duration::from_secs(2), Duration::from_secs(300)),
            logged_in_elsewhere: (Duration::from_secs(60), Duration::from_secs(1800)),
            needs_user: (Duration::from_secs(300), Duration::from_secs(3600)),
            stable_after: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(15),
        }
    }
}

/// Keeps the socket up until `stop` is cancelled, reporting through `events`.
pub async fn supervise(
    auth: Arc<Auth>,
    client: Arc<WsClient>,
    events: mpsc::Sender<WsEvent>,
    tuning: SessionTuning,
    stop: CancellationToken,
) {
    let mut reconnect = Backoff::new(tuning.reconnect.0, tuning.reconnect.1);
    let mut elsewhere = Backoff::new(tuning.logged_in_elsewhere.0, tuning.logged_in_elsewhere.1);
    let mut needs_user = Backoff::new(tuning.needs_user.0, tuning.needs_user.1);
    loop {
        let delay = match connect_once(&auth, &tuning).await {
            Ok((socket, session)) => {
                elsewhere.reset();
                needs_user.reset();
                tracing::info!(hb_interval_s = session.hb_interval.as_secs(), "eWeLink WebSocket connected");
                if events.send(WsEvent::Connected).await.is_err() {
                    return;
                }
                let started = Instant::now();
                let reason = ws::run(socket, session, &client, &events, &stop).await;
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!(reason = %reason, "eWeLink WebSocket disconnected");
                if events.send(WsEvent::Disconnected { reason }).await.is_err() {
                    return;
                }
                if started.elapsed() >= tuning.stable_after {
                    reconnect.reset();
                }
                reconnect.next_delay()
            }
            Err(e) => {
                let (delay, problem) = match &e {
                    CloudError::LoggedInElsewhere => (elsewhere.next_delay(), true),
                    e if e.needs_user() || matches!(e, CloudError::Quota | CloudError::LoginThrottled { .. }) => {
                        (needs_user.next_delay(), true)
                    }
                    _ => (reconnect.next_delay(), false),
                };
                tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "cannot connect the eWeLink WebSocket");
                let reason = e.to_string();
                let event = if problem {
                    WsEvent::Problem { reason: reason.clone() }
                } else {
                    WsEvent::Disconnected { reason: reason.clone() }
                };
                if events.send(event).await.is_err() {
                    return;
                }
                if problem && events.send(WsEvent::Disconnected { reason }).await.is_err() {
                    return;
                }
                delay
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Dispatch, connect and handshake once; renews the tokens if the handshake says they are stale.
async fn connect_once(auth: &Auth, tuning: &SessionTuning) -> Result<(ws::Socket, ws::Session), CloudError> {
    let http = auth.http().clone();
    let target = auth
        .with_tokens(|t| {
            let http = http.clone();
            async move { http.dispatch(&t.at).await }
        })
        .await?;
    let tokens = auth.tokens().await?;
    let attempt =
        ws::connect(&target.url, tokens.at.expose(), &tokens.apikey, http.app_id(), tuning.handshake_timeout).await;
    match attempt {
        Err(e) if e.needs_new_token() => {
            // The dispatch went through but the socket refused the token: renew it, retry once.
            tracing::info!(error = %e, "the WebSocket refused the access token; renewing it");
            let tokens = auth.renew(&tokens).await?;
            ws::connect(&target.url, tokens.at.expose(), &tokens.apikey, http.app_id(), tuning.handshake_timeout).await
        }
        other => other,
    }
}
