//! What the simulated router knows: the document's example data, made to move with time (counters grow,
//! uptime ticks, and with `animate` the rates, CPU and memory drift), its LAN clients, and the answer to
//! one `(func_name, TYPE)` pair. Knows nothing of HTTP, sessions or faults.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::examples::{example, example_data};

/// Every `func_name` of the document and the `TYPE`s it answers.
pub const FUNCS: &[(&str, &[&str])] = &[
    (
        "homepage",
        &["ether_info", "snapshoot", "app_historical", "app_flow", "ac_status", "dhcp_addrpool_num", "sysstat"],
    ),
    ("monitor_iface", &["iface_check", "iface_stream"]),
    ("monitor_lanip", &["data", "total"]),
    ("monitor_lanipv6", &["data", "total"]),
    ("monitor_l7qos", &["data"]),
    ("dns", &["dns_config", "dns_proxy", "dns_proxy_total", "dns_cache"]),
    ("ipgroup", &["data"]),
    ("ipgroupv6", &["data"]),
    ("macgroupv6", &["data"]),
    ("static_rt", &["data"]),
    ("static_rt_table", &["data", "data6"]),
    ("vlan", &["data"]),
];

/// One LAN client of the simulated router: its row in `monitor_lanip` and/or `monitor_lanipv6`, in the
/// document's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct SimClient {
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub v4: Option<Value>,
    pub v6: Option<Value>,
}

impl SimClient {
    /// A client shaped like the document's `monitor_lanip` example, with this MAC, IPv4 address and
    /// host name (the comment is percent-encoded, as the router sends it).
    pub fn new(mac: &str, ip: &str, hostname: &str) -> SimClient {
        let mut row = example("monitor_lanip_client");
        let comment = format!("{hostname}%20phone");
        if let Some(o) = row.as_object_mut() {
            o.insert("mac".into(), json!(mac));
            o.insert("ip_addr".into(), json!(ip));
            o.insert("ip_addr_int".into(), json!(ipv4_int(ip)));
            o.insert("hostname".into(), json!(hostname));
            o.insert("comment".into(), json!(comment));
            o.insert("client_model".into(), json!("Phone%20model"));
        }
        SimClient { mac: mac.to_ascii_lowercase(), v4: Some(row), v6: None }
    }

    /// Also list the client in `monitor_lanipv6` with this address.
    pub fn with_ipv6(mut self, ip: &str) -> SimClient {
        let mut row = example_data("monitor_lanipv6")["data"][0].clone();
        if let Some(o) = row.as_object_mut() {
            o.insert("mac".into(), json!(self.mac));
            o.insert("ip_addr".into(), json!(ip));
            if let Some(v4) = &self.v4 {
                o.insert("hostname".into(), v4["hostname"].clone());
            }
        }
        self.v6 = Some(row);
        self
    }

    /// The client number `i` of a synthetic population (benchmarks, demo): MAC `02:00:00:xx:xx:xx`,
    /// addresses in 10.x.y.z, every fourth one also on IPv6.
    pub fn synthetic(i: usize) -> SimClient {
        let n = i as u32;
        let mac = format!("02:00:00:{:02x}:{:02x}:{:02x}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
        let ip = format!("10.{}.{}.{}", 20 + ((n >> 16) & 0xff), (n >> 8) & 0xff, (n & 0xff).max(2));
        let mut c = SimClient::new(&mac, &ip, &format!("client-{i}"));
        if let Some(o) = c.v4.as_mut().and_then(Value::as_object_mut) {
            o.insert("upload".into(), json!(100 + (i * 37) % 5000));
            o.insert("download".into(), json!(1000 + (i * 91) % 90000));
            o.insert("id".into(), json!(i + 1));
        }
        if i % 4 == 0 {
            c = c.with_ipv6(&format!("2409:8a04:5633:2171::{:x}", i + 1));
        }
        c
    }

    /// The document's two example clients (one IPv4, one IPv6).
    pub fn document_clients() -> Vec<SimClient> {
        let v4 = example("monitor_lanip_client");
        let v6 = example_data("monitor_lanipv6")["data"][0].clone();
        let mac = |v: &Value| v["mac"].as_str().unwrap_or_default().to_ascii_lowercase();
        vec![SimClient { mac: mac(&v4), v4: Some(v4), v6: None }, SimClient { mac: mac(&v6), v4: None, v6: Some(v6) }]
    }

    /// `n` clients: the document's two first, then synthetic ones.
    pub fn population(n: usize) -> Vec<SimClient> {
        let mut list = SimClient::document_clients();
        list.truncate(n);
        list.extend((list.len()..n).map(SimClient::synthetic));
        list
    }
}

fn ipv4_int(ip: &str) -> u64 {
    ip.parse::<std::net::Ipv4Addr>().map(|a| u64::from(u32::from(a))).unwrap_or(0)
}

/// The router's data and how it moves.
#[derive(Debug)]
pub struct RouterData {
    started: Instant,
    pub animate: bool,
    pub clients: Vec<SimClient>,
    /// With `Some(p)`, one client at a time is absent, a different one every `p`.
    pub client_churn: Option<Duration>,
}

impl RouterData {
    pub fn new(animate: bool, clients: Vec<SimClient>, client_churn: Option<Duration>) -> Self {
        RouterData { started: Instant::now(), animate, clients, client_churn }
    }

    fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The keys `TYPE` adds to `Data` for `func`, or `None` if the function has no such TYPE.
    pub fn fragment(&self, func: &str, ty: &str, param: &Map<String, Value>) -> Option<Map<String, Value>> {
        let known = FUNCS.iter().any(|(f, types)| *f == func && types.contains(&ty));
        if !known {
            return None;
        }
        let t = self.secs();
        let data = match (func, ty) {
            ("homepage", "sysstat") => self.sysstat(t),
            ("homepage", "app_flow") => self.app_flow(t),
            ("homepage", "snapshoot" | "ether_info" | "app_historical" | "ac_status" | "dhcp_addrpool_num") => {
                example_data(ty)
            }
            ("monitor_iface", "iface_check") => example_data("iface_check"),
            ("monitor_iface", "iface_stream") => self.iface_stream(t),
            ("monitor_lanip" | "monitor_lanipv6", _) => self.clients_fragment(func == "monitor_lanipv6", ty, param, t),
            ("monitor_l7qos", _) => self.l7qos(t),
            ("dns", "dns_cache") => self.dns_cache(t),
            ("dns", _) => example_data(ty),
            ("static_rt_table", "data") => example_data("static_rt_table_data"),
            ("static_rt_table", "data6") => example_data("static_rt_table_data6"),
            (_, _) => example_data(func),
        };
        match data {
            Value::Object(map) => Some(map),
            _ => Some(Map::new()),
        }
    }

    fn wave(&self, t: f64, period: f64, amplitude: f64) -> f64 {
        if self.animate { amplitude * (t * std::f64::consts::TAU / period).sin() } else { 0.0 }
    }

    fn sysstat(&self, t: f64) -> Value {
        let mut data = example_data("sysstat");
        let s = &mut data["sysstat"];
        s["uptime"] = json!(828_418 + t as u64);
        let (up, down) = (36_015.0, 573_776.0);
        s["stream"]["total_up"] = json!(72_295_012_401u64 + (up * t) as u64);
        s["stream"]["total_down"] = json!(114_653_745_795u64 + (down * t) as u64);
        if self.animate {
            let cpu = (9.45 + self.wave(t, 47.0, 6.0)).max(0.5);
            s["cpu"] = json!([format!("{cpu:.2}%"), format!("{:.2}%", cpu * 0.95), format!("{:.2}%", cpu * 1.05)]);
            s["cputemp"] = json!([(44.0 + self.wave(t, 300.0, 3.0)).round() as i64]);
            s["memory"]["used"] = json!(format!("{}%", (47.0 + self.wave(t, 600.0, 4.0)).round() as i64));
            s["stream"]["upload"] = json!((up * (1.0 + self.wave(t, 23.0, 0.6))) as u64);
            s["stream"]["download"] = json!((down * (1.0 + self.wave(t, 31.0, 0.6))) as u64);
            s["stream"]["connect_num"] = json!((158.0 + self.wave(t, 41.0, 40.0)) as u64);
            let online = self.visible_clients().count();
            s["online_user"]["count"] = json!(online);
            s["online_user"]["count_wireless"] = json!(online);
            s["online_user"]["count_2g"] = json!(online.div_ceil(2));
            s["online_user"]["count_5g"] = json!(online / 2);
        }
        data
    }

    fn app_flow(&self, t: f64) -> Value {
        let mut data = example_data("app_flow");
        if let Some(row) = data["app_flow"]["app_flow"][0].as_object_mut() {
            let mut total = 0u64;
            for (_, v) in row.iter_mut().filter(|(k, _)| k.as_str() != "Total") {
                // Grow each class by about its own size per day.
                let base = v.as_u64().unwrap_or(0);
                let grown = base + (base as f64 * t / 86_400.0) as u64;
                total += grown;
                *v = json!(grown);
            }
            row.insert("Total".into(), json!(total));
        }
        data
    }

