//! Wiring: starts the embedded broker when asked, the bridge, one supervised adapter task per configured hub, the
//! MQTT session and the systemd notifier; on shutdown stops them in order (adapters, bridge, then the
//! session, which publishes `offline` last).
//!
//! Knows which parts exist and in what order they start and stop; knows nothing of what they do inside.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bridge::{Bridge, BridgeSettings};
use crate::config::Config;
use crate::mqtt::{Session, SessionSettings};
use crate::supervise::{restart_backoff, supervise};

/// How long adapters get to finish (answer commands, close sockets) on shutdown.
const ADAPTER_STOP_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
    #[error("embedded broker: {0}")]
    Broker(#[from] crate::broker::BrokerError),
    #[error("mqtt.embedded_listen: {0}")]
    EmbeddedListen(String),
}

/// Runs hub2mqtt with the hubs of `config` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    App::new(config).run(shutdown).await
}

/// The program, assembled but not yet running: the bridge with one registered hub per `[[ikuai]]` and
/// `[[ewelink]]` entry. More hubs can be added with [`App::add_hub`] (tests and embedders do).
pub struct App {
    config: Config,
    bridge: Bridge,
    adapters: JoinSet<()>,
    adapters_stop: CancellationToken,
}

impl App {
    /// Registers the configured hubs and starts their adapters (they wait for the bridge to run).
    pub fn new(config: Config) -> App {
        let mut bridge = Bridge::new(&BridgeSettings {
            base_topic: config.mqtt.base_topic.clone(),
            discovery_prefix: config.mqtt.discovery_prefix.clone(),
            discovery: config.mqtt.discovery,
        });
        let adapters_stop = CancellationToken::new();
        let mut adapters = JoinSet::new();
        for router in &config.ikuai {
            let label = router.name.clone().unwrap_or_else(|| format!("iKuai {}", router.id));
            let hub = bridge.add_hub(&format!("ikuai_{}", router.id), &label);
            let (router, stop) = (router.clone(), adapters_stop.clone());
            adapters.spawn(supervise(hub, stop.clone(), restart_backoff(), move |hub| {
                crate::ikuai::run(router.clone(), hub, stop.clone())
            }));
        }
        for account in &config.ewelink {
            let label = account.name.clone().unwrap_or_else(|| format!("eWeLink {}", account.id));
            let hub = bridge.add_hub(&format!("ewelink_{}", account.id), &label);
            let state_file = account.state_file(&config.bridge);
            let (account, stop) = (account.clone(), adapters_stop.clone());
            adapters.spawn(supervise(hub, stop.clone(), restart_backoff(), move |hub| {
                crate::ewelink::run(account.clone(), state_file.clone(), hub, stop.clone())
            }));
        }
        App { config, bridge, adapters, adapters_stop }
    }

    /// Registers one more hub; its adapter is whoever holds the returned handle.
    pub fn add_hub(&mut self, id: &str, label: &str) -> crate::hub::HubHandle {
        self.bridge.add_hub(id, label)
    }

    /// Runs until `shutdown` is cancelled, then stops adapters, the bridge and the MQTT session in order.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let App { config, bridge, mut adapters, adapters_stop } = self;
        crate::install_crypto_provider();
        if config.mqtt.wants_embedded() {
            let listen: SocketAddr =
                config.mqtt.embedded_listen.parse().map_err(|e| AppError::EmbeddedListen(format!("{e}")))?;
            tokio::task::spawn_blocking(move || crate::broker::start(listen))
                .await
                .map_err(|e| AppError::EmbeddedListen(e.to_string()))??;
        }
        let settings =
            SessionSettings::from_config(&config.mqtt, bridge.topics().bridge_state(), bridge.subscriptions())?;
        let (publisher, inbound, session) = Session::start(settings);
        let notifier = tokio::spawn(systemd_notifier(session.connected.clone(), bridge.liveness()));
        let bridge_stop = CancellationToken::new();
        let bridge_task = tokio::spawn(bridge.run(publisher, inbound, bridge_stop.clone()));

        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(ended) = adapters.join_next() => match ended {
                    Ok(()) => tracing::error!("a hub adapter stopped on its own; its devices are no longer updated"),
                    Err(e) => tracing::error!("a hub adapter crashed: {e}; its devices are no longer updated"),
                },
            }
        }

        tracing::info!("shutting down");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        adapters_stop.cancel();
        let stopped =
            tokio::time::timeout(ADAPTER_STOP_TIMEOUT, async { while adapters.join_next().await.is_some() {} });
        if stopped.await.is_err() {
            tracing::warn!("hub adapters did not stop within {ADAPTER_STOP_TIMEOUT:?}; leaving them");
            adapters.abort_all();
        }
        bridge_stop.cancel();
        if let Err(e) = bridge_task.await {
            tracing::error!("the bridge task failed: {e}");
        }
        session.shutdown().await;
        notifier.abort();
        Ok(())
    }
}

/// systemd's notify protocol: READY after the first MQTT connection; WATCHDOG each half period while
/// the bridge loop answers a liveness ping. Does nothing outside systemd.
async fn systemd_notifier(mut connected: watch::Receiver<bool>, liveness: mpsc::Sender<oneshot::Sender<()>>) {
    if connected.wait_for(|up| *up).await.is_err() {
        return;
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let Some(period) = sd_notify::watchdog_enabled() else { return };
    let mut tick = tokio::time::interval(period / 2);
    loop {
        tick.tick().await;
        let (tx, rx) = oneshot::channel();
        let answered =
            liveness.send(tx).await.is_ok() && matches!(tokio::time::timeout(period / 2, rx).await, Ok(Ok(())));
        if answered {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!("the bridge loop did not answer a liveness check; not petting the systemd watchdog");
        }
    }
}
