# hub2mqtt add-on: turns the add-on options (/data/options.json) into hub2mqtt's config.toml.
#
#   jq -r --arg service_url URL --arg service_username USER --arg service_password PASSWORD \
#      -f options-to-config.jq /data/options.json
#
# $service_*: the broker the Supervisor's MQTT service announces ("" when there is none). The
# options' mqtt.url wins when it is set. Every value goes through tojson: a JSON string is a valid
# TOML basic string, so quotes, backslashes and non-ASCII characters in passwords survive intact.
# Every key written here is a key of config.example.toml (tests/deploy.rs checks it).

def is_set: . != null and . != "";
def or_default($default): if is_set then . else $default end;
def entry($key; $value): "\($key) = \($value | tojson)";
def entry_if_set($key; $value): if ($value | is_set) then entry($key; $value) else empty end;

(.mqtt // {}) as $mqtt
| (if ($mqtt.url | is_set)
   then {url: $mqtt.url, username: $mqtt.username, password: $mqtt.password}
   else {url: $service_url, username: $service_username, password: $service_password}
   end) as $broker
| if ($broker.url | is_set) then . else
    error("no MQTT broker: install the Mosquitto broker add-on, or set mqtt.url in the add-on options")
  end
| [
    "# Written by the hub2mqtt add-on from its options at every start: change the options, not this file.",
    "[mqtt]",
    entry("url"; $broker.url),
    entry_if_set("username"; $broker.username),
    entry_if_set("password"; $broker.password),
    entry("base_topic"; .base_topic),
    entry("discovery_prefix"; .discovery_prefix),
    "",
    "[bridge]",
    entry("state_dir"; "/data/state"),
    ((.ikuai // {}) | select(.url | is_set) |
      "",
      "[[ikuai]]",
      entry("id"; .id | or_default("home")),
      entry("url"; .url),
      entry("username"; .username),
      entry_if_set("password"; .password),
      entry("insecure_tls"; .insecure_tls // false),
      entry("track_clients"; .track_clients // false)),
    ((.ewelink // {}) | select(.app_id | is_set) |
      "",
      "[[ewelink]]",
      entry("id"; .id | or_default("home")),
      entry("api"; .api),
      entry("region"; .region),
      entry("app_id"; .app_id),
      entry_if_set("app_secret"; .app_secret),
      entry_if_set("email"; .email),
      entry_if_set("phone"; .phone),
      entry_if_set("password"; .password))
  ]
| join("\n")