    fn iface_stream(&self, t: f64) -> Value {
        let mut data = example_data("iface_stream");
        let lan_up = 53_484.0 * (1.0 + self.wave(t, 29.0, 0.5));
        let lan_down = 3_912.0 * (1.0 + self.wave(t, 37.0, 0.5));
        if let Some(lan) = data["iface_stream"][0].as_object_mut() {
            lan.insert("upload".into(), json!(lan_up as u64));
            lan.insert("download".into(), json!(lan_down as u64));
            lan.insert("total_up".into(), json!(76_635_843_466u64 + (53_484.0 * t) as u64));
            lan.insert("total_down".into(), json!(86_272_983_579u64 + (3_912.0 * t) as u64));
        }
        // The document elides the other rows ("..."); the WAN line's row, consistent with `sysstat` and
        // `snapshoot_wan`, is this simulator's own.
        let sys = self.sysstat(t);
        let stream = &sys["sysstat"]["stream"];
        let wan = json!({
            "interface": "wan1",
            "comment": "",
            "ip_addr": "10.4.71.74",
            "connect_num": stream["connect_num"].to_string(),
            "upload": stream["upload"],
            "download": stream["download"],
            "total_up": stream["total_up"],
            "total_down": stream["total_down"],
            "updropped": 0,
            "downdropped": 0,
            "uppacked": 0,
            "downpacked": 0
        });
        if let Some(list) = data["iface_stream"].as_array_mut() {
            list.push(wan);
        }
        data
    }

    fn l7qos(&self, t: f64) -> Value {
        let mut data = example_data("monitor_l7qos");
        if let Some(rows) = data["data"][0]["wan1"].as_array_mut() {
            for row in rows {
                for (rate, total) in [("upload", "total_up"), ("download", "total_down")] {
                    let r = number(&row[rate]);
                    let base = number(&row[total]);
                    // Numbers are strings here, as in the document (the ALL row has some as numbers).
                    row[total] = json!(format!("{}", (base + r * t) as u64));
                }
            }
        }
        data
    }

    fn dns_cache(&self, t: f64) -> Value {
        let mut data = example_data("dns_cache");
        if let Some(rows) = data["data"].as_array_mut() {
            for row in rows.iter_mut().skip(1) {
                let extra = (t / 2.0) as u64;
                let hit = extra * 2 / 5;
                for (key, add) in [("request", extra), ("hit", hit), ("miss", extra - hit)] {
                    row[key] = json!(row[key].as_u64().unwrap_or(0) + add);
                }
            }
        }
        data
    }

    /// The clients present now (all of them, but one when churning).
    fn visible_clients(&self) -> impl Iterator<Item = &SimClient> {
        let absent = match self.client_churn {
            Some(p) if !self.clients.is_empty() && !p.is_zero() => {
                Some((self.started.elapsed().as_millis() / p.as_millis().max(1)) as usize % self.clients.len())
            }
            _ => None,
        };
        self.clients.iter().enumerate().filter(move |(i, _)| Some(*i) != absent).map(|(_, c)| c)
    }

    fn clients_fragment(&self, v6: bool, ty: &str, param: &Map<String, Value>, t: f64) -> Value {
        let grow = |row: &Value| {
            let mut row = row.clone();
            for (rate, total) in [("upload", "total_up"), ("download", "total_down")] {
                let grown = number(&row[total]) + number(&row[rate]) * t;
                row[total] = json!(grown as u64);
            }
            row
        };
        let listed = self.visible_clients().filter_map(|c| if v6 { c.v6.as_ref() } else { c.v4.as_ref() });
        // Rows are filtered, sorted and paged by reference and only the page is copied and moved in time
        // (a benchmark router has thousands of clients, asked page by page), unless the totals themselves
        // are searched or sorted on.
        let on_totals = ["ORDER_BY", "FINDS"]
            .iter()
            .any(|k| param_str(param, k).is_some_and(|v| v.contains("total_up") || v.contains("total_down")));
        let grown: Vec<Value>;
        let mut rows: Vec<&Value> = if on_totals {
            grown = listed.map(grow).collect();
            grown.iter().collect()
        } else {
            listed.collect()
        };
        filter_rows(&mut rows, param);
        let total = rows.len();
        if ty == "total" {
            return json!({ "total": total });
        }
        sort_rows(&mut rows, param);
        let page = apply_limit(rows, param);
        let rows: Vec<Value> =
            if on_totals { page.into_iter().cloned().collect() } else { page.into_iter().map(grow).collect() };
        json!({ "data": rows })
    }
}

/// A JSON number or numeric string as f64 (0 when neither).
fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn param_str<'a>(param: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    param.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// `FINDS: "hostname,ip_addr"` with `KEYWORDS: "redmi"`: rows where one of those fields contains the keyword.
fn filter_rows(rows: &mut Vec<&Value>, param: &Map<String, Value>) {
    let (Some(finds), Some(keyword)) = (param_str(param, "FINDS"), param_str(param, "KEYWORDS")) else {
        return;
    };
    let keyword = keyword.to_lowercase();
    let fields: Vec<&str> = finds.split(',').map(str::trim).collect();
    rows.retain(|row| {
        fields.iter().any(|f| match &row[*f] {
            Value::String(s) => s.to_lowercase().contains(&keyword),
            Value::Number(n) => n.to_string().contains(&keyword),
            _ => false,
        })
    });
}

/// `ORDER_BY: "<field>"`, `ORDER: "asc" | "desc" | ""`.
fn sort_rows(rows: &mut [&Value], param: &Map<String, Value>) {
    let Some(key) = param_str(param, "ORDER_BY") else {
        return;
    };
    rows.sort_by(|a, b| match (&a[key], &b[key]) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(std::cmp::Ordering::Equal)
        }
        (x, y) => x.to_string().cmp(&y.to_string()),
    });
    if param_str(param, "ORDER").is_some_and(|o| o.eq_ignore_ascii_case("desc")) {
        rows.reverse();
    }
}

