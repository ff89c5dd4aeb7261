//! hub2mqtt's benchmarks (see BENCHMARKS.md): the release binary as a child process against simulators in
//! this process and a Mosquitto of its own, over real sockets on 127.0.0.1. Not a test: it prints figures
//! and writes them to `target/bench/`; it does not run in CI.
//!
//! `cargo bench --bench bridge -- [SCENARIO...] [--runs N] [--duration SECONDS] [--clients N] [--devices N]
//! [--commands N] [--rate PER_SECOND]`; scenarios below (default: all of them, in that order).

mod burst;
mod cloud;
mod report;
mod router;
mod support;

use std::time::Duration;

use report::Report;

/// iKuai only (`discovery`, `startup`, `steady`, `home`), then both hubs.
const SCENARIOS: &[&str] = &[
    "discovery",
    "startup",
    "steady",
    "home",
    "latency",
    "discovery-full",
    "startup-full",
    "steady-full",
    "home-full",
];

struct Args {
    scenarios: Vec<String>,
    runs: usize,
    duration: Duration,
    clients: usize,
    devices: usize,
    commands: usize,
    rate: f64,
}

fn parse_args() -> Args {
    let mut args = Args {
        scenarios: Vec::new(),
        runs: 3,
        duration: Duration::from_secs(300),
        clients: 5000,
        devices: 2000,
        commands: 10_000,
        rate: 16.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> u64 {
            it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match a.as_str() {
            // Cargo passes `--bench` to harness-less benches.
            "--bench" => {}
            "--runs" => args.runs = number("--runs") as usize,
            "--duration" => args.duration = Duration::from_secs(number("--duration")),
            "--clients" => args.clients = number("--clients") as usize,
            "--devices" => args.devices = number("--devices") as usize,
            "--commands" => args.commands = number("--commands") as usize,
            "--rate" => args.rate = number("--rate") as f64,
            s if SCENARIOS.contains(&s) => args.scenarios.push(s.to_owned()),
            other => panic!("unknown argument {other:?}; scenarios: {SCENARIOS:?}"),
        }
    }
    if args.scenarios.is_empty() {
        args.scenarios = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    args
}

/// One LAN client absent at a time, a different one every period (large network; home network).
const CHURN: Duration = Duration::from_secs(10);
const HOME_CHURN: Duration = Duration::from_secs(45);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    hub2mqtt::install_crypto_provider();
    let binary = support::bridge_binary();
    assert!(binary.exists(), "{} is missing: run `cargo build --release` first", binary.display());
    println!("hub2mqtt benchmarks: {}", binary.display());
    let mut report = Report::default();
    for scenario in &args.scenarios {
        match scenario.as_str() {
            "discovery" => router::discovery(&mut report, args.clients, 0, args.runs).await,
            "startup" => router::startup(&mut report, 0, args.runs.max(10)).await,
            "steady" => router::steady(&mut report, "router", args.clients, CHURN, 0, args.duration).await,
            "home" => router::steady(&mut report, "home", 30, HOME_CHURN, 0, args.duration).await,
            "latency" => cloud::latency(&mut report, args.commands, args.rate).await,
            "discovery-full" => router::discovery(&mut report, args.clients, args.devices, args.runs).await,
            "startup-full" => router::startup(&mut report, 30, args.runs.max(10)).await,
            "steady-full" => {
                router::steady(&mut report, "full", args.clients, CHURN, args.devices, args.duration).await
            }
            "home-full" => router::steady(&mut report, "home", 30, HOME_CHURN, 30, args.duration).await,
            _ => unreachable!("checked in parse_args"),
        }
    }
    let header = format!(
        "## Bench run: {} ({} cores, {})",
        args.scenarios.join(", "),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model()
    );
    println!("\n{}", report.markdown(&header));
    match report.write(&header) {
        Ok(path) => println!("written to {}", path.display()),
        Err(e) => eprintln!("cannot write the report: {e}"),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
