//! Serde types of every response in the router API document (`ikuai-api.md`), read leniently.
//!
//! Every leaf is a [`Field`]: a value that could be read, nothing (missing, `null`, or a placeholder such
//! as `"--"` or `""` in a numeric field), or an odd value kept raw. Numbers come as numbers, as strings
//! (`"158"`), or with a percent sign (`"9.45%"`); `comment` and `client_model` are percent-encoded text and
//! are decoded. A struct only fails to parse when it is not a JSON object at all, and then only the
//! [`Field`] holding it is odd, so one odd value never fails a whole poll. Readers note odd values in
//! [`Oddities`] under a field name so that the poller logs each one once.
//!
//! Knows nothing of HTTP or of Home Assistant.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// A value of a response, read leniently.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<T> {
    /// Missing, `null`, or a placeholder (`"--"`, `""`) where a value was expected.
    #[default]
    Absent,
    Value(T),
    /// Present but not readable as `T`: kept raw for the log and for attribute lists.
    Odd(Value),
}

impl<T> Field<T> {
    /// The value, if it could be read.
    pub fn get(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_odd(&self) -> bool {
        matches!(self, Field::Odd(_))
    }
}

fn is_placeholder(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => matches!(s.trim(), "" | "-" | "--" | "N/A" | "n/a"),
        _ => false,
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        if raw.is_null() {
            return Ok(Field::Absent);
        }
        match T::deserialize(&raw) {
            Ok(v) => Ok(Field::Value(v)),
            Err(_) if is_placeholder(&raw) => Ok(Field::Absent),
            Err(_) => {
                #[cfg(test)]
                tests::ODD_SEEN.with(|n| n.set(n.get() + 1));
                Ok(Field::Odd(raw))
            }
        }
    }
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Absent => serializer.serialize_none(),
            Field::Value(v) => v.serialize(serializer),
            Field::Odd(raw) => raw.serialize(serializer),
        }
    }
}

/// A number as the router sends it: `158`, `9.45`, `"158"`, `"9.45%"`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Number(pub f64);

impl Number {
    /// The number as JSON: an integer when it is one, so that counters never print as `1.2e11`.
    pub fn to_json(self) -> Value {
        json_number(self.0)
    }
}

/// `x` as a JSON number, an integer when it has no fraction.
pub fn json_number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        if x >= 0.0 { Value::from(x as u64) } else { Value::from(x as i64) }
    } else {
        serde_json::Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, or a string holding one (optionally with %)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                let t = v.trim();
                let t = t.strip_suffix('%').unwrap_or(t).trim();
                match t.parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok(Number(x)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// Text; a number or boolean where text was expected is taken as its JSON spelling.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Text(s)),
            v @ (Value::Number(_) | Value::Bool(_)) => Ok(Text(v.to_string())),
            other => Err(de::Error::invalid_type(de::Unexpected::Other(&other.to_string()), &"text")),
        }
    }
}

/// Percent-encoded text (`"红米Note%2011T%20Pro"`), decoded (`"红米Note 11T Pro"`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Decoded(pub String);

impl<'de> Deserialize<'de> for Decoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Text(raw) = Text::deserialize(deserializer)?;
        Ok(Decoded(percent_encoding::percent_decode_str(&raw).decode_utf8_lossy().into_owned()))
    }
}

pub type Num = Field<Number>;
pub type Str = Field<Text>;
pub type Dec = Field<Decoded>;

/// Odd values met while reading a response, by field name; the poller logs each name once.
#[derive(Debug, Default)]
pub struct Oddities(Vec<(String, Value)>);

impl Oddities {
    pub fn note(&mut self, name: &str, raw: &Value) {
        let mut shown = raw.to_string();
        if shown.len() > 120 {
            let cut = (0..=120).rev().find(|i| shown.is_char_boundary(*i)).unwrap_or(0);
            shown.truncate(cut);
            shown.push('…');
        }
        self.0.push((name.to_owned(), Value::String(shown)));
    }

