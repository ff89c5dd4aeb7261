//! The example responses of the router API document (`ikuai-api.md`), verbatim but for the document's
//! comments, its "omitted" markers and the markdown escapes in keys (`link\_status` is `link_status`).
//! The simulator serves them and the model's tests parse them.

use serde_json::Value;

/// `(name, JSON text)` of every example in the document, in the document's order. The names are the
/// `TYPE` values; `static_rt_table_data`/`_data6` are the two TYPEs of `static_rt_table`,
/// `monitor_lanip_client` is the single client object the document shows for `monitor_lanip`, and
/// `monitor_lanipv6` is the bare `Data` object the document shows for that call.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("login", include_str!("examples/login.json")),
    ("ether_info", include_str!("examples/ether_info.json")),
    ("snapshoot", include_str!("examples/snapshoot.json")),
    ("app_historical", include_str!("examples/app_historical.json")),
    ("app_flow", include_str!("examples/app_flow.json")),
    ("ac_status", include_str!("examples/ac_status.json")),
    ("dhcp_addrpool_num", include_str!("examples/dhcp_addrpool_num.json")),
    ("sysstat", include_str!("examples/sysstat.json")),
    ("iface_check", include_str!("examples/iface_check.json")),
    ("iface_stream", include_str!("examples/iface_stream.json")),
    ("monitor_lanip_client", include_str!("examples/monitor_lanip_client.json")),
    ("monitor_lanipv6", include_str!("examples/monitor_lanipv6.json")),
    ("monitor_l7qos", include_str!("examples/monitor_l7qos.json")),
    ("dns_config", include_str!("examples/dns_config.json")),
    ("dns_proxy", include_str!("examples/dns_proxy.json")),
    ("dns_proxy_total", include_str!("examples/dns_proxy_total.json")),
    ("dns_cache", include_str!("examples/dns_cache.json")),
    ("ipgroup", include_str!("examples/ipgroup.json")),
    ("ipgroupv6", include_str!("examples/ipgroupv6.json")),
    ("macgroupv6", include_str!("examples/macgroupv6.json")),
    ("static_rt", include_str!("examples/static_rt.json")),
    ("static_rt_table_data", include_str!("examples/static_rt_table_data.json")),
    ("static_rt_table_data6", include_str!("examples/static_rt_table_data6.json")),
    ("vlan", include_str!("examples/vlan.json")),
];

/// The example called `name`, parsed.
pub fn example(name: &str) -> Value {
    let text = EXAMPLES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).unwrap_or("null");
    // The examples are constants of this crate, checked by the test below.
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The `Data` object of the example called `name` (the example itself when it has no envelope).
pub fn example_data(name: &str) -> Value {
    let mut v = example(name);
    match v.get_mut("Data") {
        Some(data) => data.take(),
        None => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_json() {
        for (name, text) in EXAMPLES {
            let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(v.is_object(), "{name}");
        }
        assert_eq!(example_data("sysstat")["sysstat"]["online_user"]["count"], 7);
    }
}
