//! iKuai routers: the HTTP [`client`], the response [`model`], the [`poller`], and the mapping of router
//! data to devices, entities and states ([`mapping`], [`presence`]). One [`run`] per `[[ikuai]]` entry;
//! routers run independently. Knows nothing of MQTT.

pub mod client;
pub mod mapping;
pub mod model;
pub mod poller;
pub mod presence;

use tokio_util::sync::CancellationToken;

use crate::config::IkuaiConfig;
use crate::hub::{CommandError, HubHandle};

/// Runs one router's adapter until `shutdown` is cancelled (or the bridge goes away).
pub async fn run(cfg: IkuaiConfig, hub: HubHandle, shutdown: CancellationToken) {
    let HubHandle { events, mut commands, .. } = hub;
    // A router has nothing to command: answer each command at once instead of letting it time out.
    let refuse = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = refuse.cancelled() => break,
                command = commands.recv() => match command {
                    Some(c) => c.reply.fail(CommandError::Invalid("an iKuai router's entities are read-only".into())),
                    None => break,
                },
            }
        }
    });

    let client = match client::Client::new(&cfg) {
        Ok(c) => c,
        Err(reason) => {
            tracing::error!(router = %cfg.id, "{reason}");
            let device = mapping::router_device_id(&cfg);
            let _ = events.link(false, Some(reason.clone())).await;
            let _ = events.problem(Some(&device), reason).await;
            shutdown.cancelled().await;
            return;
        }
    };
    tracing::info!(router = %cfg.id, url = %cfg.url, "polling the iKuai router");
    let mut poller = poller::Poller::new(cfg, client, events);
    loop {
        let delay = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = poller.poll_once() => match next {
                Ok(delay) => delay,
                Err(_bridge_gone) => return,
            },
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
