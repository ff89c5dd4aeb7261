//! The eWeLink (CoolKit) cloud: signing, HTTP API v1 and v2, the WebSocket session and its supervision,
//! the uiid capability table, timers, and the adapter that turns them into the hub contract. Knows nothing
//! of MQTT.
//!
//! | part | owns |
//! |---|---|
//! | `sign` | HMAC-SHA256 signatures, nonces, timestamps |
//! | `pace` | pacing of calls per the cloud's published limits |
//! | `http` | v1 and v2 requests, response shapes, error codes, endpoints per region / `base_url` |
//! | `auth` | where tokens come from, renewal (refresh, then login), the 0600 state file |
//! | `ws` | one WebSocket: handshake, heartbeat, read deadline, requests matched by sequence |
//! | `session` | reconnect supervision with backoff, 406 and token handling |
//! | `devices` | the uiid capability table, params ↔ entity states and commands |
//! | `timers` | timer validation, add/remove over the whole array |
//! | `adapter` | devices, pushes, availability, commands answered |

pub mod adapter;
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

pub use adapter::Tuning;

/// Runs one account's adapter until `shutdown` is cancelled. `state_file` keeps tokens across restarts.
pub async fn run(cfg: EwelinkConfig, state_file: PathBuf, hub: HubHandle, shutdown: CancellationToken) {
    run_with(cfg, state_file, hub, shutdown, Tuning::default()).await
}

/// [`run`] with other delays and limits (tests, benchmarks, the demo).
pub async fn run_with(
    cfg: EwelinkConfig,
    state_file: PathBuf,
    hub: HubHandle,
    shutdown: CancellationToken,
    tuning: Tuning,
) {
    adapter::run(cfg, state_file, hub, shutdown, tuning).await
}
