//! iKuai-side scenarios: the discovery burst of a router tracking thousands of LAN clients, start-up at
//! home scale, and steady state (router polled every 5 s) at both scales.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hub2mqtt::sim::ikuai::{SimOptions, SimRouter};

use crate::burst::{Expected, bare_client_burst, watch};
use crate::report::Report;
use crate::support::{
    BridgeProcess, Mosquitto, Subscriber, Tally, bridge_config, load_average, mb, median, ms, percentile,
};

pub const ROUTER_ID: &str = "ikuai_bench";

/// How the bench's router is configured in the bridge.
pub struct RouterSetup {
    pub poll_s: u64,
    pub consider_home_s: u64,
}

/// The `[[ikuai]]` section for a simulated router.
pub fn router_section(sim: &SimRouter, setup: &RouterSetup) -> String {
    format!(
        "[[ikuai]]\nid = \"bench\"\nname = \"Bench router\"\nurl = \"{}\"\nusername = \"admin\"\npassword = \"admin\"\n\
         poll_interval_s = {}\nslow_poll_interval_s = {}\ntrack_clients = true\nconsider_home_s = {}\n\n",
        sim.url(),
        setup.poll_s,
        setup.poll_s.max(300),
        setup.consider_home_s
    )
}

/// The router and one device per LAN client.
pub fn router_devices(sim: &SimRouter) -> HashSet<String> {
    let mut devices: HashSet<String> =
        sim.client_macs().iter().map(|mac| format!("{ROUTER_ID}_{}", mac.replace(':', ""))).collect();
    devices.insert(ROUTER_ID.to_owned());
    devices
}

/// Discovery burst: a router with `clients` LAN clients; process start → the subscriber has the last
/// config and state; vs a bare client publishing the same messages. `runs` alternating pairs.
pub async fn discovery(report: &mut Report, clients: usize, runs: usize) {
    println!("discovery burst: 1 router, {clients} LAN clients, {runs} runs");
    let sim = SimRouter::start(SimOptions { clients: Some(clients), ..SimOptions::default() }).await.expect("sim");
    let expected = Expected { devices: router_devices(&sim) };
    let setup = RouterSetup { poll_s: 60, consider_home_s: 180 };
    let (mut ours, mut base, mut online, mut counts, mut loads) = (vec![], vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        let load = load_average();
        let broker = Mosquitto::start();
        let mut sub = Subscriber::connect(&broker, "bench-sub", &["homeassistant/#", "hub2mqtt/#"]).await;
        let mut bridge = BridgeProcess::spawn(&bridge_config(&broker, &router_section(&sim, &setup)));
        let burst = watch(&mut sub, &expected, bridge.started).await;
        let sampled = bridge.sample();
        let peak = sampled.peak_rss;
        let first_client = burst
            .first_config_of
            .iter()
            .filter(|(d, _)| d.as_str() != ROUTER_ID && d.starts_with(ROUTER_ID))
            .map(|(_, t)| *t)
            .min();
        println!(
            "  run {run}: router's first config at {}, first client config at {}, bridge CPU {} (whole life)",
            ms(burst.first_config_of.get(ROUTER_ID).map(|t| *t - bridge.started).unwrap_or_default()),
            ms(first_client.map(|t| t - bridge.started).unwrap_or_default()),
            ms(sampled.cpu)
        );
        bridge.stop();
        sub.stop().await;
        drop(broker);
        assert_eq!(burst.missing, 0, "the burst is incomplete: {} configs/states missing", burst.missing);
        let t = burst.last.expect("messages") - bridge.started;
        let t_online = burst.online.map(|o| o - bridge.started).unwrap_or_default();
        let messages: Vec<_> = burst.messages.iter().map(|m| (m.topic.clone(), m.payload.clone())).collect();
        if std::env::var_os("BENCH_TIMELINE").is_some() {
            print_timeline(&burst.messages, bridge.started);
        }
        let mut tally = Tally::default();
        burst.messages.iter().for_each(|m| tally.count(m));
        println!(
            "  run {run}: {} discovery, {} state, {} availability, {} other ({} bridge/info), {:.1} MB of payload",
            tally.discovery,
            tally.state,
            tally.availability,
            tally.other,
            burst.messages.iter().filter(|m| m.topic == "hub2mqtt/bridge/info").count(),
            tally.bytes as f64 / 1e6
        );
        let b = bare_client_burst(&messages).await;
        println!(
            "  run {run}: ours {} (connected at {}), {} messages, bare client {}, peak RSS {}, load {load:.2}",
            ms(t),
            ms(t_online),
            messages.len(),
            ms(b),
            mb(peak)
        );
        ours.push(t);
        base.push(b);
        online.push(t_online);
        counts.push(messages.len());
        loads.push(load);
    }
    let (o, b) = (median(&ours), median(&base));
    let load = loads.iter().cloned().fold(0.0, f64::max);
    let scenario = format!("burst {clients} clients");
    let ratio = o.as_secs_f64() / b.as_secs_f64();
    report.row(&scenario, "start → last config and state (median)", ms(o), ms(b), "≤ 3× and < 5 s", None, load);
    report.row(
        &scenario,
        "ours / baseline",
        format!("{ratio:.2}×"),
        "1×",
        "≤ 3×",
        Some(ratio <= 3.0 && o < Duration::from_secs(5)),
        load,
    );
    report.row(&scenario, "start → broker connected (median)", ms(median(&online)), "-", "-", None, load);
    report.row(&scenario, "retained messages", counts[0].to_string(), counts[0].to_string(), "-", None, load);
    report.note(format!(
        "burst {clients} clients, every run (ours / bare client): {}",
        ours.iter().zip(&base).map(|(o, b)| format!("{} / {}", ms(*o), ms(*b))).collect::<Vec<_>>().join(", ")
    ));
}

