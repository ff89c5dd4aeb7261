//! The simulated account's devices: one per capability of the uiid table in the field notes (section 2),
//! plus an offline device, a device shared by another account, two unknown uiids, and any number of plain
//! switches for scale. Parameters follow the document's example and the field notes' shapes.

use serde_json::{Map, Value, json};

/// The simulated user's apikey (the document's example).
pub const USER_APIKEY: &str = "95da0fea-6834-469a-b247-4dd5ee9a51f1";
/// The apikey of the account that shares a device with the user.
pub const OWNER_APIKEY: &str = "3541f7af-1ec5-4502-9bf3-eb4b09e9e12a";

/// Ids of the fixture devices, by what they exercise.
pub mod ids {
    pub const SWITCH: &str = "1000213ac8";
    pub const SWITCH_UIID1: &str = "1000000001";
    pub const TWO_CHANNEL: &str = "1000000002";
    pub const FOUR_CHANNEL: &str = "1000000004";
    pub const POWER_METER: &str = "1000000005";
    pub const METER_190: &str = "1000000190";
    pub const METER_126: &str = "1000000126";
    pub const TH_RELAY: &str = "1000000015";
    pub const TH_181: &str = "1000000181";
    pub const ZIGBEE_TH: &str = "1000001770";
    pub const BULB_22: &str = "1000000022";
    pub const DIMMER_36: &str = "1000000036";
    pub const DIMMER_44: &str = "1000000044";
    pub const STRIP_59: &str = "1000000059";
    pub const WHITE_103: &str = "1000000103";
    pub const RGBW_104: &str = "1000000104";
    pub const FAN_34: &str = "1000000034";
    pub const COVER_11: &str = "1000000011";
    pub const DOOR_102: &str = "1000000102";
    pub const OFFLINE: &str = "10000000ff";
    pub const SHARED: &str = "10000000aa";
    pub const UNKNOWN_SWITCH: &str = "1000009999";
    pub const UNKNOWN_RAW: &str = "1000009998";
}

/// A device of the simulated cloud.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub deviceid: String,
    pub name: String,
    pub uiid: u32,
    pub owner_apikey: String,
    pub online: bool,
    /// When false, commands get 504 (the device does not answer).
    pub responsive: bool,
    pub params: Map<String, Value>,
    pub tags: Map<String, Value>,
    pub brand: String,
    pub model: String,
}

fn device(id: &str, name: &str, uiid: u32, model: &str, params: Value) -> SimDevice {
    let mut params = params.as_object().cloned().unwrap_or_default();
    params.entry("fwVersion").or_insert(json!("3.5.0"));
    params.entry("rssi").or_insert(json!(-55));
    params.entry("staMac").or_insert(json!(format!("D8:F1:5B:{}:{}:{}", &id[4..6], &id[6..8], &id[8..10])));
    params.entry("version").or_insert(json!(8));
    SimDevice {
        deviceid: id.to_owned(),
        name: name.to_owned(),
        uiid,
        owner_apikey: USER_APIKEY.to_owned(),
        online: true,
        responsive: true,
        params,
        tags: Map::new(),
        brand: "SONOFF".to_owned(),
        model: model.to_owned(),
    }
}

fn outlets(states: &[&str]) -> Value {
    Value::Array(states.iter().enumerate().map(|(i, s)| json!({"switch": s, "outlet": i})).collect())
}

