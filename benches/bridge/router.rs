//! Scenarios with a simulated router (tracking its LAN clients) and, optionally, a simulated eWeLink cloud
//! with devices of mixed kinds: the discovery burst, start-up at home scale, and steady state (router
//! polled every 5 s, every eWeLink device pushing a change every 10 s).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub2mqtt::sim::ewelink::SimCloud;
use hub2mqtt::sim::ikuai::{SimOptions, SimRouter};
use tokio_util::sync::CancellationToken;

use crate::burst::{Expected, bare_client_burst, watch};
use crate::cloud::{cloud_devices, cloud_section, mixed_devices, push_changes, start_cloud, wait_for_queries};
use crate::report::Report;
use crate::support::{
    BridgeProcess, Mosquitto, Subscriber, Tally, bridge_config, load_average, mb, median, ms, percentile,
};

/// The simulated hubs of a scenario and the bridge's configuration for them.
pub struct Hubs {
    pub router: SimRouter,
    pub cloud: Option<Arc<SimCloud>>,
    setup: RouterSetup,
    pub clients: usize,
    pub ewelink: usize,
}

impl Hubs {
    pub async fn start(router: SimOptions, setup: RouterSetup, ewelink: usize) -> Hubs {
        let clients = router.clients.unwrap_or(2);
        let router = SimRouter::start(router).await.expect("the simulated router");
        let cloud = if ewelink > 0 { Some(start_cloud(mixed_devices(ewelink), 0).await) } else { None };
        Hubs { router, cloud, setup, clients, ewelink }
    }

    pub fn config(&self, broker: &Mosquitto) -> String {
        let mut sections = router_section(&self.router, &self.setup);
        if let Some(cloud) = &self.cloud {
            sections.push_str(&cloud_section(cloud));
        }
        bridge_config(broker, &sections)
    }

    pub fn expected(&self) -> Expected {
        let mut devices = router_devices(&self.router);
        if let Some(cloud) = &self.cloud {
            devices.extend(cloud_devices(cloud));
        }
        Expected { devices }
    }

    /// `5000 clients + 2000 eWeLink`, for the report.
    pub fn label(&self) -> String {
        match self.ewelink {
            0 => format!("{} clients", self.clients),
            n => format!("{} clients + {n} eWeLink", self.clients),
        }
    }
}

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

/// Discovery burst: a router with `clients` LAN clients (and `ewelink` devices); process start → the
/// subscriber has the last config and state; vs a bare client publishing the same messages. `runs` pairs.
pub async fn discovery(report: &mut Report, clients: usize, ewelink: usize, runs: usize) {
    let options = SimOptions { clients: Some(clients), ..SimOptions::default() };
    let hubs = Hubs::start(options, RouterSetup { poll_s: 60, consider_home_s: 180 }, ewelink).await;
    println!("discovery burst: 1 router, {}, {runs} runs", hubs.label());
    let expected = hubs.expected();
    let (mut ours, mut base, mut online, mut counts, mut loads) = (vec![], vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        let load = load_average();
        let broker = Mosquitto::start();
        let mut sub = Subscriber::connect(&broker, "bench-sub", &["homeassistant/#", "hub2mqtt/#"]).await;
        let mut bridge = BridgeProcess::spawn(&hubs.config(&broker));
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
    let scenario = format!("burst {}", hubs.label());
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
        "burst {}, every run (ours / bare client): {}",
        hubs.label(),
        ours.iter().zip(&base).map(|(o, b)| format!("{} / {}", ms(*o), ms(*b))).collect::<Vec<_>>().join(", ")
    ));
}

/// Start-up at home scale: process start → connected → first discovery; `runs` runs, fresh broker each.
pub async fn startup(report: &mut Report, ewelink: usize, runs: usize) {
    let options = SimOptions { clients: Some(30), ..SimOptions::default() };
    let hubs = Hubs::start(options, RouterSetup { poll_s: 10, consider_home_s: 180 }, ewelink).await;
    println!("start-up: 1 router, {}, {runs} runs", hubs.label());
    let expected = hubs.expected();
    let (mut connect, mut first, mut router, mut cloud, mut all, mut loads) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        loads.push(load_average());
        let broker = Mosquitto::start();
        let mut sub = Subscriber::connect(&broker, "bench-sub", &["homeassistant/#", "hub2mqtt/#"]).await;
        let mut bridge = BridgeProcess::spawn(&hubs.config(&broker));
        let burst = watch(&mut sub, &expected, bridge.started).await;
        bridge.stop();
        sub.stop().await;
        assert_eq!(burst.missing, 0, "start-up incomplete");
        let online = burst.online.expect("online");
        connect.push(online - bridge.started);
        first.push(burst.first_config.expect("a config") - online);
        router.push(burst.first_config_of[ROUTER_ID] - online);
        if let Some(t) = burst.first_config_of.iter().filter(|(d, _)| d.starts_with("ewelink_")).map(|(_, t)| *t).min()
        {
            cloud.push(t - online);
        }
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
    let scenario = format!("start-up {}", hubs.label());
    report.row(&scenario, "process start → broker connected", line(&connect), "-", "-", None, load);
    report.row(
        &scenario,
        "connected → first discovery (bridge device)",
        line(&first),
        "-",
        "≤ 200 ms",
        within(&first),
        load,
    );
    report.row(
        &scenario,
        "connected → router's first discovery",
        line(&router),
        "-",
        "≤ 200 ms",
        within(&router),
        load,
    );
    if !cloud.is_empty() {
        report.row(
            &scenario,
            "connected → first eWeLink device's discovery",
            line(&cloud),
            "-",
            "≤ 200 ms",
            within(&cloud),
            load,
        );
    }
    report.row(
        &scenario,
        &format!("connected → all {} devices' configs + states", expected.devices.len()),
        line(&all),
        "-",
        "-",
        None,
        load,
    );
}