/// Start-up at home scale: process start → connected → first discovery; `runs` runs, fresh broker each.
pub async fn startup(report: &mut Report, runs: usize) {
    println!("start-up: 1 router, 30 LAN clients, {runs} runs");
    let sim = SimRouter::start(SimOptions { clients: Some(30), ..SimOptions::default() }).await.expect("sim");
    let expected = Expected { devices: router_devices(&sim) };
    let setup = RouterSetup { poll_s: 10, consider_home_s: 180 };
    let (mut connect, mut first, mut router, mut all, mut loads) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        loads.push(load_average());
        let broker = Mosquitto::start();
        let mut sub = Subscriber::connect(&broker, "bench-sub", &["homeassistant/#", "hub2mqtt/#"]).await;
        let mut bridge = BridgeProcess::spawn(&bridge_config(&broker, &router_section(&sim, &setup)));
        let burst = watch(&mut sub, &expected, bridge.started).await;
        bridge.stop();
        sub.stop().await;
        assert_eq!(burst.missing, 0, "start-up incomplete");
        let online = burst.online.expect("online");
        connect.push(online - bridge.started);
        first.push(burst.first_config.expect("a config") - online);
        router.push(burst.first_config_of[ROUTER_ID] - online);
        all.push(burst.complete.expect("complete") - online);
    }
    let load = loads.iter().cloned().fold(0.0, f64::max);
    let sorted = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let line = |v: &[Duration]| {
        let s = sorted(v);
        format!("{} (max {})", ms(percentile(&s, 50.0)), ms(percentile(&s, 100.0)))
    };
    let within = |v: &[Duration]| Some(percentile(&sorted(v), 100.0) <= Duration::from_millis(200));
    report.row("start-up home", "process start → broker connected", line(&connect), "-", "-", None, load);
    report.row(
        "start-up home",
        "connected → first discovery (bridge device)",
        line(&first),
        "-",
        "≤ 200 ms",
        within(&first),
        load,
    );
    report.row(
        "start-up home",
        "connected → router's first discovery",
        line(&router),
        "-",
        "≤ 200 ms",
        within(&router),
        load,
    );
    report.row("start-up home", "connected → all 31 devices' configs + states", line(&all), "-", "-", None, load);
}