/// Every fixture device.
pub fn all() -> Vec<SimDevice> {
    use ids::*;
    let mut list = vec![
        // The document's own example (uiid 6).
        {
            let mut d = device(
                SWITCH,
                "我的设备213ac8",
                6,
                "Sonoff basic R2",
                json!({"pulseWidth": 500, "pulse": "off", "init": 1, "startup": "off", "rssi": -50,
                       "fwVersion": "3.0.1", "switch": "off", "sledOnline": "on", "version": 8,
                       "timers": []}),
            );
            d.brand = "Maker".into();
            d
        },
        device(SWITCH_UIID1, "Hall switch", 1, "BASIC", json!({"switch": "on", "startup": "stay"})),
        // 2 channels, but it reports 4 outlets (field notes).
        {
            let mut d = device(
                TWO_CHANNEL,
                "Living room 2CH",
                2,
                "DUALR2",
                json!({"switches": outlets(&["on", "off", "off", "off"]), "configure": []}),
            );
            d.tags.insert("ck_channel_name".into(), json!({"0": "Lamp", "1": "Heater"}));
            d
        },
        device(FOUR_CHANNEL, "Garden 4CH", 4, "4CHPROR3", json!({"switches": outlets(&["off", "off", "on", "off"])})),
        device(
            POWER_METER,
            "Washer plug",
            5,
            "POW",
            json!({"switch": "on", "power": "120.55", "voltage": "229.80", "current": "0.52"}),
        ),
        device(
            METER_190,
            "Dryer plug",
            190,
            "POWR3",
            json!({"switches": outlets(&["on"]), "power": 21540, "voltage": 23012, "current": 95}),
        ),
        device(
            METER_126,
            "Kitchen DUALR3",
            126,
            "DUALR3",
            json!({"switches": outlets(&["on", "off"]), "actPow_00": 5230, "voltage_00": 22950,
                   "current_00": 23, "actPow_01": 0, "voltage_01": 22950, "current_01": 0}),
        ),
        device(
            TH_RELAY,
            "Greenhouse TH16",
            15,
            "TH16",
            json!({"switch": "off", "mainSwitch": "off", "deviceType": "normal",
                   "currentTemperature": "21.5", "currentHumidity": "48"}),
        ),
        device(TH_181, "Bedroom THR320", 181, "THR320D", json!({"switch": "off", "temperature": 19.8, "humidity": 52})),
        {
            let mut d = device(
                ZIGBEE_TH,
                "Cellar sensor",
                1770,
                "SNZB-02",
                json!({"temperature": "1234", "humidity": "6550", "battery": 87}),
            );
            d.params.remove("staMac");
            d
        },
        device(
            BULB_22,
            "Desk bulb B1",
            22,
            "B1",
            json!({"state": "on", "zyx_mode": 1, "channel0": "128", "channel1": "128",
                   "channel2": "0", "channel3": "0", "channel4": "0"}),
        ),
        device(DIMMER_36, "Hall dimmer", 36, "KING-M4", json!({"switch": "on", "bright": 60})),
        device(DIMMER_44, "Stairs dimmer", 44, "D1", json!({"switch": "off", "brightness": 40, "mode": 0})),
        device(
            STRIP_59,
            "TV strip",
            59,
            "L1",
            json!({"switch": "on", "bright": 80, "colorR": 255, "colorG": 64, "colorB": 0, "mode": 1}),
        ),
        device(
            WHITE_103,
            "Kitchen B02",
            103,
            "B02-BL",
            json!({"switch": "on", "ltype": "white", "white": {"br": 70, "ct": 128}}),
        ),
        device(
            RGBW_104,
            "Bedroom B05",
            104,
            "B05-BL",
            json!({"switch": "off", "ltype": "color", "white": {"br": 50, "ct": 255},
                   "color": {"br": 60, "r": 0, "g": 128, "b": 255}}),
        ),
        device(FAN_34, "Ceiling fan", 34, "iFan03", json!({"switches": outlets(&["on", "on", "on", "off"])})),
        device(COVER_11, "Garage door", 11, "Dual-curtain", json!({"switch": "pause", "setclose": 40})),
        {
            let mut d = device(DOOR_102, "Front door", 102, "DW2", json!({"switch": "off", "battery": 95}));
            d.params.remove("staMac");
            d
        },
        {
            let mut d = device(OFFLINE, "Attic switch", 1, "BASIC", json!({"switch": "off"}));
            d.online = false;
            d
        },
        {
            let mut d = device(SHARED, "Neighbour's plug", 1, "S26", json!({"switch": "off"}));
            d.owner_apikey = OWNER_APIKEY.into();
            d
        },
        device(UNKNOWN_SWITCH, "Mystery switch", 9999, "X1", json!({"switch": "on", "mystery": 7})),
        device(UNKNOWN_RAW, "Mystery box", 9998, "X2", json!({"level": 3, "mode": "eco"})),
    ];
    for d in &mut list {
        if d.uiid != 22 && d.uiid != 1770 && d.uiid != 102 && d.owner_apikey == USER_APIKEY {
            d.params.entry("timers").or_insert(json!([]));
        }
    }
    list
}

/// The v1 device object (the document's example shape).
pub fn device_json(d: &SimDevice) -> Value {
    json!({
        "_id": format!("5c98{}", d.deviceid), "name": d.name, "type": "10", "deviceid": d.deviceid,
        "apikey": d.owner_apikey,
        "extra": {"_id": format!("5c99{}", d.deviceid), "extra": {
            "model": d.model, "ui": d.model, "description": "sim", "manufacturer": d.brand,
            "mac": "d8:f1:5b:00:00:00", "apmac": "d8:f1:5b:00:00:01", "modelInfo": "sim", "brandId": "sim",
            "uiid": d.uiid, "staMac": "d8:f1:5b:00:00:00", "chipid": "00000000"}},
        "__v": 0, "onlineTime": "2019-10-15T07:22:14.361Z", "ip": "127.0.0.1", "location": "sim",
        "settings": {"opsNotify": 0, "opsHistory": 1, "alarmNotify": 1},
        "devGroups": [], "groups": [], "params": d.params, "online": d.online,
        "createdAt": "2019-10-15T07:22:11.700Z", "group": "",
        "sharedTo": [], "devicekey": format!("devkey-{}", d.deviceid), "deviceUrl": "",
        "brandName": d.brand, "showBrand": true, "brandLogoUrl": "", "productModel": d.model,
        "devConfig": {}, "uiid": d.uiid, "tags": d.tags,
    })
}

/// `n` plain single switches for scale tests (ids `a0000000000` upwards).
pub fn scale(n: usize) -> Vec<SimDevice> {
    (0..n)
        .map(|i| {
            let id = format!("a{i:09x}");
            device(
                &id,
                &format!("Scale switch {i}"),
                1,
                "BASIC",
                json!({"switch": if i % 2 == 0 { "on" } else { "off" }}),
            )
        })
        .collect()
}
