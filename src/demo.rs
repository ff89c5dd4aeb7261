//! `hub2mqtt demo`: everything on one machine with nothing installed. Starts the embedded broker (or
//! uses `--external-broker`), the simulated hubs, and the bridge wired to them, and prints how to watch
//! and command it.
//!
//! Knows how to assemble the parts for a demo; knows nothing of how any part works inside.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, EwelinkApi, EwelinkConfig, IkuaiConfig};
use crate::secret::Secret;
use crate::sim::ewelink::{self as cloud_sim, SimCloud};
use crate::sim::ikuai::{SimOptions, SimRouter};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Port of the embedded MQTT broker (a free one is chosen if it is taken).
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Address the embedded broker listens on; 0.0.0.0 lets a Home Assistant on another machine connect
    /// (the embedded broker has no authentication).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Use this broker (mqtt://host:port) instead of starting one.
    #[arg(long, value_name = "URL")]
    pub external_broker: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the simulated {what}: {source}")]
    Simulator { what: &'static str, source: std::io::Error },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error("no free port for the embedded broker: {0}")]
    Port(std::io::Error),
}

/// A free port on `ip`: `wanted` if it is free, else one the OS picks.
fn free_port(ip: std::net::IpAddr, wanted: u16) -> Result<u16, std::io::Error> {
    if TcpListener::bind(SocketAddr::new(ip, wanted)).is_ok() {
        return Ok(wanted);
    }
    Ok(TcpListener::bind(SocketAddr::new(ip, 0))?.local_addr()?.port())
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
            let port = free_port(args.bind, args.port).map_err(DemoError::Port)?;
            if port != args.port {
                println!("Port {} is taken; the embedded broker uses {port} instead.", args.port);
            }
            config.mqtt.embedded = true;
            config.mqtt.embedded_listen = SocketAddr::new(args.bind, port).to_string();
            let host =
                if args.bind.is_unspecified() { "<this machine's address>".to_owned() } else { args.bind.to_string() };
            (host, port)
        }
    };
    config.mqtt.client_id = format!("hub2mqtt-demo-{}", std::process::id());

    // The simulated hubs live as long as the demo does.
    let router = SimRouter::start(SimOptions::demo())
        .await
        .map_err(|source| DemoError::Simulator { what: "iKuai router", source })?;
    config.ikuai.push(IkuaiConfig {
        id: "demo".into(),
        name: Some("iKuai demo router".into()),
        url: router.url(),
        password: Some(Secret::new(SimOptions::demo().password)),
        poll_interval_s: 5,
        track_clients: true,
        consider_home_s: 30,
        client_rate_sensors: true,
        app_traffic: true,
        ..IkuaiConfig::default()
    });
    let cloud = SimCloud::start(cloud_sim::SimOptions {
        animate: Some(Duration::from_secs(5)),
        ..cloud_sim::SimOptions::default()
    })
    .await
    .map_err(|source| DemoError::Simulator { what: "eWeLink cloud", source })?;
    let account = cloud.options();
    let state_dir = std::env::temp_dir().join(format!("hub2mqtt-demo-{}", std::process::id()));
    config.bridge.state_dir = state_dir.clone();
    config.ewelink.push(EwelinkConfig {
        id: "demo".into(),
        name: Some("eWeLink demo cloud".into()),
        api: EwelinkApi::V2,
        base_url: Some(cloud.base_url()),
        app_id: account.app_id.clone(),
        app_secret: Some(Secret::new(account.app_secret.clone())),
        email: Some(account.email.clone()),
        password: Some(Secret::new(account.password.clone())),
        ..EwelinkConfig::default()
    });
    config.validate().map_err(|(key, message)| crate::config::ConfigError { file: "demo".into(), key, message })?;

    let base = &config.mqtt.base_topic;
    let plug = format!("ewelink_{}", cloud_sim::ids::SWITCH_UIID1);
    let bulb = format!("ewelink_{}", cloud_sim::ids::RGBW_104);
    println!(
        "hub2mqtt demo\n\
         \n  MQTT broker:     mqtt://{host}:{port}\
         \n  Watch it:        mosquitto_sub -h {host} -p {port} -t '{base}/#' -t 'homeassistant/#' -v\
         \n  Router state:    mosquitto_sub -h {host} -p {port} -t '{base}/ikuai_demo' -v\
         \n  Toggle a plug:   mosquitto_pub -h {host} -p {port} -t '{base}/{plug}/switch/set' -m TOGGLE\
         \n  Dim a bulb:      mosquitto_pub -h {host} -p {port} -t '{base}/{bulb}/set' -m '{{\"light\":{{\"state\":\"ON\",\"brightness\":30}}}}'\
         \n  Failures:        mosquitto_sub -h {host} -p {port} -t '{base}/bridge/event' -v\
         \n  Simulated hubs:  iKuai router at {} (admin/admin, 12 LAN clients coming and going)\
         \n                   eWeLink cloud at {} (a device of every supported kind; temperatures and power drift)\
         \n  Home Assistant:  add the MQTT integration with broker {host}, port {port}; the devices appear by themselves\
         \n                   (a Home Assistant on another machine: run the demo with --bind 0.0.0.0)\
         \n\n  Stop with Ctrl-C.\n",
        router.url(),
        cloud.base_url()
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
    let result = match app.await {
        Ok(result) => result.map_err(DemoError::from),
        Err(e) => {
            tracing::error!("the demo's bridge task failed: {e}");
            Ok(())
        }
    };
    router.stop().await;
    cloud.stop();
    let _ = std::fs::remove_dir_all(&state_dir);
    result
}
