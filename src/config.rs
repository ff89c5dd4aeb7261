//! Typed configuration: the TOML file, then environment overrides, then secrets read from files, then
//! validation. Every error names the file and the key (`config.toml: mqtt.url: expected mqtt:// or
//! mqtts://`); an unknown key is an error, because a typo silently ignored is the most common support request.
//!
//! Environment overrides (all optional):
//! - `HUB2MQTT_MQTT__<KEY>` and `HUB2MQTT_BRIDGE__<KEY>` override `[mqtt]` and `[bridge]` keys;
//! - `HUB2MQTT_IKUAI__<ID>__<KEY>` and `HUB2MQTT_EWELINK__<ID>__<KEY>` override a key of the `[[ikuai]]` /
//!   `[[ewelink]]` entry whose `id` is `<ID>` (case-insensitive);
//! - lists (`clients_include`, `clients_exclude`) are comma-separated.
//!
//! Other `HUB2MQTT_*` variables without a `__` (e.g. `HUB2MQTT_CONFIG`) are not config keys.
//! Every secret (`password`, `app_secret`, `access_token`, `refresh_token`) can also come from
//! `<key>_file`, a path whose content (trailing newline removed) is the secret.
//!
//! Knows nothing of MQTT sessions or hub protocols: it only says what the user asked for.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// A configuration error: the file, the key (dotted path), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.is_empty(), self.key.is_empty()) {
            (false, false) => write!(f, "{}: {}: {}", self.file, self.key, self.message),
            (false, true) => write!(f, "{}: {}", self.file, self.message),
            (true, false) => write!(f, "{}: {}", self.key, self.message),
            (true, true) => f.write_str(&self.message),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub bridge: BridgeConfig,
    pub ikuai: Vec<IkuaiConfig>,
    pub ewelink: Vec<EwelinkConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host[:port]`, `mqtts://host[:port]`, or `embedded`.
    pub url: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub base_topic: String,
    pub discovery_prefix: String,
    /// Publish Home Assistant discovery configs.
    pub discovery: bool,
    /// CA certificate (PEM) for `mqtts://`; the bundled Mozilla roots when absent.
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub keep_alive_s: u64,
    /// Start an MQTT broker inside the process and connect to it.
    pub embedded: bool,
    /// Where the embedded broker listens.
    pub embedded_listen: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "hub2mqtt".into(),
            username: None,
            password: None,
            password_file: None,
            base_topic: "hub2mqtt".into(),
            discovery_prefix: "homeassistant".into(),
            discovery: true,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            keep_alive_s: 30,
            embedded: false,
            embedded_listen: "127.0.0.1:1883".into(),
        }
    }
}

/// Where the MQTT session connects, derived from `url` / `embedded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttEndpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl MqttConfig {
    /// Whether an embedded broker is to be started.
    pub fn wants_embedded(&self) -> bool {
        self.embedded || self.url == "embedded"
    }

    /// The broker to connect to (the embedded one when enabled). Call after validation.
    pub fn endpoint(&self) -> Result<MqttEndpoint, String> {
        if self.wants_embedded() {
            let addr: SocketAddr = self
                .embedded_listen
                .parse()
                .map_err(|_| format!("expected host:port (an IP address), got {:?}", self.embedded_listen))?;
            let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
            return Ok(MqttEndpoint { host, port: addr.port(), tls: false });
        }
        let url = url::Url::parse(&self.url).map_err(|e| format!("not a URL ({e}); expected mqtt:// or mqtts://"))?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            _ => return Err("expected mqtt:// or mqtts://".into()),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("put credentials in mqtt.username and mqtt.password, not in the URL".into());
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err("expected mqtt://host[:port] with nothing after the port".into());
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("the URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Ok(MqttEndpoint { host, port: url.port().unwrap_or(if tls { 8883 } else { 1883 }), tls })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Where hub2mqtt keeps what must survive restarts (cloud tokens). Relative to the config file.
    pub state_dir: PathBuf,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig { state_dir: PathBuf::from("state") }
    }
}

