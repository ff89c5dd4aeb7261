//! hub2mqtt: an MQTT bridge for home-automation hubs (iKuai routers, the eWeLink cloud) that speaks
//! Home Assistant's MQTT discovery.
//!
//! Data flows one way in and one way out. Adapters (`ikuai`, `ewelink`) know their hub and nothing of
//! MQTT; they speak the plain types of [`hub`]. The [`bridge`] knows MQTT and Home Assistant ([`hass`])
//! and nothing of any hub's protocol. [`mqtt`] owns the broker connection, [`app`] wires it all together.

pub mod app;
pub mod backoff;
pub mod bridge;
pub mod broker;
pub mod config;
pub mod demo;
pub mod ewelink;
pub mod hass;
pub mod hub;
pub mod ikuai;
pub mod logging;
pub mod mqtt;
pub mod secret;
pub mod sim;
pub mod supervise;

/// The version shown by `--version`, in discovery `origin` blocks and on the bridge device.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Installs ring as the process's rustls crypto provider (every TLS connection uses it: MQTT, the routers'
/// HTTPS, the cloud's HTTPS and WebSocket). Idempotent; call it before the first TLS connection.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
