//! iKuai routers: the HTTP client, the response model, the poller and the mapping of router data to
//! devices, entities and states. Knows nothing of MQTT.

pub mod client;
pub mod mapping;
pub mod model;
pub mod presence;

use tokio_util::sync::CancellationToken;

use crate::config::IkuaiConfig;
use crate::hub::HubHandle;

/// Runs one router's adapter until `shutdown` is cancelled.
pub async fn run(cfg: IkuaiConfig, hub: HubHandle, shutdown: CancellationToken) {
    let _ = hub.events.link(false, Some("the iKuai adapter is not implemented yet".into())).await;
    tracing::warn!(router = %cfg.id, "the iKuai adapter is not implemented yet");
    shutdown.cancelled().await;
}