/// One iKuai router.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IkuaiConfig {
    /// `[a-z0-9_]+`, used in topics and unique ids.
    pub id: String,
    /// Display name of the router device (default: `iKuai <id>`).
    pub name: Option<String>,
    pub url: String,
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// Accept the router's self-signed HTTPS certificate.
    pub insecure_tls: bool,
    pub poll_interval_s: u64,
    /// Interval for slow-changing data (DNS config, routes, VLANs, groups).
    pub slow_poll_interval_s: u64,
    /// Timeout of each HTTP call to the router.
    pub timeout_s: u64,
    /// One device_tracker per LAN client.
    pub track_clients: bool,
    /// Seconds a client stays `home` after the router stops listing it.
    pub consider_home_s: u64,
    /// Only track these MACs (empty: all).
    pub clients_include: Vec<String>,
    /// Never track these MACs.
    pub clients_exclude: Vec<String>,
    /// Upload/download rate sensors for each tracked client.
    pub client_rate_sensors: bool,
    /// Remove a tracked client not seen for this many days (0: never).
    pub prune_clients_after_days: u64,
    /// Traffic per application class (`app_flow`) as sensors.
    pub app_traffic: bool,
    /// Traffic per QoS policy (`monitor_l7qos`) as sensors.
    pub qos_traffic: bool,
}

impl Default for IkuaiConfig {
    fn default() -> Self {
        IkuaiConfig {
            id: String::new(),
            name: None,
            url: String::new(),
            username: "admin".into(),
            password: None,
            password_file: None,
            insecure_tls: false,
            poll_interval_s: 10,
            slow_poll_interval_s: 300,
            timeout_s: 10,
            track_clients: false,
            consider_home_s: 180,
            clients_include: Vec::new(),
            clients_exclude: Vec::new(),
            client_rate_sensors: false,
            prune_clients_after_days: 0,
            app_traffic: false,
            qos_traffic: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EwelinkApi {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Cn,
    As,
    Us,
    Eu,
}

impl Region {
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Cn => "cn",
            Region::As => "as",
            Region::Us => "us",
            Region::Eu => "eu",
        }
    }

    pub fn parse(s: &str) -> Option<Region> {
        match s {
            "cn" => Some(Region::Cn),
            "as" => Some(Region::As),
            "us" => Some(Region::Us),
            "eu" => Some(Region::Eu),
            _ => None,
        }
    }
}

/// One eWeLink account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EwelinkConfig {
    /// `[a-z0-9_]+`, used in topics and unique ids.
    pub id: String,
    pub name: Option<String>,
    pub api: EwelinkApi,
    pub region: Region,
    /// Override of the HTTP API root (every HTTP call goes there; `ws://` for an `http://` root).
    pub base_url: Option<String>,
    pub app_id: String,
    pub app_secret: Option<Secret>,
    pub app_secret_file: Option<PathBuf>,
    pub email: Option<String>,
    /// With country code, e.g. `+8613800000000`.
    pub phone: Option<String>,
    /// Country code sent at login (`+86`); derived from the region when absent.
    pub country_code: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// A pre-obtained session: no login needed.
    pub access_token: Option<Secret>,
    pub access_token_file: Option<PathBuf>,
    pub refresh_token: Option<Secret>,
    pub refresh_token_file: Option<PathBuf>,
    pub api_key: Option<String>,
    /// Where tokens are kept across restarts (default `<state_dir>/ewelink_<id>.json`).
    pub state_file: Option<PathBuf>,
    /// How long a command waits for the cloud's confirmation.
    pub command_timeout_s: u64,
}

impl Default for EwelinkConfig {
    fn default() -> Self {
        EwelinkConfig {
            id: String::new(),
            name: None,
            api: EwelinkApi::V2,
            region: Region::Cn,
            base_url: None,
            app_id: String::new(),
            app_secret: None,
            app_secret_file: None,
            email: None,
            phone: None,
            country_code: None,
            password: None,
            password_file: None,
            access_token: None,
            access_token_file: None,
            refresh_token: None,
            refresh_token_file: None,
            api_key: None,
            state_file: None,
            command_timeout_s: 10,
        }
    }
}