/// Steady state: the router polled every 5 s and every eWeLink device pushing a change every 10 s, for
/// `duration` (after the burst, the adapter's query of every device, and a settling time): CPU time of the
/// bridge process, its peak RSS, and MQTT messages per change.
pub async fn steady(
    report: &mut Report,
    name: &str,
    clients: usize,
    churn: Duration,
    ewelink: usize,
    duration: Duration,
) {
    let options =
        SimOptions { clients: Some(clients), client_churn: Some(churn), animate: true, ..SimOptions::default() };
    // A short grace period, so that clients coming and going become changes within the window.
    let hubs = Hubs::start(options, RouterSetup { poll_s: 5, consider_home_s: 5 }, ewelink).await;
    println!("steady state '{name}': 1 router, {}, poll 5 s, churn {churn:?}, {duration:?}", hubs.label());
    let sim = &hubs.router;
    let expected = hubs.expected();
    let broker = Mosquitto::start();
    let mut sub = Subscriber::connect(&broker, "bench-sub", &["homeassistant/#", "hub2mqtt/#"]).await;
    let mut bridge = BridgeProcess::spawn(&hubs.config(&broker));
    let burst = watch(&mut sub, &expected, bridge.started).await;
    assert_eq!(burst.missing, 0, "the burst is incomplete");
    let mut tally = Tally::default();
    for m in &burst.messages {
        tally.prime(m);
    }
    // The adapter queries every device after connecting (paced: 50 ms apart); wait for it to finish.
    if let Some(cloud) = &hubs.cloud {
        let limit = Duration::from_millis(60 * ewelink as u64 + 30_000);
        let started = Instant::now();
        let queries = wait_for_queries(cloud, limit).await;
        println!("  the adapter's queries: {queries}, settled after {}", ms(started.elapsed()));
        while let Some(m) = sub.next(Duration::from_millis(1)).await {
            tally.prime(&m);
        }
    }
    let stop_pushes = CancellationToken::new();
    let pushes = hubs.cloud.as_ref().map(|c| push_changes(c.clone(), Duration::from_secs(10), stop_pushes.clone()));
    // Settle: the first polls after start.
    let settle_until = Instant::now() + Duration::from_secs(12);
    while let Some(m) = sub.next(settle_until.saturating_duration_since(Instant::now())).await {
        tally.prime(&m);
    }
    let load0 = load_average();
    let polls0 = sim.stats().calls_by_func.get("homepage").copied().unwrap_or(0);
    let s0 = bridge.sample();
    let pushes0 = pushes.as_ref().map(|p| p.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0);
    let t0 = Instant::now();
    let end = t0 + duration;
    let mut cloud_states = 0u64;
    while let Some(m) = sub.next(end.saturating_duration_since(Instant::now())).await {
        if matches!(crate::support::classify(&m.topic), crate::support::Kind::State { device } if device.starts_with("ewelink_"))
        {
            cloud_states += 1;
        }
        tally.count(&m);
    }
    let s1 = bridge.sample();
    let elapsed = t0.elapsed();
    let pushed = pushes.as_ref().map(|p| p.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0) - pushes0;
    stop_pushes.cancel();
    let polls = sim.stats().calls_by_func.get("homepage").copied().unwrap_or(0) - polls0;
    let load = load0.max(load_average());
    let warnings = bridge.warnings();
    bridge.stop();
    sub.stop().await;

    let cpu = (s1.cpu - s0.cpu).as_secs_f64() / elapsed.as_secs_f64() * 100.0;
    let (cpu_target, rss_target) = if clients <= 100 { (0.5, 12_000_000) } else { (5.0, 60_000_000) };
    let scenario = format!("steady {name} ({})", hubs.label());
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
    if pushed > 0 {
        // Pushes near the window's edges may land on either side: the ratio is within a few per mille of 1.
        report.row(
            &scenario,
            "eWeLink state messages per device push",
            format!("{:.3} ({cloud_states} / {pushed})", cloud_states as f64 / pushed as f64),
            "-",
            "1",
            Some((cloud_states as f64 / pushed as f64 - 1.0).abs() < 0.01),
            load,
        );
    }
    report.row(
        &scenario,
        "router polls / eWeLink pushes in the window",
        format!("{polls} / {pushed}"),
        "-",
        "-",
        None,
        load,
    );
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
