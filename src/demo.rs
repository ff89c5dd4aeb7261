//! `hub2mqtt demo`: everything on one machine with nothing installed. Starts the embedded broker (or
//! uses `--external-broker`), the simulated hubs, and the bridge wired to them, and prints how to watch
//! and command it.
//!
//! Knows how to assemble the parts for a demo; knows nothing of how any part works inside.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Port of the embedded MQTT broker (a free one is chosen if it is taken).
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Use this broker (mqtt://host:port) instead of starting one.
    #[arg(long, value_name = "URL")]
    pub external_broker: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error("no free port for the embedded broker: {0}")]
    Port(std::io::Error),
}

/// A free port on 127.0.0.1: `wanted` if it is free, else one the OS picks.
fn free_port(wanted: u16) -> Result<u16, std::io::Error> {
    if TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], wanted))).is_ok() {
        return Ok(wanted);
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> Result<(), DemoError> {
    let mut config = Config::default();
    let (host, port) = match &args.external_broker {
        Some(url) => {
            config.mqtt.url = url.clone();
            let ep = config.mqtt.endpoint().map_err(|m| crate::config::ConfigError {
                file: "--external-broker".into(),
                key: String::new(),
                message: m,
            })?;
            (ep.host, ep.port)
        }
        None => {
            let port = free_port(args.port).map_err(DemoError::Port)?;
            if port != args.port {
                println!("Port {} is taken; the embedded broker uses {port} instead.", args.port);
            }
            config.mqtt.embedded = true;
            config.mqtt.embedded_listen = format!("127.0.0.1:{port}");
            ("127.0.0.1".to_owned(), port)
        }
    };
    config.mqtt.client_id = format!("hub2mqtt-demo-{}", std::process::id());
    config.validate().map_err(|(key, message)| crate::config::ConfigError { file: "demo".into(), key, message })?;

    let base = &config.mqtt.base_topic;
    println!(
        "hub2mqtt demo\n\
         \n  MQTT broker:   mqtt://{host}:{port}\
         \n  Watch it:      mosquitto_sub -h {host} -p {port} -t '{base}/#' -t 'homeassistant/#' -v\
         \n  Home Assistant: add the MQTT integration with broker {host}, port {port}; the devices appear by themselves.\
         \n\n  Stop with Ctrl-C.\n"
    );

    let stop = CancellationToken::new();
    let app = tokio::spawn(crate::app::run(config, stop.clone()));
    let deadline = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = deadline => {}
    }
    stop.cancel();
    match app.await {
        Ok(result) => Ok(result?),
        Err(e) => {
            tracing::error!("the demo's bridge task failed: {e}");
            Ok(())
        }
    }
}