/// Keys whose environment override is a comma-separated list.
const LIST_KEYS: &[&str] = &["clients_include", "clients_exclude"];
const ENV_PREFIX: &str = "HUB2MQTT_";

impl Config {
    /// Reads the file at `path`, applies the process environment, reads secret files, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(Some(path), std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment; `path: None` means defaults plus environment.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let file = path.map(|p| p.display().to_string()).unwrap_or_default();
        let err = |key: &str, message: String| ConfigError { file: file.clone(), key: key.to_owned(), message };
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| err("", format!("cannot read: {e}")))?,
            None => String::new(),
        };
        let base_dir = path.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let mut cfg = Self::parse(&text, &file, env)?;
        cfg.resolve_paths(&base_dir);
        cfg.read_secret_files(&file)?;
        cfg.validate().map_err(|(key, message)| err(&key, message))?;
        if let Some(p) = path {
            warn_if_world_readable(p, &text);
        }
        Ok(cfg)
    }

    /// Parses TOML text and environment overrides, without touching the file system.
    pub fn parse(
        text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        use config::{File, FileFormat};
        let err = |key: &str, message: String| ConfigError { file: file.to_owned(), key: key.to_owned(), message };
        let from_file = || config::Config::builder().add_source(File::from_str(text, FileFormat::Toml));
        // First pass: the file alone, to find the index of each hub entry by its id.
        let first = from_file().build().map_err(|e| err("", e.to_string()))?;
        let ids = |section: &str| -> Vec<String> {
            first
                .get::<Vec<config::Value>>(section)
                .unwrap_or_default()
                .into_iter()
                .map(|v| {
                    v.into_table()
                        .ok()
                        .and_then(|t| t.get("id").cloned())
                        .and_then(|id| id.into_string().ok())
                        .unwrap_or_default()
                        .to_lowercase()
                })
                .collect()
        };
        let (ikuai_ids, ewelink_ids) = (ids("ikuai"), ids("ewelink"));

        let mut builder = from_file();
        let mut env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        env.sort();
        for (name, value) in env {
            let Some(rest) = name[ENV_PREFIX.len()..].split_once("__") else { continue };
            let section = rest.0.to_lowercase();
            let path = match section.as_str() {
                "mqtt" | "bridge" => format!("{section}.{}", rest.1.to_lowercase()),
                "ikuai" | "ewelink" => {
                    let ids = if section == "ikuai" { &ikuai_ids } else { &ewelink_ids };
                    let (id, key) = rest.1.rsplit_once("__").ok_or_else(|| {
                        err(&name, format!("expected {ENV_PREFIX}{}__<ID>__<KEY>", section.to_uppercase()))
                    })?;
                    let id = id.to_lowercase();
                    let index = ids.iter().position(|i| *i == id).ok_or_else(|| {
                        err(&name, format!("there is no [[{section}]] entry with id = \"{id}\" to override"))
                    })?;
                    format!("{section}[{index}].{}", key.to_lowercase())
                }
                _ => {
                    return Err(err(
                        &name,
                        format!("unknown section `{section}` (expected mqtt, bridge, ikuai or ewelink)"),
                    ));
                }
            };
            let key = path.rsplit('.').next().unwrap_or_default();
            builder = if LIST_KEYS.contains(&key) {
                let items: Vec<String> =
                    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
                builder.set_override(path.as_str(), items)
            } else {
                builder.set_override(path.as_str(), value)
            }
            .map_err(|e| err(&name, e.to_string()))?;
        }
        let merged = builder.build().map_err(|e| err("", e.to_string()))?;
        serde_path_to_error::deserialize::<_, Config>(merged).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            // The config crate appends " for key `x`" or " in <origin>" to some messages; the key is ours.
            let message = message.split(" for key `").next().unwrap_or(&message).to_owned();
            err(if key == "." { "" } else { &key }, message)
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        };
        if self.bridge.state_dir.is_relative() {
            self.bridge.state_dir = base.join(&self.bridge.state_dir);
        }
        let m = &mut self.mqtt;
        for p in [&mut m.password_file, &mut m.ca_file, &mut m.client_cert_file, &mut m.client_key_file] {
            fix(p);
        }
        for r in &mut self.ikuai {
            fix(&mut r.password_file);
        }
        for a in &mut self.ewelink {
            for p in [
                &mut a.app_secret_file,
                &mut a.password_file,
                &mut a.access_token_file,
                &mut a.refresh_token_file,
                &mut a.state_file,
            ] {
                fix(p);
            }
        }
    }

    fn read_secret_files(&mut self, file: &str) -> Result<(), ConfigError> {
        let mut slots: Vec<(String, &mut Option<Secret>, &Option<PathBuf>)> = Vec::new();
        slots.push(("mqtt.password".into(), &mut self.mqtt.password, &self.mqtt.password_file));
        for (i, r) in self.ikuai.iter_mut().enumerate() {
            slots.push((format!("ikuai[{i}].password"), &mut r.password, &r.password_file));
        }
        for (i, a) in self.ewelink.iter_mut().enumerate() {
            slots.push((format!("ewelink[{i}].app_secret"), &mut a.app_secret, &a.app_secret_file));
            slots.push((format!("ewelink[{i}].password"), &mut a.password, &a.password_file));
            slots.push((format!("ewelink[{i}].access_token"), &mut a.access_token, &a.access_token_file));
            slots.push((format!("ewelink[{i}].refresh_token"), &mut a.refresh_token, &a.refresh_token_file));
        }
        for (key, value, path) in slots {
            let Some(path) = path else { continue };
            let err = |message: String| ConfigError { file: file.to_owned(), key: format!("{key}_file"), message };
            if value.is_some() {
                return Err(err(format!("set either {key} or {key}_file, not both")));
            }
            let text =
                std::fs::read_to_string(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                return Err(err(format!("{} is empty", path.display())));
            }
            *value = Some(Secret::new(text));
        }
        Ok(())
    }

    /// Checks every value; the error is `(key, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let e = |key: &str, msg: &str| Err((key.to_owned(), msg.to_owned()));
        let m = &self.mqtt;
        if let Err(msg) = m.endpoint() {
            return e(if m.wants_embedded() { "mqtt.embedded_listen" } else { "mqtt.url" }, &msg);
        }
        if m.client_id.is_empty() || m.client_id.len() > 128 {
            return e("mqtt.client_id", "expected 1 to 128 characters");
        }
        check_topic("mqtt.base_topic", &m.base_topic)?;
        check_topic("mqtt.discovery_prefix", &m.discovery_prefix)?;
        if !(5..=3600).contains(&m.keep_alive_s) {
            return e("mqtt.keep_alive_s", "expected 5 to 3600 seconds");
        }
        let tls = m.endpoint().map(|ep| ep.tls).unwrap_or(false);
        for (key, path) in [
            ("mqtt.ca_file", &m.ca_file),
            ("mqtt.client_cert_file", &m.client_cert_file),
            ("mqtt.client_key_file", &m.client_key_file),
        ] {
            if let Some(p) = path {
                if !tls {
                    return e(key, "only used with an mqtts:// url");
                }
                if !p.is_file() {
                    return Err((key.to_owned(), format!("{} does not exist", p.display())));
                }
            }
        }
        if m.client_cert_file.is_some() != m.client_key_file.is_some() {
            return e("mqtt.client_key_file", "client_cert_file and client_key_file go together");
        }
        if m.password.is_some() && m.username.as_deref().unwrap_or("").is_empty() {
            return e("mqtt.username", "a password is set but no username");
        }

        let mut seen = HashSet::new();
        for (i, r) in self.ikuai.iter().enumerate() {
            let k = |name: &str| format!("ikuai[{i}].{name}");
            check_id(&k("id"), &r.id)?;
            if !seen.insert(r.id.clone()) {
                return Err((k("id"), format!("two [[ikuai]] entries have id \"{}\"", r.id)));
            }
            check_http_url(&k("url"), &r.url)?;
            if r.username.is_empty() {
                return Err((k("username"), "required".into()));
            }
            if r.password.is_none() {
                return Err((k("password"), "required (or password_file, or HUB2MQTT_IKUAI__<ID>__PASSWORD)".into()));
            }
            if !(1..=86_400).contains(&r.poll_interval_s) {
                return Err((k("poll_interval_s"), "expected 1 to 86400 seconds".into()));
            }
            if r.slow_poll_interval_s < r.poll_interval_s || r.slow_poll_interval_s > 86_400 {
                return Err((k("slow_poll_interval_s"), "expected poll_interval_s to 86400 seconds".into()));
            }
            if !(1..=300).contains(&r.timeout_s) {
                return Err((k("timeout_s"), "expected 1 to 300 seconds".into()));
            }
            for (name, list) in [("clients_include", &r.clients_include), ("clients_exclude", &r.clients_exclude)] {
                for mac in list {
                    if normalize_mac(mac).is_none() {
                        return Err((k(name), format!("{mac:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")));
                    }
                }
            }
        }

        let mut seen = HashSet::new();
        for (i, a) in self.ewelink.iter().enumerate() {
            let k = |name: &str| format!("ewelink[{i}].{name}");
            check_id(&k("id"), &a.id)?;
            if !seen.insert(a.id.clone()) {
                return Err((k("id"), format!("two [[ewelink]] entries have id \"{}\"", a.id)));
            }
            if let Some(url) = &a.base_url {
                check_http_url(&k("base_url"), url)?;
            }
            if a.app_id.trim().is_empty() {
                return Err((k("app_id"), "required: your own eWeLink developer app id".into()));
            }
            if a.app_secret.is_none() {
                return Err((k("app_secret"), "required (or app_secret_file)".into()));
            }
            let has_session = a.access_token.is_some();
            match (&a.email, &a.phone) {
                (Some(_), Some(_)) => return Err((k("phone"), "set either email or phone, not both".into())),
                (None, None) if !has_session => {
                    return Err((
                        k("email"),
                        "required: email or phone with password, or access_token and api_key".into(),
                    ));
                }
                _ => {}
            }
            if let Some(phone) = &a.phone
                && !(phone.starts_with('+') && phone.len() > 4 && phone[1..].chars().all(|c| c.is_ascii_digit()))
            {
                return Err((k("phone"), "expected the number with its country code, e.g. +8613800000000".into()));
            }
            if (a.email.is_some() || a.phone.is_some()) && a.password.is_none() {
                return Err((k("password"), "required with email or phone (or password_file)".into()));
            }
            if has_session && a.api_key.as_deref().unwrap_or("").is_empty() {
                return Err((k("api_key"), "required with access_token".into()));
            }
            if a.refresh_token.is_some() && !has_session {
                return Err((k("refresh_token"), "only used together with access_token".into()));
            }
            if let Some(cc) = &a.country_code
                && !(cc.starts_with('+') && cc.len() >= 2 && cc[1..].chars().all(|c| c.is_ascii_digit()))
            {
                return Err((k("country_code"), "expected + and digits, e.g. +86".into()));
            }
            if !(1..=120).contains(&a.command_timeout_s) {
                return Err((k("command_timeout_s"), "expected 1 to 120 seconds".into()));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked (for `check-config`).
    pub fn to_masked_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }
}