/// Steady state: the router polled every 5 s for `duration` (after the burst and a settling time):
/// CPU time of the bridge process, its peak RSS, and MQTT messages per change.
pub async fn steady(report: &mut Report, name: &str, clients: usize, churn: Duration, duration: Duration) {
    println!("steady state '{name}': 1 router, {clients} LAN clients, poll 5 s, churn {churn:?}, {duration:?}");
    let options =
        SimOptions { clients: Some(clients), client_churn: Some(churn), animate: true, ..SimOptions::default() };
    let sim = SimRouter::start(options).await.expect("sim");
    let expected = Expected { devices: router_devices(&sim) };
    // A short grace period, so that clients coming and going become changes within the window.
    let setup = RouterSetup { poll_s: 5, consider_home_s: 5 };
    let broker = Mosquitto::start();
    let mut sub = Subscriber::connect(&broker, "bench-sub", &["homeassistant/#", "hub2mqtt/#"]).await;
    let mut bridge = BridgeProcess::spawn(&bridge_config(&broker, &router_section(&sim, &setup)));
    let burst = watch(&mut sub, &expected, bridge.started).await;
    assert_eq!(burst.missing, 0, "the burst is incomplete");
    let mut tally = Tally::default();
    for m in &burst.messages {
        tally.prime(m);
    }
    // Settle: the first polls after start.
    let settle_until = Instant::now() + Duration::from_secs(12);
    while let Some(m) = sub.next(settle_until.saturating_duration_since(Instant::now())).await {
        tally.prime(&m);
    }
    let load0 = load_average();
    let polls0 = sim.stats().calls_by_func.get("homepage").copied().unwrap_or(0);
    let s0 = bridge.sample();
    let t0 = Instant::now();
    let end = t0 + duration;
    while let Some(m) = sub.next(end.saturating_duration_since(Instant::now())).await {
        tally.count(&m);
    }
    let s1 = bridge.sample();
    let elapsed = t0.elapsed();
    let polls = sim.stats().calls_by_func.get("homepage").copied().unwrap_or(0) - polls0;
    let load = load0.max(load_average());
    let warnings = bridge.warnings();
    bridge.stop();
    sub.stop().await;

    let cpu = (s1.cpu - s0.cpu).as_secs_f64() / elapsed.as_secs_f64() * 100.0;
    let (cpu_target, rss_target) = if clients <= 100 { (0.5, 12_000_000) } else { (5.0, 60_000_000) };
    let scenario = format!("steady {name}");
    report.row(
        &scenario,
        &format!("CPU, % of one core ({} s)", elapsed.as_secs()),
        format!("{cpu:.2} %"),
        "-",
        format!("≤ {cpu_target} %"),
        Some(cpu <= cpu_target),
        load,
    );
    report.row(
        &scenario,
        "peak RSS (VmHWM, whole run)",
        mb(s1.peak_rss),
        "-",
        format!("≤ {} MB", rss_target / 1_000_000),
        Some(s1.peak_rss <= rss_target),
        load,
    );
    report.row(
        &scenario,
        "RSS at the end (anonymous; threads)",
        format!("{} ({}; {})", mb(s1.rss), mb(s1.rss_anon), s1.threads),
        "-",
        "-",
        None,
        load,
    );
    let per_change = tally.messages as f64 / tally.changes().max(1) as f64;
    report.row(
        &scenario,
        "MQTT messages per change",
        format!("{per_change:.3}"),
        "-",
        "1",
        Some(tally.duplicates == 0),
        load,
    );
    report.row(
        &scenario,
        "messages: state / avail. / discovery / other",
        format!("{} / {} / {} / {}", tally.state, tally.availability, tally.discovery, tally.other),
        "-",
        "-",
        None,
        load,
    );
    report.row(&scenario, "router polls in the window", polls.to_string(), "-", "-", None, load);
    if !warnings.is_empty() {
        report.note(format!("steady {name}: {} warnings in the bridge's log, first: {}", warnings.len(), warnings[0]));
    }
}

/// Messages seen per 100 ms since `start` (`BENCH_TIMELINE=1`), to see where a burst waits.
fn print_timeline(messages: &[crate::support::Seen], start: Instant) {
    let mut buckets: Vec<usize> = Vec::new();
    for m in messages {
        let i = (m.at - start).as_millis() as usize / 100;
        if buckets.len() <= i {
            buckets.resize(i + 1, 0);
        }
        buckets[i] += 1;
    }
    let line: Vec<String> = buckets.iter().enumerate().map(|(i, n)| format!("{}:{n}", i * 100)).collect();
    println!("  timeline (ms:messages) {}", line.join(" "));
}
