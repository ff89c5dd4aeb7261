//! The MQTT session: the one task that owns rumqttc's event loop.
//!
//! It connects (`mqtt://` or `mqtts://`, credentials, the last will `offline` retained on
//! `<base>/bridge/state`), reconnects with capped, jittered backoff reset on every ConnAck, and on every
//! ConnAck re-subscribes and publishes `online` before telling the bridge, which re-announces everything.
//! On shutdown it publishes `offline` (QoS 1, retained), waits up to 3 s for the broker's ack, and
//! disconnects cleanly (a clean DISCONNECT makes the broker drop the will, so `offline` must be explicit).
//!
//! The task never sends on the client's request channel (that would deadlock when the channel is full):
//! its own packets go to the front of the event loop's `pending` queue. Everything else publishes through
//! the cheap [`Publisher`] handle. Incoming messages go to the bridge on an unbounded channel, so the task
//! never waits on the bridge either; the broker's flow is the bound.
//!
//! Knows nothing of hubs, devices or Home Assistant beyond the topics it is handed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, Publish, QoS, Request,
    Subscribe, SubscribeFilter, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{MqttConfig, MqttEndpoint};

/// Capacity of the client's request channel: enough for a large discovery burst between two polls.
const REQUEST_CAPACITY: usize = 4096;
/// Largest MQTT packet accepted or sent.
pub const MAX_PACKET_SIZE: usize = 1024 * 1024;
/// How long shutdown waits for the broker to acknowledge `offline`.
const OFFLINE_ACK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt.url: {0}")]
    Endpoint(String),
    #[error("{file}: {reason}")]
    TlsFile { file: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// What the session tells the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A ConnAck arrived; subscriptions and `online` are on their way. Re-announce everything.
    Connected,
    /// The connection dropped (or a connection attempt failed after being connected).
    Disconnected,
    Message {
        topic: String,
        payload: Bytes,
        retain: bool,
    },
}

/// A cheap, cloneable handle for publishing (QoS 1).
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
}

impl Publisher {
    /// Queues a QoS 1 publish, waiting while the request channel is full.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        retain: bool,
    ) -> Result<(), rumqttc::ClientError> {
        self.client.publish_bytes(topic, QoS::AtLeastOnce, retain, payload.into()).await
    }
}

/// Settings of one session, derived from `[mqtt]` and the bridge's topics.
#[derive(Clone)]
pub struct SessionSettings {
    pub options: MqttOptions,
    /// The last-will topic (`<base>/bridge/state`).
    pub state_topic: String,
    /// Filters subscribed on every ConnAck.
    pub subscriptions: Vec<String>,
}

impl SessionSettings {
    pub fn from_config(cfg: &MqttConfig, state_topic: String, subscriptions: Vec<String>) -> Result<Self, MqttError> {
        let mut options = connection_options(cfg, &cfg.client_id)?;
        options.set_request_channel_capacity(REQUEST_CAPACITY).set_last_will(LastWill::new(
            &state_topic,
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        Ok(SessionSettings { options, state_topic, subscriptions })
    }
}

/// Broker address, credentials, TLS and limits from `[mqtt]`, with the given client id.
fn connection_options(cfg: &MqttConfig, client_id: &str) -> Result<MqttOptions, MqttError> {
    let MqttEndpoint { host, port, tls } = cfg.endpoint().map_err(MqttError::Endpoint)?;
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(cfg.keep_alive_s))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
    if let Some(user) = cfg.username.as_deref().filter(|u| !u.is_empty()) {
        let password = cfg.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
        options.set_credentials(user, password);
    }
    if tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(cfg)?))));
    }
    Ok(options)
}

/// Connects with a throwaway client id, reads the retained message of `topic`, and disconnects.
/// `Ok(None)` when the topic holds no retained message.
pub async fn read_retained(cfg: &MqttConfig, topic: &str, wait: Duration) -> Result<Option<Bytes>, String> {
    let client_id = format!("{}-check-{}", cfg.client_id, rand::random::<u32>());
    let options = connection_options(cfg, &client_id).map_err(|e| e.to_string())?;
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.subscribe(topic, QoS::AtMostOnce).await.map_err(|e| e.to_string())?;
    let result = tokio::time::timeout(wait, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) if p.topic == topic => return Ok(Some(p.payload)),
                // A SubAck with no retained message before it: nothing is retained there.
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    if let Ok(Ok(Event::Incoming(Incoming::Publish(p)))) =
                        tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await
                        && p.topic == topic
                    {
                        return Ok(Some(p.payload));
                    }
                    return Ok(None);
                }
                Ok(_) => {}
                Err(e) => return Err(describe(&e)),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer from the broker within {wait:?}")));
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
    result
}

fn read_pem_file(path: &std::path::Path) -> Result<Vec<u8>, MqttError> {
    std::fs::read(path).map_err(|e| MqttError::TlsFile { file: path.display().to_string(), reason: e.to_string() })
}

