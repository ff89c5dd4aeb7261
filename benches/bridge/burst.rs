//! Watching a discovery burst: which devices got a config and a state, when the last message came, and
//! the baseline (a bare client publishing the same retained messages to a fresh broker).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, QoS};

use crate::support::{Kind, Mosquitto, Seen, Subscriber, classify};

/// How long a burst may take before the bench gives up on it.
pub const BURST_LIMIT: Duration = Duration::from_secs(120);
/// Silence after the expected set is complete that ends the burst (stragglers such as the router's
/// later entities are caught by it).
const QUIET: Duration = Duration::from_millis(1500);

/// What a burst must deliver: a discovery config and a state for each of these devices.
pub struct Expected {
    pub devices: HashSet<String>,
}

/// What a subscriber saw of a burst.
pub struct Burst {
    /// Every message, in arrival order.
    pub messages: Vec<Seen>,
    /// `hub2mqtt/bridge/state` = `online` (the bridge is connected to the broker).
    pub online: Option<Instant>,
    pub first_config: Option<Instant>,
    /// The first config of each device, by device.
    pub first_config_of: std::collections::HashMap<String, Instant>,
    /// When every expected device had a config and a state.
    pub complete: Option<Instant>,
    /// The last message of the burst.
    pub last: Option<Instant>,
    pub missing: usize,
}

/// Reads messages until every expected device has a config and a state, and then until `QUIET` passes
/// without a message (or `BURST_LIMIT`).
pub async fn watch(sub: &mut Subscriber, expected: &Expected, started: Instant) -> Burst {
    let mut configs: HashSet<String> = HashSet::new();
    let mut states: HashSet<String> = HashSet::new();
    let mut burst = Burst {
        messages: Vec::new(),
        online: None,
        first_config: None,
        first_config_of: Default::default(),
        complete: None,
        last: None,
        missing: expected.devices.len(),
    };
    let deadline = started + BURST_LIMIT;
    loop {
        let wait = match burst.complete {
            Some(_) => QUIET,
            None => deadline.saturating_duration_since(Instant::now()),
        };
        let Some(seen) = sub.next(wait).await else { break };
        match classify(&seen.topic) {
            Kind::Discovery { device } => {
                burst.first_config.get_or_insert(seen.at);
                burst.first_config_of.entry(device.clone()).or_insert(seen.at);
                if expected.devices.contains(&device) {
                    configs.insert(device);
                }
            }
            Kind::State { device } if expected.devices.contains(&device) => {
                states.insert(device);
            }
            _ => {
                if seen.topic == "hub2mqtt/bridge/state" && &seen.payload[..] == b"online" {
                    burst.online.get_or_insert(seen.at);
                }
            }
        }
        burst.last = Some(seen.at);
        burst.messages.push(seen);
        if burst.complete.is_none() && configs.len() == expected.devices.len() && states.len() == expected.devices.len()
        {
            burst.complete = burst.last;
        }
    }
    burst.missing = expected.devices.len() * 2 - configs.len() - states.len();
    burst
}

/// The baseline: a bare rumqttc client (the bridge's own settings: QoS 1, 4096 queued requests, 100 in
/// flight) publishes `messages` retained to a fresh broker; the time from creating the client to the
/// subscriber seeing the last one.
pub async fn bare_client_burst(messages: &[(String, Bytes)]) -> Duration {
    let broker = Mosquitto::start();
    let mut sub = Subscriber::connect(&broker, "bench-baseline-sub", &["homeassistant/#", "hub2mqtt/#"]).await;
    let started = Instant::now();
    let mut options = broker.options("bench-baseline-pub");
    options.set_request_channel_capacity(4096);
    let (client, mut eventloop) = AsyncClient::new(options, 4096);
    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let publisher = {
        let client = client.clone();
        let messages = messages.to_vec();
        tokio::spawn(async move {
            for (topic, payload) in messages {
                if client.publish_bytes(topic, QoS::AtLeastOnce, true, payload).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut seen = 0;
    let mut last = started;
    while seen < messages.len() {
        match sub.next(BURST_LIMIT).await {
            Some(s) => {
                seen += 1;
                last = s.at;
            }
            None => panic!("the baseline burst lost messages: {seen} of {}", messages.len()),
        }
    }
    let _ = publisher.await;
    let _ = client.disconnect().await;
    driver.abort();
    sub.stop().await;
    last - started
}