/// `limit: "offset,count"`.
fn apply_limit<T>(rows: Vec<T>, param: &Map<String, Value>) -> Vec<T> {
    let Some(limit) = param_str(param, "limit") else {
        return rows;
    };
    let mut parts = limit.split(',').map(|p| p.trim().parse::<usize>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(offset), Some(count)) => rows.into_iter().skip(offset).take(count).collect(),
        (Some(count), None) => rows.into_iter().take(count).collect(),
        _ => rows,
    }
}

/// Whether `limit` (when given) has the form the router takes.
pub fn limit_is_valid(param: &Map<String, Value>) -> bool {
    match param.get("limit") {
        None => true,
        Some(Value::String(s)) => {
            let parts: Vec<&str> = s.split(',').map(str::trim).collect();
            parts.len() <= 2 && parts.iter().all(|p| p.parse::<usize>().is_ok())
        }
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn every_documented_type_answers() {
        let data = RouterData::new(false, SimClient::document_clients(), None);
        for (func, types) in FUNCS {
            for ty in *types {
                let frag = data.fragment(func, ty, &Map::new()).unwrap_or_else(|| panic!("{func}/{ty}"));
                assert!(!frag.is_empty(), "{func}/{ty} is empty");
            }
        }
        assert!(data.fragment("homepage", "nope", &Map::new()).is_none());
        assert!(data.fragment("nope", "data", &Map::new()).is_none());
    }

    #[test]
    fn clients_page_sort_and_filter() {
        let data = RouterData::new(false, SimClient::population(50), None);
        let total = data.fragment("monitor_lanip", "total", &Map::new()).unwrap();
        assert_eq!(total["total"], 49); // one of the document's two is IPv6-only
        let page = data.fragment("monitor_lanip", "data", &param(json!({"limit": "10,5"}))).unwrap();
        assert_eq!(page["data"].as_array().unwrap().len(), 5);
        let sorted = data
            .fragment("monitor_lanip", "data", &param(json!({"ORDER_BY": "ip_addr_int", "ORDER": "desc"})))
            .unwrap();
        let ints: Vec<u64> =
            sorted["data"].as_array().unwrap().iter().map(|r| r["ip_addr_int"].as_u64().unwrap()).collect();
        assert!(ints.windows(2).all(|w| w[0] >= w[1]));
        let found = data
            .fragment("monitor_lanip", "data", &param(json!({"FINDS": "hostname", "KEYWORDS": "client-12"})))
            .unwrap();
        assert_eq!(found["data"].as_array().unwrap().len(), 1);
        assert!(limit_is_valid(&param(json!({"limit": "0,2000"}))));
        assert!(!limit_is_valid(&param(json!({"limit": "all"}))));
    }

    #[test]
    fn document_values_stay_without_animation() {
        let data = RouterData::new(false, SimClient::document_clients(), None);
        let s = data.fragment("homepage", "sysstat", &Map::new()).unwrap();
        assert_eq!(s["sysstat"]["cpu"][0], "9.45%");
        assert_eq!(s["sysstat"]["stream"]["connect_num"], 158);
        assert!(s["sysstat"]["stream"]["total_up"].as_u64().unwrap() >= 72_295_012_401);
    }
}
