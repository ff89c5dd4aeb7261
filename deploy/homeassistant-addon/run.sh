#!/usr/bin/with-contenv bashio
# shellcheck shell=bash
# ==============================================================================
# hub2mqtt add-on: writes /data/config.toml (mode 600) from the add-on options
# and the Supervisor's MQTT service, then runs hub2mqtt in this process's place.
# ==============================================================================
set -e

readonly CONFIG=/data/config.toml
readonly FILTER=/usr/share/hub2mqtt/options-to-config.jq

# The broker the Supervisor announces (the Mosquitto broker add-on), used unless mqtt.url is set.
service_url=""
service_username=""
service_password=""
if bashio::services.available "mqtt"; then
    host="$(bashio::services "mqtt" "host")"
    port="$(bashio::services "mqtt" "port")"
    scheme="mqtt"
    if bashio::var.true "$(bashio::services "mqtt" "ssl")"; then
        scheme="mqtts"
    fi
    if [[ "${host}" == *:* ]]; then
        host="[${host}]"
    fi
    service_url="${scheme}://${host}:${port}"
    service_username="$(bashio::services "mqtt" "username")"
    service_password="$(bashio::services "mqtt" "password")"
fi

if bashio::config.has_value "mqtt.url"; then
    bashio::log.info "MQTT broker from the add-on options: $(bashio::config "mqtt.url")"
elif bashio::var.has_value "${service_url}"; then
    bashio::log.info "MQTT broker from the Supervisor's MQTT service: ${service_url}"
else
    bashio::exit.nok "No MQTT broker: install and start the Mosquitto broker add-on, or set mqtt.url in the options."
fi

umask 077
mkdir -p /data/state
jq --raw-output \
    --arg service_url "${service_url}" \
    --arg service_username "${service_username}" \
    --arg service_password "${service_password}" \
    --from-file "${FILTER}" /data/options.json > "${CONFIG}.new"
chmod 600 "${CONFIG}.new"
mv "${CONFIG}.new" "${CONFIG}"

exec hub2mqtt run --config "${CONFIG}" --log-level "$(bashio::config "log_level")"