fn tls_config(cfg: &MqttConfig) -> Result<rustls::ClientConfig, MqttError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    crate::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let pem = read_pem_file(path)?;
            let file = path.display().to_string();
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| MqttError::TlsFile { file: file.clone(), reason: e.to_string() })?;
                roots.add(cert).map_err(|e| MqttError::TlsFile { file: file.clone(), reason: e.to_string() })?;
                added += 1;
            }
            if added == 0 {
                return Err(MqttError::TlsFile { file, reason: "no PEM certificate in it".into() });
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&read_pem_file(cert_path)?).collect();
            let certs = certs
                .map_err(|e| MqttError::TlsFile { file: cert_path.display().to_string(), reason: e.to_string() })?;
            let key = PrivateKeyDer::from_pem_slice(&read_pem_file(key_path)?)
                .map_err(|e| MqttError::TlsFile { file: key_path.display().to_string(), reason: e.to_string() })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| MqttError::Tls(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// The running session: stop it with [`Session::shutdown`].
pub struct Session {
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// `true` while connected to the broker.
    pub connected: watch::Receiver<bool>,
}

impl Session {
    /// Starts the session task. Returns the publisher, the bridge's inbound channel and the session.
    pub fn start(settings: SessionSettings) -> (Publisher, mpsc::UnboundedReceiver<Inbound>, Session) {
        let (client, eventloop) = AsyncClient::new(settings.options.clone(), REQUEST_CAPACITY);
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = watch::channel(false);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(eventloop, settings, inbound_tx, connected_tx, stop.clone()));
        (Publisher { client }, inbound_rx, Session { stop, task, connected: connected_rx })
    }

    /// Publishes `offline`, waits (≤ 3 s) for its ack, disconnects, and ends the task.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!("the MQTT session task failed: {e}");
        }
    }
}

async fn run(
    mut eventloop: EventLoop,
    settings: SessionSettings,
    inbound: mpsc::UnboundedSender<Inbound>,
    connected_tx: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let broker = format!("{}:{}", settings.options.broker_address().0, settings.options.broker_address().1);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    let mut connected = false;
    loop {
        // Cancelling `poll()` is only safe between packets; while connected the stop branch can interrupt a
        // write, which costs at most the packet being written at the moment of shutdown.
        let event = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                backoff.reset();
                connected = true;
                tracing::info!(%broker, "connected to the MQTT broker");
                let filters = settings.subscriptions.iter().map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                let online = retained(&settings.state_topic, "online");
                eventloop.pending.push_front(Request::Publish(online));
                eventloop.pending.push_front(Request::Subscribe(Subscribe::new_many(filters)));
                let _ = connected_tx.send(true);
                let _ = inbound.send(Inbound::Connected);
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let _ = inbound.send(Inbound::Message { topic: p.topic, payload: p.payload, retain: p.retain });
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                    tracing::error!(%broker, "the broker refused a subscription: commands may not arrive (check its ACL)");
                }
            }
            Ok(_) => {}
            Err(e) => {
                if connected {
                    connected = false;
                    let _ = connected_tx.send(false);
                    let _ = inbound.send(Inbound::Disconnected);
                }
                let delay = backoff.next_delay();
                let reason = describe(&e);
                if backoff.failures() <= 1 {
                    tracing::warn!(%broker, "MQTT connection lost or refused: {reason}; retrying in {delay:.1?}");
                } else {
                    tracing::warn!(%broker, attempt = backoff.failures(), "MQTT connection failed: {reason}; retrying in {delay:.1?}");
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    if connected {
        say_offline(&mut eventloop, &settings.state_topic).await;
    }
    let _ = connected_tx.send(false);
}

/// Publishes `offline` ahead of anything queued, waits for its ack, then disconnects.
async fn say_offline(eventloop: &mut EventLoop, state_topic: &str) {
    let offline = retained(state_topic, "offline");
    eventloop.pending.push_front(Request::Publish(offline));
    let acked = tokio::time::timeout(OFFLINE_ACK_TIMEOUT, async {
        // `pending` goes first, so the first publish sent from here on is ours.
        let mut ours = None;
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) if ours.is_none() => ours = Some(pkid),
                Ok(Event::Incoming(Incoming::PubAck(ack))) if Some(ack.pkid) == ours => return true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("could not publish offline before shutdown: {}", describe(&e));
                    return false;
                }
            }
        }
    })
    .await
    .unwrap_or(false);
    if !acked {
        tracing::warn!("the broker did not acknowledge offline in time; its last will covers it");
    }
    eventloop.pending.clear();
    eventloop.pending.push_front(Request::Disconnect(rumqttc::Disconnect));
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    tracing::info!("disconnected from the MQTT broker");
}

fn retained(topic: &str, payload: &str) -> Publish {
    let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload);
    publish.retain = true;
    publish
}

/// A human explanation of a connection error (no secrets: rumqttc errors do not carry credentials).
fn describe(e: &ConnectionError) -> String {
    use rumqttc::ConnectReturnCode as Code;
    match e {
        ConnectionError::ConnectionRefused(Code::BadUserNamePassword) => {
            "the broker refused the username or password (mqtt.username / mqtt.password)".into()
        }
        ConnectionError::ConnectionRefused(Code::NotAuthorized) => {
            "the broker says not authorized (check mqtt.username / mqtt.password and the broker's ACL)".into()
        }
        ConnectionError::ConnectionRefused(code) => format!("the broker refused the connection ({code:?})"),
        ConnectionError::Tls(e) => format!("TLS error: {e} (check mqtt.ca_file and the broker's certificate name)"),
        other => other.to_string(),
    }
}
