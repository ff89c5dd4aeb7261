//! The embedded MQTT broker (rumqttd), for `hub2mqtt demo`, the tests, and setups without a broker.
//!
//! It keeps retained messages and last wills. It has no authentication, so it listens on 127.0.0.1
//! unless told otherwise. Limits worth knowing: a new QoS 1 subscription is replayed at most 100 retained
//! messages (a rumqttd constant), a QoS 0 one up to [`RETAINED_REPLAY`]. Mosquitto has no such limits and
//! is the broker to use for a real installation.
//!
//! Knows nothing of the bridge: it only serves MQTT on an address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// How many messages a QoS 0 subscriber is sent per read (and so retained messages replayed on subscribe).
pub const RETAINED_REPLAY: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
}

fn config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: crate::mqtt::MAX_PACKET_SIZE,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "hub2mqtt-embedded".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: RETAINED_REPLAY,
            // Bounded memory: the broker's in-memory log keeps at most 4 segments of 8 MiB.
            max_segment_size: 8 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    }
}

/// Starts the broker on its own threads and returns once it accepts connections on `listen`.
/// It runs until the process exits.
pub fn start(listen: SocketAddr) -> Result<(), BrokerError> {
    // Fail early and clearly when the port is taken (rumqttd would only log it from its thread).
    drop(std::net::TcpListener::bind(listen).map_err(|e| BrokerError::Listen { addr: listen, reason: e.to_string() })?);
    let mut broker = Broker::new(config(listen));
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("the embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| BrokerError::Listen { addr: listen, reason: e.to_string() })?;
    // Wait until it accepts connections (it binds from its own thread).
    let target = if listen.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], listen.port())) } else { listen };
    for _ in 0..200 {
        if std::net::TcpStream::connect_timeout(&target, Duration::from_millis(100)).is_ok() {
            tracing::info!(%listen, "embedded MQTT broker listening");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(BrokerError::Listen { addr: listen, reason: "the broker did not start listening within 5 s".into() })
}