impl EwelinkConfig {
    /// The token state file, default `<state_dir>/ewelink_<id>.json`.
    pub fn state_file(&self, bridge: &BridgeConfig) -> PathBuf {
        self.state_file.clone().unwrap_or_else(|| bridge.state_dir.join(format!("ewelink_{}.json", self.id)))
    }
}

/// `aa:bb:cc:dd:ee:ff` in lower case, from `AA-BB-CC-DD-EE-FF`, `aabbccddeeff` or `aa:bb:...`.
pub fn normalize_mac(mac: &str) -> Option<String> {
    let hex: String = mac.chars().filter(|c| !matches!(c, ':' | '-' | '.')).collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some((0..6).map(|i| &hex[i * 2..i * 2 + 2]).collect::<Vec<_>>().join(":"))
}

fn check_id(key: &str, id: &str) -> Result<(), (String, String)> {
    if id.is_empty() {
        return Err((key.to_owned(), "required ([a-z0-9_]+)".into()));
    }
    if !id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') || id.len() > 64 {
        return Err((key.to_owned(), format!("{id:?}: expected lower-case letters, digits and _ (at most 64)")));
    }
    Ok(())
}

fn check_http_url(key: &str, url: &str) -> Result<(), (String, String)> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(_) => Err((key.to_owned(), format!("{url:?}: expected http:// or https://"))),
        Err(e) if url.is_empty() => Err((key.to_owned(), format!("required ({e})"))),
        Err(e) => Err((key.to_owned(), format!("{url:?}: {e}; expected http:// or https://"))),
    }
}

