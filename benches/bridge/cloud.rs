//! eWeLink-side pieces: the simulated cloud with devices of mixed kinds, its `[[ewelink]]` section, devices
//! pushing changes on a schedule, and the command-latency scenario.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hub2mqtt::sim::ewelink::{SimCloud, SimDevice, SimOptions, USER_APIKEY, fixtures};
use rumqttc::{AsyncClient, QoS};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::report::Report;
use crate::support::{BridgeProcess, Mosquitto, Subscriber, bridge_config, load_average, ms, percentile};

/// `n` devices of mixed kinds: the fixtures' templates (every capability of the uiid table: switches of 1,
/// 2 and 4 channels, power meters, thermostats, sensors, bulbs, dimmers, strips, a fan, a cover, a door
/// sensor) in turn, each with its own id (`b000000000` upwards) and MAC.
pub fn mixed_devices(n: usize) -> Vec<SimDevice> {
    let templates: Vec<SimDevice> =
        fixtures::all().into_iter().filter(|d| d.online && d.owner_apikey == USER_APIKEY && d.uiid < 9000).collect();
    (0..n)
        .map(|i| {
            let mut d = templates[i % templates.len()].clone();
            d.deviceid = format!("b{i:09x}");
            d.name = format!("{} {i}", d.name);
            if d.params.contains_key("staMac") {
                let mac = format!("D8:F1:5B:{:02X}:{:02X}:{:02X}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
                d.params.insert("staMac".into(), json!(mac));
            }
            d
        })
        .collect()
}

/// A simulated cloud with `devices` (no fixtures) and `switches` plain switches.
pub async fn start_cloud(devices: Vec<SimDevice>, switches: usize) -> Arc<SimCloud> {
    let options = SimOptions { fixtures: false, extra_devices: switches, ..SimOptions::default() };
    let sim = SimCloud::start(options).await.expect("the simulated cloud");
    for d in devices {
        sim.add_device(d);
    }
    Arc::new(sim)
}

/// The `[[ewelink]]` section for the simulated cloud (API v2, e-mail login, production delays).
pub fn cloud_section(sim: &SimCloud) -> String {
    let o = sim.options();
    format!(
        "[[ewelink]]\nid = \"bench\"\nname = \"Bench account\"\napi = \"v2\"\nregion = \"{}\"\nbase_url = \"{}\"\n\
         app_id = \"{}\"\napp_secret = \"{}\"\nemail = \"{}\"\npassword = \"{}\"\n\n",
        o.region,
        sim.base_url(),
        o.app_id,
        o.app_secret,
        o.email,
        o.password
    )
}

/// The bridge's device ids of the cloud's devices.
pub fn cloud_devices(sim: &SimCloud) -> HashSet<String> {
    sim.device_ids().into_iter().map(|id| format!("ewelink_{id}")).collect()
}

/// Waits until the adapter's queries of devices (it queries every device after a reconnection, paced, one
/// at a time) have stopped for 3 s, or reached every device; commands and steady-state windows start
/// after that. Returns the queries counted.
pub async fn wait_for_queries(sim: &SimCloud, limit: Duration) -> u64 {
    let n = sim.device_ids().len() as u64;
    let deadline = Instant::now() + limit;
    let (mut last, mut since) = (u64::MAX, Instant::now());
    loop {
        let q = sim.counters().ws_queries;
        if q >= n || Instant::now() > deadline {
            return q;
        }
        if q != last {
            (last, since) = (q, Instant::now());
        } else if since.elapsed() > Duration::from_secs(3) {
            return q;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every device pushes one change every `period` (spread evenly), until `stop`: a switch, channel or
/// light toggles (as if its button was pressed), a sensor reports a new temperature. Returns the count of
/// pushes made.
pub fn push_changes(sim: Arc<SimCloud>, period: Duration, stop: CancellationToken) -> Arc<AtomicU64> {
    let pushes = Arc::new(AtomicU64::new(0));
    let counter = pushes.clone();
    tokio::spawn(async move {
        let ids = sim.device_ids();
        if ids.is_empty() {
            return;
        }
        let ticks_per_period = 100usize;
        let mut tick = tokio::time::interval(period / ticks_per_period as u32);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let per_tick = ids.len().div_ceil(ticks_per_period);
        let mut next = 0usize;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for _ in 0..per_tick.min(ids.len()) {
                let id = &ids[next % ids.len()];
                next += 1;
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if !sim.press_button(id) {
                    let mut params = Map::new();
                    params.insert("temperature".into(), json!(format!("{}", 1000 + n % 997)));
                    sim.push_from_device(id, params);
                }
            }
        }
    });
    pushes
}

/// One command in flight.
struct Pending {
    sent: Instant,
    expected: &'static str,
    update_at: Option<Instant>,
}

/// Command latency: `commands` MQTT `set`s at `rate` per second to plain switches (in turn, so that no
/// device sees two within the adapter's 500 ms per-device pacing); for each, the time until the cloud
/// receives the matching `update` frame, and until the new state is on MQTT. Baseline in the same run: a
/// ping published half a period after each command by the same client, to a topic the subscriber follows.
pub async fn latency(report: &mut Report, commands: usize, rate: f64) {
    const SWITCHES: usize = 100;
    println!("command latency: {commands} commands at {rate}/s over {SWITCHES} switches");
    let sim = start_cloud(Vec::new(), SWITCHES).await;
    let broker = Mosquitto::start();
    let mut sub =
        Subscriber::connect(&broker, "bench-sub", &["hub2mqtt/+", "hub2mqtt/bridge/event", "bench/ping"]).await;
    let mut bridge = BridgeProcess::spawn(&bridge_config(&broker, &cloud_section(&sim)));
    // Every switch announced with its state, and queried once after the connection.
    let mut initial: HashMap<String, bool> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while initial.len() < SWITCHES {
        let Some(m) = sub.next(deadline.saturating_duration_since(Instant::now())).await else {
            panic!("only {} of {SWITCHES} switches announced: {:?}", initial.len(), bridge.warnings());
        };
        if let Some(id) = m.topic.strip_prefix("hub2mqtt/ewelink_")
            && let Ok(state) = serde_json::from_slice::<Value>(&m.payload)
            && let Some(on) = state.get("switch").and_then(Value::as_str)
        {
            initial.insert(id.to_owned(), on == "ON");
        }
    }
    wait_for_queries(&sim, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    while sub.next(Duration::from_millis(10)).await.is_some() {}

    let (client, mut eventloop) = AsyncClient::new(broker.options("bench-load"), 1024);
    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let mut updates = sim.watch_updates();
    let mut ids: Vec<String> = initial.keys().cloned().collect();
    ids.sort();
    let mut on = initial.clone();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut pings: VecDeque<(u64, Instant)> = VecDeque::new();
    let (mut leg1, mut leg2, mut base) = (Vec::new(), Vec::new(), Vec::new());
    let mut update_times: Vec<Instant> = Vec::new();
    let (mut refused, mut unmatched) = (0usize, 0usize);
    let load0 = load_average();
    let cpu0 = bridge.sample().cpu;
    let t0 = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut sent = 0usize;
    let mut pinged = 0u64;
    let end_by = Instant::now() + period * commands as u32 + Duration::from_secs(15);
    loop {
        let next_command = start + period * sent as u32;
        let next_ping = start + period * pinged as u32 + period / 2;
        let done_sending = sent >= commands && pinged as usize >= commands;
        if done_sending && pending.is_empty() && pings.is_empty() {
            break;
        }
        if Instant::now() > end_by {
            break;
        }
        let wake = if done_sending {
            tokio::time::Instant::now() + Duration::from_millis(50)
        } else if sent < commands && next_command <= next_ping {
            next_command
        } else {
            next_ping
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                let now = tokio::time::Instant::now();
                if sent < commands && now >= next_command {
                    let id = ids[sent % ids.len()].clone();
                    let target = !on[&id];
                    let payload = if target { "ON" } else { "OFF" };
                    let topic = format!("hub2mqtt/ewelink_{id}/switch/set");
                    if pending.contains_key(&id) {
                        unmatched += 1; // the previous command to this switch never completed
                    }
                    let at = Instant::now();
                    client.publish(topic, QoS::AtMostOnce, false, payload).await.expect("publish");
                    let expected = if target { "on" } else { "off" };
                    pending.insert(id.clone(), Pending { sent: at, expected, update_at: None });
                    on.insert(id, target);
                    sent += 1;
                } else if (pinged as usize) < commands && now >= next_ping {
                    let at = Instant::now();
                    client.publish("bench/ping", QoS::AtMostOnce, false, pinged.to_string()).await.expect("publish");
                    pings.push_back((pinged, at));
                    pinged += 1;
                }
            }
            Some((at, frame)) = updates.recv() => {
                update_times.push(at);
                let id = frame.get("deviceid").and_then(Value::as_str).unwrap_or_default();
                let value = frame.pointer("/params/switch").and_then(Value::as_str);
                match pending.get_mut(id) {
                    Some(p) if value == Some(p.expected) && p.update_at.is_none() => {
                        p.update_at = Some(at);
                        leg1.push(at - p.sent);
                    }
                    _ => unmatched += 1,
                }
            }
            Some(m) = sub.rx.recv() => {
                if m.topic == "bench/ping" {
                    let n: u64 = String::from_utf8_lossy(&m.payload).parse().unwrap_or(u64::MAX);
                    while let Some((k, at)) = pings.front().copied() {
                        if k > n { break; }
                        pings.pop_front();
                        if k == n { base.push(m.at - at); }
                    }
                } else if m.topic == "hub2mqtt/bridge/event" {
                    refused += 1;
                } else if let Some(id) = m.topic.strip_prefix("hub2mqtt/ewelink_")
                    && let Some(p) = pending.get(id)
                    && let Ok(state) = serde_json::from_slice::<Value>(&m.payload)
                    && state.get("switch").and_then(Value::as_str) == Some(&p.expected.to_uppercase())
                {
                    leg2.push(m.at - p.sent);
                    pending.remove(id);
                }
            }
        }
    }
    let elapsed = t0.elapsed();
    let cpu = bridge.sample().cpu - cpu0;
    let load = load0.max(load_average());
    let warnings = bridge.warnings();
    bridge.stop();
    driver.abort();
    sub.stop().await;

    // Frames closer than the adapter's 50 ms between any two requests are impossible; frames that arrived
    // within 52 ms of the previous one were probably held back by that pacing (the rate leaves 1/rate).
    update_times.sort();
    let paced = update_times.windows(2).filter(|w| w[1] - w[0] < Duration::from_millis(52)).count();
    let sort = |v: &mut Vec<Duration>| v.sort();
    sort(&mut leg1);
    sort(&mut leg2);
    sort(&mut base);
    let line = |v: &[Duration]| {
        format!("{} / {} / {}", ms(percentile(v, 50.0)), ms(percentile(v, 99.0)), ms(percentile(v, 100.0)))
    };
    let added =
        |v: &[Duration], p: f64| percentile(v, p).as_secs_f64() * 1000.0 - percentile(&base, p).as_secs_f64() * 1000.0;
    let scenario = format!("latency {commands}@{rate}/s");
    report.row(&scenario, "broker round trip p50 / p99 / max (baseline)", line(&base), "-", "-", None, load);
    report.row(&scenario, "MQTT set → cloud gets update, p50 / p99 / max", line(&leg1), line(&base), "-", None, load);
    let p99 = added(&leg1, 99.0);
    report.row(
        &scenario,
        "update leg, ours − baseline at p50 / p99",
        format!("{:.2} / {:.2} ms", added(&leg1, 50.0), p99),
        "0",
        "p99 ≤ 1 ms",
        Some(p99 <= 1.0),
        load,
    );
    report.row(&scenario, "MQTT set → new state on MQTT, p50 / p99 / max", line(&leg2), line(&base), "-", None, load);
    report.row(
        &scenario,
        "state leg, ours − baseline at p50 / p99",
        format!("{:.2} / {:.2} ms", added(&leg2, 50.0), added(&leg2, 99.0)),
        "0",
        "-",
        None,
        load,
    );
    report.row(
        &scenario,
        "commands: updates / states / pings / lost",
        format!("{} / {} / {} / {}", leg1.len(), leg2.len(), base.len(), commands - leg2.len().min(commands)),
        "-",
        "-",
        Some(leg1.len() == commands && leg2.len() == commands),
        load,
    );
    report.row(
        &scenario,
        "bridge CPU during the run",
        format!("{:.2} % of one core", cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0),
        "-",
        "-",
        None,
        load,
    );
    report.note(format!(
        "latency: {paced} update frames came within 52 ms of the previous one (the adapter's 50 ms pacing may \
         have held them); {unmatched} frames or commands did not match; {refused} bridge events; {} warnings",
        warnings.len()
    ));
}