    /// The value of `field`; an odd one is noted under `name` and skipped.
    pub fn get<'a, T>(&mut self, name: &str, field: &'a Field<T>) -> Option<&'a T> {
        match field {
            Field::Value(v) => Some(v),
            Field::Absent => None,
            Field::Odd(raw) => {
                self.note(name, raw);
                None
            }
        }
    }

    pub fn num(&mut self, name: &str, field: &Num) -> Option<f64> {
        self.get(name, field).map(|n| n.0)
    }

    pub fn text<'a>(&mut self, name: &str, field: &'a Str) -> Option<&'a str> {
        self.get(name, field).map(|t| t.0.as_str())
    }

    pub fn decoded<'a>(&mut self, name: &str, field: &'a Dec) -> Option<&'a str> {
        self.get(name, field).map(|t| t.0.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes over what `other` noted.
    pub fn append(&mut self, mut other: Oddities) {
        self.0.append(&mut other.0);
    }

    /// The noted `(field name, raw value)` pairs, emptying the list.
    pub fn drain(&mut self) -> impl Iterator<Item = (String, Value)> + '_ {
        self.0.drain(..)
    }
}

/// Reads `Data` (or 4.x `results`) of a call as `T`. Fails only when `data` does not have `T`'s shape at
/// the top (every field of the types below is lenient).
pub fn parse<T: DeserializeOwned>(data: &Map<String, Value>) -> Result<T, serde_json::Error> {
    T::deserialize(&Value::Object(data.clone()))
}

/// Like [`parse`], consuming the data (no copy of a large answer such as a page of clients).
pub fn parse_owned<T: DeserializeOwned>(data: Map<String, Value>) -> Result<T, serde_json::Error> {
    T::deserialize(Value::Object(data))
}

// ---- homepage ---------------------------------------------------------------------------------------

