//! The eWeLink (CoolKit) cloud: signing, HTTP API v1 and v2, the WebSocket session and its supervision,
//! the uiid capability table, and timers. Knows nothing of MQTT.

pub mod auth;
pub mod devices;
pub mod error;
pub mod http;
pub mod pace;
pub mod session;
pub mod sign;
pub mod timers;
pub mod ws;

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::config::EwelinkConfig;
use crate::hub::HubHandle;

/// Runs one account's adapter until `shutdown` is cancelled. `state_file` keeps tokens across restarts.
pub async fn run(cfg: EwelinkConfig, state_file: PathBuf, hub: HubHandle, shutdown: CancellationToken) {
    let _ = state_file;
    let _ = hub.events.link(false, Some("the eWeLink adapter is not implemented yet".into())).await;
    tracing::warn!(account = %cfg.id, "the eWeLink adapter is not implemented yet");
    shutdown.cancelled().await;
}