fn check_topic(key: &str, topic: &str) -> Result<(), (String, String)> {
    let bad = topic.is_empty()
        || topic.starts_with('/')
        || topic.ends_with('/')
        || topic.contains("//")
        || topic.contains(['+', '#', '\0']);
    if bad {
        return Err((key.to_owned(), format!("{topic:?}: expected topic levels without +, # or empty levels")));
    }
    Ok(())
}

/// Warns when a config file that holds secrets itself can be read by other users.
fn warn_if_world_readable(path: &Path, text: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let holds_secret = text.lines().any(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            matches!(key, "password" | "app_secret" | "access_token" | "refresh_token")
        });
        if let Ok(meta) = std::fs::metadata(path)
            && holds_secret
            && meta.permissions().mode() & 0o004 != 0
        {
            tracing::warn!(
                file = %path.display(),
                "the config file holds secrets and is readable by every user; run: chmod 600 {}",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let cfg = Config::parse(text, "test.toml", env)?;
        cfg.validate().map_err(|(key, message)| ConfigError { file: "test.toml".into(), key, message })?;
        Ok(cfg)
    }

    const ROUTER: &str = "[[ikuai]]\nid = \"home\"\nurl = \"http://192.168.9.1\"\npassword = \"pw-router\"\n";

    #[test]
    fn defaults_are_sensible() {
        let cfg = parse("", &[]).unwrap();
        assert_eq!(cfg.mqtt.base_topic, "hub2mqtt");
        assert_eq!(cfg.mqtt.endpoint().unwrap(), MqttEndpoint { host: "127.0.0.1".into(), port: 1883, tls: false });
        assert!(cfg.ikuai.is_empty() && cfg.ewelink.is_empty());
    }

    #[test]
    fn bad_url_names_file_and_key() {
        let e = parse("[mqtt]\nurl = \"http://broker\"\n", &[]).unwrap_err();
        assert_eq!(e.to_string(), "test.toml: mqtt.url: expected mqtt:// or mqtts://");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = parse("[mqtt]\npasword = \"x\"\n", &[]).unwrap_err();
        assert_eq!(e.key, "mqtt.pasword");
        assert!(e.message.contains("unknown field `pasword`"), "{e}");
        let e = parse(&format!("{ROUTER}poll_intervall = 5\n"), &[]).unwrap_err();
        assert_eq!(e.key, "ikuai[0].poll_intervall");
        let e = parse("[mqt]\nurl = \"mqtt://x\"\n", &[]).unwrap_err();
        assert_eq!(e.key, "mqt");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let e = parse(&format!("{ROUTER}poll_interval_s = \"often\"\n"), &[]).unwrap_err();
        assert_eq!(e.key, "ikuai[0].poll_interval_s");
    }

    #[test]
    fn environment_overrides_sections_and_entries_by_id() {
        let cfg = parse(
            ROUTER,
            &[
                ("HUB2MQTT_MQTT__URL", "mqtts://broker.lan:8884"),
                ("HUB2MQTT_MQTT__KEEP_ALIVE_S", "60"),
                ("HUB2MQTT_IKUAI__HOME__PASSWORD", "from-env"),
                ("HUB2MQTT_IKUAI__HOME__TRACK_CLIENTS", "true"),
                ("HUB2MQTT_IKUAI__HOME__CLIENTS_EXCLUDE", "AA-BB-CC-DD-EE-FF, 00:11:22:33:44:55"),
                ("HUB2MQTT_CONFIG", "/not/a/key"),
                ("OTHER", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.mqtt.endpoint().unwrap(), MqttEndpoint { host: "broker.lan".into(), port: 8884, tls: true });
        assert_eq!(cfg.mqtt.keep_alive_s, 60);
        assert_eq!(cfg.ikuai[0].password.as_ref().unwrap().expose(), "from-env");
        assert!(cfg.ikuai[0].track_clients);
        assert_eq!(cfg.ikuai[0].clients_exclude.len(), 2);
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let e = parse(ROUTER, &[("HUB2MQTT_IKUAI__OFFICE__PASSWORD", "x")]).unwrap_err();
        assert_eq!(e.key, "HUB2MQTT_IKUAI__OFFICE__PASSWORD");
        let e = parse("", &[("HUB2MQTT_MQTT__NOPE", "x")]).unwrap_err();
        assert_eq!(e.key, "mqtt.nope");
    }

    #[test]
    fn secrets_come_from_files_and_are_masked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "file-secret-123\n").unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[mqtt]\nusername = \"u\"\npassword_file = \"pw\"\n[[ikuai]]\nid = \"r1\"\nurl = \"https://10.0.0.1\"\npassword = \"inline-pass-456\"\n",
        )
        .unwrap();
        let cfg = Config::load_with_env(Some(&path), []).unwrap();
        assert_eq!(cfg.mqtt.password.as_ref().unwrap().expose(), "file-secret-123");
        let shown = cfg.to_masked_toml();
        assert!(!shown.contains("file-secret-123") && !shown.contains("inline-pass-456"), "{shown}");
        assert!(shown.contains(crate::secret::MASK));
        assert_eq!(cfg.bridge.state_dir, dir.path().join("state"));
    }

    #[test]
    fn both_secret_and_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "x\n").unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[mqtt]\nusername = \"u\"\npassword = \"a\"\npassword_file = \"pw\"\n").unwrap();
        let e = Config::load_with_env(Some(&path), []).unwrap_err();
        assert_eq!(e.key, "mqtt.password_file");
    }

    #[test]
    fn hub_entries_are_validated() {
        let e = parse("[[ikuai]]\nid = \"Home!\"\nurl = \"http://x\"\npassword = \"p\"\n", &[]).unwrap_err();
        assert_eq!(e.key, "ikuai[0].id");
        let e = parse(&format!("{ROUTER}{ROUTER}"), &[]).unwrap_err();
        assert_eq!(e.key, "ikuai[1].id");
        let e = parse("[[ewelink]]\nid = \"a\"\napp_id = \"x\"\napp_secret = \"y\"\n", &[]).unwrap_err();
        assert_eq!(e.key, "ewelink[0].email");
        let ok = "[[ewelink]]\nid = \"a\"\napi = \"v1\"\nregion = \"eu\"\napp_id = \"x\"\napp_secret = \"y\"\nemail = \"a@b.c\"\npassword = \"p\"\n";
        let cfg = parse(ok, &[]).unwrap();
        assert_eq!((cfg.ewelink[0].api, cfg.ewelink[0].region), (EwelinkApi::V1, Region::Eu));
        let e = parse(&ok.replace("\"eu\"", "\"mars\""), &[]).unwrap_err();
        assert_eq!(e.key, "ewelink[0].region");
    }

    #[test]
    fn embedded_broker_endpoint() {
        let cfg = parse("[mqtt]\nurl = \"embedded\"\nembedded_listen = \"0.0.0.0:18830\"\n", &[]).unwrap();
        assert!(cfg.mqtt.wants_embedded());
        assert_eq!(cfg.mqtt.endpoint().unwrap().port, 18830);
        assert_eq!(cfg.mqtt.endpoint().unwrap().host, "127.0.0.1");
    }

    #[test]
    fn macs_normalize() {
        assert_eq!(normalize_mac("AA-BB-CC-DD-EE-0F").as_deref(), Some("aa:bb:cc:dd:ee:0f"));
        assert_eq!(normalize_mac("aabbccddeeff").as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(normalize_mac("nope"), None);
    }
}
