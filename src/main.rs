//! The `hub2mqtt` command: parses the command line, sets up logging and signals, and runs the chosen
//! subcommand. Exit codes: 0 success, 1 runtime error (and an invalid config for `check-config`),
//! 2 usage error, 78 (EX_CONFIG) an invalid configuration for `run`, so that a service manager stops
//! restarting a bridge that cannot work.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use hub2mqtt::config::Config;

#[derive(Parser)]
#[command(name = "hub2mqtt", version, about = "Bridge iKuai routers and eWeLink devices to MQTT and Home Assistant")]
struct Cli {
    /// Configuration file (TOML); see config.example.toml.
    #[arg(short, long, global = true, env = "HUB2MQTT_CONFIG", default_value = "config.toml")]
    config: PathBuf,

    /// Log level (error, warn, info, debug, trace) or a filter like `info,hub2mqtt::ewelink=debug`;
    /// overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge (the default).
    Run,
    /// Check the configuration and print it, secrets masked. Exit 0 if valid, 1 if not.
    CheckConfig,
    /// Run a self-contained demo: an embedded broker, a simulated router and a simulated eWeLink cloud.
    Demo(hub2mqtt::demo::DemoArgs),
    /// Exit 0 if this configuration's bridge is online on its broker, 1 if not (for container health checks).
    Healthcheck,
    /// Run only the embedded MQTT broker.
    Broker {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:1883")]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    hub2mqtt::logging::init(cli.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hub2mqtt: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(&cli.config).await,
            Command::CheckConfig => check_config(&cli.config),
            Command::Demo(args) => report(hub2mqtt::demo::run(args, shutdown_on_signals()).await),
            Command::Healthcheck => healthcheck(&cli.config).await,
            Command::Broker { listen } => {
                if let Err(e) = hub2mqtt::broker::start(listen) {
                    eprintln!("hub2mqtt: {e}");
                    return ExitCode::FAILURE;
                }
                shutdown_on_signals().cancelled().await;
                ExitCode::SUCCESS
            }
        }
    })
}

/// glibc's malloc gives each thread that allocates its own arena, keeps what is freed in it, and raises its
/// mmap threshold after the first large free: with thousands of devices the bridge's resident memory grew
/// to twice its heap within minutes of polling (BENCHMARKS.md). One arena (the bridge's few threads are
/// I/O-bound and rarely allocate at the same moment; small allocations use per-thread caches anyway) and
/// fixed 64 KiB mmap and trim thresholds keep it near the heap. `MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` in the environment win over these.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    const M_ARENA_MAX: i32 = -8;
    for (param, value, env) in [
        (M_ARENA_MAX, 1, "MALLOC_ARENA_MAX"),
        (M_MMAP_THRESHOLD, 64 * 1024, "MALLOC_MMAP_THRESHOLD_"),
        (M_TRIM_THRESHOLD, 64 * 1024, "MALLOC_TRIM_THRESHOLD_"),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: mallopt only sets allocator parameters; this runs first in main, before any other
            // thread exists.
            unsafe {
                mallopt(param, value);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

/// Exit code of an invalid configuration (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

fn load(path: &std::path::Path, code: u8) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("hub2mqtt: {e}");
        ExitCode::from(code)
    })
}

async fn run(path: &std::path::Path) -> ExitCode {
    let config = match load(path, EXIT_CONFIG) {
        Ok(c) => c,
        Err(code) => return code,
    };
    tracing::info!(version = hub2mqtt::VERSION, config = %path.display(), "starting hub2mqtt");
    report(hub2mqtt::app::run(config, shutdown_on_signals()).await)
}

fn report<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("hub2mqtt: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match load(path, 1) {
        Ok(config) => {
            println!("# {}: valid\n{}", path.display(), config.to_masked_toml());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

async fn healthcheck(path: &std::path::Path) -> ExitCode {
    let config = match load(path, 1) {
        Ok(c) => c,
        Err(code) => return code,
    };
    hub2mqtt::install_crypto_provider();
    let topic = format!("{}/bridge/state", config.mqtt.base_topic);
    match hub2mqtt::mqtt::read_retained(&config.mqtt, &topic, Duration::from_secs(5)).await {
        Ok(Some(state)) if &state[..] == b"online" => {
            println!("online");
            ExitCode::SUCCESS
        }
        Ok(Some(state)) => {
            println!("{}", String::from_utf8_lossy(&state));
            ExitCode::FAILURE
        }
        Ok(None) => {
            println!("unknown: nothing retained on {topic}");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("unreachable: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A token cancelled on the first SIGINT or SIGTERM; a second signal exits at once.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; stopping (send it again to exit at once)");
        cancel.cancel();
        wait_for_signal().await;
        eprintln!("hub2mqtt: second signal, exiting now");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