/// `homepage` with any of its TYPEs, merged.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Homepage {
    pub ether_info: Field<BTreeMap<String, EtherPort>>,
    pub snapshoot_lan: Field<Vec<SnapshootLan>>,
    pub snapshoot_wan: Field<Vec<SnapshootWan>>,
    pub app_historical: Field<AppHistorical>,
    pub app_flow: Field<AppFlow>,
    pub ac_status: Field<AcStatus>,
    pub dhcp_addrpool_num: Field<DhcpAddrpoolNum>,
    pub sysstat: Field<Sysstat>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EtherPort {
    pub driver: Str,
    #[serde(rename = "type")]
    pub kind: Str,
    pub mac: Str,
    pub link: Num,
    pub speed: Num,
    pub duplex: Num,
    pub model: Str,
    pub interface: Str,
    pub lock: Num,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SnapshootLan {
    pub id: Num,
    pub comment: Dec,
    pub interface: Str,
    pub bandmode: Num,
    pub linkmode: Num,
    pub mac: Str,
    pub member: Field<Vec<Str>>,
    pub ip_addr: Str,
    pub netmask: Str,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SnapshootWan {
    pub id: Num,
    pub comment: Dec,
    pub interface: Str,
    pub mac: Str,
    pub member: Field<Vec<Str>>,
    pub bandmode: Num,
    /// `1` on the primary line.
    pub default_route: Num,
    /// An int here, a string (`"PPPOE"`) in `iface_check`.
    pub internet: Str,
    pub ip_addr: Str,
    pub netmask: Str,
    pub gateway: Str,
    pub dns1: Str,
    pub dns2: Str,
    pub count_static: Num,
    pub count_dhcp: Num,
    pub count_pppoe: Num,
    pub count_check_fail: Num,
    /// Epoch seconds of the last line check.
    pub updatetime: Num,
    pub check_res: Num,
    pub errmsg: Str,
    pub power: Str,
    pub isp: Str,
    pub imei: Str,
    pub qnw: Str,
    pub ccid: Str,
    pub isnr: Str,
    pub pcid: Str,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AppHistorical {
    /// Samples, oldest first; each lists every application class once (and `Total`).
    pub app_historical: Field<Vec<Vec<AppSample>>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AppSample {
    pub name: Str,
    /// Bytes per second.
    pub upload: Num,
    pub download: Num,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AppFlow {
    /// Bytes per application class over the window asked for (`minute`), and `Total`.
    pub app_flow: Field<Vec<BTreeMap<String, Num>>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AcStatus {
    pub ap_count: Num,
    pub ap_online: Num,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DhcpAddrpoolNum {
    pub available_num: Num,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Sysstat {
    /// `"9.45%"` strings: the overall load, then one per core.
    pub cpu: Field<Vec<Num>>,
    /// °C; empty when the router has no sensor.
    pub cputemp: Field<Vec<Num>>,
    pub freq: Field<Vec<Num>>,
    pub gwid: Str,
    pub hostname: Str,
    pub link_status: Num,
    pub memory: Field<Memory>,
    pub online_user: Field<OnlineUser>,
    pub stream: Field<Stream>,
    /// Seconds.
    pub uptime: Num,
    pub verinfo: Field<VerInfo>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Memory {
    /// kB.
    pub total: Num,
    pub available: Num,
    pub free: Num,
    pub cached: Num,
    pub buffers: Num,
    /// `"47%"`.
    pub used: Num,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct OnlineUser {
    pub count: Num,
    pub count_2g: Num,
    pub count_5g: Num,
    pub count_wired: Num,
    pub count_wireless: Num,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Stream {
    pub connect_num: Num,
    /// Bytes per second.
    pub upload: Num,
    pub download: Num,
    /// Bytes since boot.
    pub total_up: Num,
    pub total_down: Num,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct VerInfo {
    pub modelname: Str,
    pub verstring: Str,
    pub version: Str,
    pub build_date: Num,
    pub arch: Str,
    pub sysbit: Str,
    pub verflags: Str,
    pub is_enterprise: Num,
    pub support_i18n: Num,
    pub support_dingtalk: Num,
    pub support_lcd: Num,
    pub bootguide: Str,
}

// ---- monitor_iface ----------------------------------------------------------------------------------

/// `monitor_iface` with `iface_check` and/or `iface_stream`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct MonitorIface {
    pub iface_check: Field<Vec<IfaceCheck>>,
    pub iface_stream: Field<Vec<IfaceStream>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct IfaceCheck {
    pub id: Num,
    pub interface: Str,
    pub parent_interface: Str,
    pub ip_addr: Str,
    pub gateway: Str,
    pub internet: Str,
    /// Epoch seconds, as a string.
    pub updatetime: Num,
    pub auto_switch: Str,
    /// `"success"` when the line works.
    pub result: Str,
    pub errmsg: Str,
    pub comment: Dec,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct IfaceStream {
    pub interface: Str,
    pub comment: Dec,
    pub ip_addr: Str,
    /// A string; `"--"` on LAN interfaces.
    pub connect_num: Num,
    /// Bytes per second.
    pub upload: Num,
    pub download: Num,
    /// Bytes.
    pub total_up: Num,
    pub total_down: Num,
    pub updropped: Num,
    pub downdropped: Num,
    pub uppacked: Num,
    pub downpacked: Num,
}

// ---- monitor_lanip / monitor_lanipv6 ----------------------------------------------------------------

/// `data` (and `total`) of `monitor_lanip` and `monitor_lanipv6`, and of the other list functions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, bound(deserialize = "T: DeserializeOwned", serialize = "T: Serialize"))]
pub struct DataList<T> {
    pub data: Field<Vec<T>>,
    pub total: Num,
}

impl<T> Default for DataList<T> {
    fn default() -> Self {
        DataList { data: Field::Absent, total: Field::Absent }
    }
}

impl<T> DataList<T> {
    /// The rows, none when the list is missing or odd.
    pub fn rows(&self) -> &[T] {
        self.data.get().map(Vec::as_slice).unwrap_or_default()
    }
}

/// A LAN client as `monitor_lanip` and `monitor_lanipv6` list it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct LanClient {
    pub mac: Str,
    pub auth_type: Num,
    pub client_type: Str,
    pub client_device: Str,
    pub apname: Str,
    pub ac_gid: Num,
    pub link_addr: Str,
    pub bssid: Str,
    /// Wi-Fi link rate such as `"286M"`, not throughput.
    pub uprate: Str,
    pub downrate: Str,
    pub reject: Num,
    pub id: Num,
    pub hostname: Str,
    /// Bytes.
    pub total_up: Num,
    pub total_down: Num,
    /// Epoch seconds of when the client came online.
    pub timestamp: Num,
    /// Bytes per second.
    pub download: Num,
    pub upload: Num,
    pub client_model: Dec,
    pub client_typeid: Num,
    /// dBm: `"-48"`, `0` or `""`.
    pub signal: Num,
    pub frequencies: Str,
    pub username: Str,
    pub ppptype: Str,
    pub comment: Dec,
    pub ssid: Str,
    pub apmac: Str,
    pub dtalk_name: Str,
    /// Local time of when the client came online, `"2025-01-18 20:01:35"`.
    pub uptime: Str,
    pub webid: Num,
    pub connect_num: Num,
    pub ip_addr: Str,
    pub ip_addr_int: Num,
}

// ---- monitor_l7qos ----------------------------------------------------------------------------------

/// `monitor_l7qos` `data`: one object per entry, mapping a WAN line to its policies.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct MonitorL7qos {
    pub data: Field<Vec<BTreeMap<String, Field<Vec<QosPolicy>>>>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct QosPolicy {
    pub name: Dec,
    pub prio: Num,
    pub ipgroup: Dec,
    /// Bytes per second (strings, except in the `ALL` row).
    pub upload: Num,
    pub download: Num,
    /// Bytes.
    pub total_up: Num,
    pub total_down: Num,
}

// ---- dns --------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DnsConfig {
    pub id: Num,
    pub enabled: Str,
    pub dns1: Str,
    pub dns2: Str,
    pub query: Str,
    pub cachemode: Num,
    pub forbid_dns_4a: Num,
    pub proxy_force: Num,
    pub proxy_force_dns: Str,
    pub network: Num,
    pub defense: Num,
    pub query_args_ip: Str,
    pub query_head_ip: Str,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DnsProxy {
    pub id: Num,
    pub enabled: Str,
    pub domain: Str,
    pub parse_type: Str,
    pub dns_addr: Str,
    pub src_addr: Str,
    pub is_ipv6: Num,
    pub comment: Dec,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DnsCacheDay {
    pub id: Num,
    /// `"2025-01-18"` for a day, `0` for the running total.
    pub date: Str,
    pub request: Num,
    pub hit: Num,
    pub miss: Num,
    pub save_time: Num,
}

// ---- groups, routes, VLANs --------------------------------------------------------------------------

/// A row of `ipgroup`, `ipgroupv6` and `macgroupv6`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Group {
    pub id: Num,
    pub group_name: Dec,
    #[serde(rename = "type")]
    pub kind: Num,
    pub addr_pool: Str,
    pub comment: Dec,
}

/// A row of `static_rt`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct StaticRoute {
    pub id: Num,
    pub enabled: Str,
    pub interface: Str,
    pub dst_addr: Str,
    pub netmask: Str,
    pub gateway: Str,
    pub prio: Num,
    pub ip_type: Str,
    pub dst_addr_int: Num,
    pub gateway_int: Num,
    pub comment: Dec,
}

/// A row of `static_rt_table` `data` (IPv4, with `netmask`) and `data6` (IPv6, prefix in `dst_addr`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RouteEntry {
    pub id: Num,
    pub interface: Str,
    pub dst_addr: Str,
    pub netmask: Str,
    pub gateway: Str,
    pub prio: Num,
    pub dst_addr_int: Num,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Vlan {
    pub id: Num,
    pub enabled: Str,
    pub vlan_id: Str,
    pub vlan_name: Str,
    pub interface: Str,
    pub mac: Str,
    pub ip_addr: Str,
    pub netmask: Str,
    pub ip_mask: Str,
    pub ip_addr_int: Num,
    pub comment: Dec,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::ikuai::examples::{EXAMPLES, example, example_data};
    use serde_json::json;

    thread_local! {
        /// Odd values created on this thread (tests run one per thread).
        pub(super) static ODD_SEEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn data(name: &str) -> Map<String, Value> {
        example_data(name).as_object().cloned().unwrap()
    }

    #[test]
    fn lenient_numbers() {
        let f: Vec<Num> =
            serde_json::from_value(json!(["9.45%", "47%", "--", "", 158, "158", 1.5, null, "286M", [1]])).unwrap();
        let got: Vec<Option<f64>> = f.iter().map(|x| x.get().map(|n| n.0)).collect();
        assert_eq!(
            got,
            vec![Some(9.45), Some(47.0), None, None, Some(158.0), Some(158.0), Some(1.5), None, None, None]
        );
        assert!(f[8].is_odd() && f[9].is_odd() && !f[2].is_odd() && !f[3].is_odd());
        assert_eq!(Number(114_653_745_795.0).to_json(), json!(114_653_745_795u64));
        assert_eq!(Number(-48.0).to_json(), json!(-48));
        assert_eq!(Number(9.45).to_json(), json!(9.45));
    }

    #[test]
    fn odd_values_are_noted_once_per_read_and_skipped() {
        let mem: Memory = serde_json::from_value(json!({"used": "lots", "total": 497020})).unwrap();
        let mut odd = Oddities::default();
        assert_eq!(odd.num("sysstat.memory.used", &mem.used), None);
        assert_eq!(odd.num("sysstat.memory.total", &mem.total), Some(497020.0));
        let noted: Vec<(String, Value)> = odd.drain().collect();
        assert_eq!(noted, vec![("sysstat.memory.used".to_owned(), json!("\"lots\""))]);
        // A whole section of the wrong shape only makes that field odd.
        let home: Homepage =
            parse(&json!({"sysstat": "broken", "ac_status": {"ap_count": 2}}).as_object().cloned().unwrap()).unwrap();
        assert!(home.sysstat.is_odd());
        assert_eq!(home.ac_status.get().unwrap().ap_count.get().unwrap().0, 2.0);
    }

    #[test]
    fn sysstat_example() {
        let home: Homepage = parse(&data("sysstat")).unwrap();
        let s = home.sysstat.get().unwrap();
        let cpu: Vec<f64> = s.cpu.get().unwrap().iter().map(|c| c.get().unwrap().0).collect();
        assert_eq!(cpu, vec![9.45, 9.0, 9.0]);
        assert!(s.cputemp.get().unwrap().is_empty());
        assert!(s.freq.get().unwrap().iter().all(|f| matches!(f, Field::Absent)));
        assert_eq!(s.memory.get().unwrap().used.get().unwrap().0, 47.0);
        let users = s.online_user.get().unwrap();
        assert_eq!(users.count.get().unwrap().0, 7.0);
        assert_eq!(users.count_2g.get().unwrap().0, 4.0);
        assert_eq!(users.count_5g.get().unwrap().0, 3.0);
        assert_eq!(users.count_wireless.get().unwrap().0, 7.0);
        let stream = s.stream.get().unwrap();
        assert_eq!(stream.connect_num.get().unwrap().0, 158.0);
        assert_eq!(stream.total_down.get().unwrap().to_json(), json!(114_653_745_795u64));
        assert_eq!(s.uptime.get().unwrap().0, 828_418.0);
        let v = s.verinfo.get().unwrap();
        assert_eq!(v.modelname.get().unwrap().0, "IK-Q3000");
        assert_eq!(v.verstring.get().unwrap().0, "3.7.17 x64 Build202412271043");
        assert_eq!(s.gwid.get().unwrap().0, "2341245213");
    }

    #[test]
    fn other_homepage_examples() {
        let home: Homepage = parse(&data("ether_info")).unwrap();
        let port = &home.ether_info.get().unwrap()["veth1"];
        assert_eq!(port.kind.get().unwrap().0, "TP");
        assert_eq!(port.interface.get().unwrap().0, "lan1");

        let home: Homepage = parse(&data("snapshoot")).unwrap();
        let lan = &home.snapshoot_lan.get().unwrap()[0];
        assert_eq!(lan.ip_addr.get().unwrap().0, "192.168.9.1");
        assert_eq!(lan.member.get().unwrap().len(), 2);
        let wan = &home.snapshoot_wan.get().unwrap()[0];
        assert_eq!(wan.default_route.get().unwrap().0, 1.0);
        assert_eq!(wan.internet.get().unwrap().0, "2");
        assert_eq!(wan.gateway.get().unwrap().0, "10.4.64.1");
        assert_eq!(wan.updatetime.get().unwrap().0, 1_736_296_104.0);
        assert_eq!(wan.errmsg.get().unwrap().0, "线路检测成功");

        let home: Homepage = parse(&data("app_historical")).unwrap();
        let samples = home.app_historical.get().unwrap().app_historical.get().unwrap();
        let total = samples[0].iter().find(|s| s.name.get().unwrap().0 == "Total").unwrap();
        assert_eq!((total.upload.get().unwrap().0, total.download.get().unwrap().0), (56156.0, 413075.0));

        let home: Homepage = parse(&data("app_flow")).unwrap();
        let flow = &home.app_flow.get().unwrap().app_flow.get().unwrap()[0];
        assert_eq!(flow["Total"].get().unwrap().0, 1_789_539_210.0);
        assert_eq!(flow.len(), 11);

        let home: Homepage = parse(&data("ac_status")).unwrap();
        assert_eq!(home.ac_status.get().unwrap().ap_online.get().unwrap().0, 0.0);
        let home: Homepage = parse(&data("dhcp_addrpool_num")).unwrap();
        assert_eq!(home.dhcp_addrpool_num.get().unwrap().available_num.get().unwrap().0, 290.0);
    }

    #[test]
    fn monitor_iface_examples() {
        let m: MonitorIface = parse(&data("iface_check")).unwrap();
        let check = &m.iface_check.get().unwrap()[0];
        assert_eq!(check.result.get().unwrap().0, "success");
        assert_eq!(check.internet.get().unwrap().0, "PPPOE");
        assert_eq!(check.updatetime.get().unwrap().0, 1_736_296_104.0);
        let m: MonitorIface = parse(&data("iface_stream")).unwrap();
        let s = &m.iface_stream.get().unwrap()[0];
        assert_eq!(s.connect_num, Field::Absent); // "--"
        assert_eq!(s.upload.get().unwrap().0, 53484.0);
        assert_eq!(s.total_down.get().unwrap().0, 86_272_983_579.0);
    }

    #[test]
    fn client_examples_decode_text() {
        let c: LanClient = serde_json::from_value(example("monitor_lanip_client")).unwrap();
        assert_eq!(c.comment.get().unwrap().0, "红米Note 11T Pro");
        assert_eq!(c.client_model.get().unwrap().0, "红米Note 11T Pro");
        assert_eq!(c.signal.get().unwrap().0, -48.0);
        assert_eq!(c.uprate.get().unwrap().0, "286M");
        assert_eq!(c.timestamp.get().unwrap().0, 1_737_201_695.0);
        let list: DataList<LanClient> = parse(&data("monitor_lanipv6")).unwrap();
        assert_eq!(list.total.get().unwrap().0, 5.0);
        let c = &list.rows()[0];
        assert_eq!(c.mac.get().unwrap().0, "60:7e:a4:77:9f:f9");
        assert_eq!(c.comment.get().unwrap().0, "院内监控");
        assert_eq!(c.signal, Field::Absent); // ""
        assert_eq!(c.link_addr.get().unwrap().0, "fe80::627e:a4ff:fe77:9ff9");
    }

    #[test]
    fn qos_example_mixes_strings_and_numbers() {
        let q: MonitorL7qos = parse(&data("monitor_l7qos")).unwrap();
        let lines = q.data.get().unwrap();
        let policies = lines[0]["wan1"].get().unwrap();
        assert_eq!(policies.len(), 13);
        assert_eq!(policies[0].name.get().unwrap().0, "小包数据");
        assert_eq!(policies[0].total_up.get().unwrap().0, 41_748_652.0);
        let all = policies.iter().find(|p| p.name.get().unwrap().0 == "ALL").unwrap();
        assert_eq!((all.upload.get().unwrap().0, all.download.get().unwrap().0), (511_200.0, 757_288.0));
    }

    #[test]
    fn dns_examples() {
        let c: DataList<DnsConfig> = parse(&data("dns_config")).unwrap();
        assert_eq!(c.rows()[0].dns1.get().unwrap().0, "114.114.114.114");
        let p: DataList<DnsProxy> = parse(&data("dns_proxy")).unwrap();
        assert_eq!(p.rows()[0].comment.get().unwrap().0, "测试反代");
        assert_eq!(p.rows()[0].domain.get().unwrap().0, "ikuai.cn");
        let t: DataList<DnsProxy> = parse(&data("dns_proxy_total")).unwrap();
        assert_eq!(t.total.get().unwrap().0, 1.0);
        let cache: DataList<DnsCacheDay> = parse(&data("dns_cache")).unwrap();
        let rows = cache.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].date.get().unwrap().0, "2025-01-18");
        assert_eq!(rows[2].date.get().unwrap().0, "0");
        assert_eq!(rows[1].hit.get().unwrap().0, 35919.0);
    }

    #[test]
    fn group_route_and_vlan_examples() {
        for name in ["ipgroup", "ipgroupv6", "macgroupv6"] {
            let g: DataList<Group> = parse(&data(name)).unwrap();
            assert_eq!(g.rows()[0].group_name.get().unwrap().0, "内网全部", "{name}");
        }
        let r: DataList<StaticRoute> = parse(&data("static_rt")).unwrap();
        assert_eq!(r.total.get().unwrap().0, 1.0);
        assert_eq!(r.rows()[0].comment.get().unwrap().0, "测试静态路由");
        assert_eq!(r.rows()[0].gateway.get().unwrap().0, "1.1.1.1");
        let t: DataList<RouteEntry> = parse(&data("static_rt_table_data")).unwrap();
        assert_eq!((t.total.get().unwrap().0, t.rows().len()), (6.0, 6));
        let t6: DataList<RouteEntry> = parse(&data("static_rt_table_data6")).unwrap();
        assert_eq!((t6.total.get().unwrap().0, t6.rows().len()), (9.0, 9));
        assert_eq!(t6.rows()[0].netmask, Field::Absent);
        let v: DataList<Vlan> = parse(&data("vlan")).unwrap();
        assert_eq!(v.rows()[0].vlan_id.get().unwrap().0, "10");
        assert_eq!(v.rows()[0].ip_addr_int.get().unwrap().0, 4_294_967_295.0);
    }

    #[test]
    fn every_example_parses_without_odd_values() {
        // Every example of the document, read with the type its call is read with: nothing is odd.
        ODD_SEEN.with(|n| n.set(0));
        for (name, _) in EXAMPLES {
            let d = data(name);
            let read = match *name {
                "login" => example(name)["Result"] == 10000,
                "ether_info" | "snapshoot" | "app_historical" | "app_flow" | "ac_status" | "dhcp_addrpool_num"
                | "sysstat" => parse::<Homepage>(&d).is_ok(),
                "iface_check" | "iface_stream" => parse::<MonitorIface>(&d).is_ok(),
                "monitor_lanip_client" => serde_json::from_value::<LanClient>(example(name)).is_ok(),
                "monitor_lanipv6" => parse::<DataList<LanClient>>(&d).unwrap().rows().len() == 1,
                "monitor_l7qos" => parse::<MonitorL7qos>(&d).is_ok(),
                "dns_config" => parse::<DataList<DnsConfig>>(&d).unwrap().rows().len() == 1,
                "dns_proxy" | "dns_proxy_total" => parse::<DataList<DnsProxy>>(&d).is_ok(),
                "dns_cache" => parse::<DataList<DnsCacheDay>>(&d).unwrap().rows().len() == 3,
                "ipgroup" | "ipgroupv6" | "macgroupv6" => parse::<DataList<Group>>(&d).unwrap().rows().len() == 1,
                "static_rt" => parse::<DataList<StaticRoute>>(&d).unwrap().rows().len() == 1,
                "static_rt_table_data" | "static_rt_table_data6" => {
                    !parse::<DataList<RouteEntry>>(&d).unwrap().rows().is_empty()
                }
                "vlan" => parse::<DataList<Vlan>>(&d).unwrap().rows().len() == 1,
                other => panic!("example {other} is not read by any test"),
            };
            assert!(read, "{name}");
            assert_eq!(ODD_SEEN.with(|n| n.get()), 0, "{name} has an odd value");
        }
        // And the counter does count.
        let _: Num = serde_json::from_value(json!("abc")).unwrap();
        assert_eq!(ODD_SEEN.with(|n| n.get()), 1);
    }
}
