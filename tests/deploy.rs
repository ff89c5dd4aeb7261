//! Checks the deployment files (deploy/, .dockerignore) against the program they deploy: the paths,
//! ports, environment variables and config keys they name must be the ones hub2mqtt uses, and the
//! files must pass the tools that judge them where those tools are installed (`systemd-analyze`,
//! `docker compose config` or `docker-compose config`, `jq` for the add-on's options → config.toml).
//! A missing tool skips only its part, with the reason printed. Fast and offline: nothing is built
//! or pulled, no container runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hub2mqtt::config::{BridgeConfig, Config, EwelinkApi, MqttConfig, Region};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Reading the files.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

/// `package.<key>` of Cargo.toml.
fn package(key: &str) -> String {
    let manifest = config::Config::builder()
        .add_source(config::File::from_str(&read("Cargo.toml"), config::FileFormat::Toml))
        .build()
        .expect("Cargo.toml parses");
    manifest.get_string(&format!("package.{key}")).unwrap_or_else(|e| panic!("Cargo.toml package.{key}: {e}"))
}

/// `(major, minor)` of a version such as `1.95`, `1.85.0` or `1.95-slim-bookworm`.
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("{version:?} does not start with major.minor"),
    }
}

/// Runs a command; `None` when it cannot be started (not installed).
fn run(program: &str, args: &[&str], dir: &Path) -> Option<Output> {
    Command::new(program).args(args).current_dir(dir).output().ok()
}

fn skip(part: &str, reason: &str) {
    println!("SKIPPED {part}: {reason}");
}

/// The effective configuration of a config file text plus environment, validated like `hub2mqtt run` does.
fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load_with_env(Some(&path), env).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Dockerfiles.

#[derive(Debug)]
struct Instruction {
    op: String,
    args: String,
}

/// The instructions of a Dockerfile: comments dropped, continuation lines joined.
fn dockerfile(rel: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read(rel).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (op, args) = current.split_once(char::is_whitespace).unwrap_or((current.as_str(), ""));
        out.push(Instruction { op: op.to_ascii_uppercase(), args: args.trim().to_owned() });
        current.clear();
    }
    assert!(current.is_empty(), "{rel} ends inside a continued line");
    out
}

/// The instructions of the last stage (from its FROM on).
fn final_stage(instructions: &[Instruction]) -> &[Instruction] {
    let start = instructions.iter().rposition(|i| i.op == "FROM").expect("a FROM instruction");
    &instructions[start..]
}

fn args_of<'a>(stage: &'a [Instruction], op: &str) -> Vec<&'a str> {
    stage.iter().filter(|i| i.op == op).map(|i| i.args.as_str()).collect()
}

fn exec_form(rel: &str, what: &str, args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{rel}: {what} must be in exec form [\"...\"]: {args} ({e})"))
}

/// `ARG NAME=default` anywhere in the file.
fn arg_default(instructions: &[Instruction], name: &str) -> Option<String> {
    instructions
        .iter()
        .filter(|i| i.op == "ARG")
        .filter_map(|i| i.args.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// `ENV KEY=VALUE` pairs of a stage.
fn env_of(stage: &[Instruction]) -> BTreeMap<String, String> {
    args_of(stage, "ENV")
        .iter()
        .flat_map(|args| args.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

#[test]
fn dockerfile_builds_with_the_project_toolchain_and_runs_unprivileged() {
    let rel = "deploy/Dockerfile";
    let all = dockerfile(rel);
    let froms = args_of(&all, "FROM");
    assert!(froms.len() >= 2, "{rel}: expected a multi-stage build, found FROM {froms:?}");

    // Builder: the official Rust image, at least the crate's rust-version, on the runtime's Debian.
    let builder = froms[0];
    assert!(builder.starts_with("rust:"), "{rel}: the build stage should use the official rust image: {builder}");
    let rust = arg_default(&all, "RUST_VERSION").expect("ARG RUST_VERSION=<version>");
    assert!(builder.contains("${RUST_VERSION}"), "{rel}: the rust image tag should use ARG RUST_VERSION: {builder}");
    assert!(
        major_minor(&rust) >= major_minor(&package("rust-version")),
        "{rel}: RUST_VERSION {rust} is older than Cargo.toml's rust-version {}",
        package("rust-version")
    );
    let runtime = *froms.last().unwrap();
    let debian12 = |image: &str| image.contains("bookworm") || image.contains("debian12");
    assert!(
        debian12(builder) && debian12(runtime),
        "{rel}: builder ({builder}) and runtime ({runtime}) must share Debian 12's glibc"
    );
    let build_run = args_of(&all, "RUN").join("\n");
    assert!(
        build_run.contains("cargo build --release --locked --bin hub2mqtt"),
        "{rel}: the build should be `cargo build --release --locked --bin hub2mqtt`"
    );
    assert!(build_run.contains("--mount=type=cache"), "{rel}: cargo's registry and target should be cache mounts");

    let stage = final_stage(&all);
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-debian12:nonroot") || runtime.starts_with("debian:bookworm-slim"),
        "{rel}: unexpected runtime image {runtime}"
    );

    // A non-root user, in the final stage.
    let user = *args_of(stage, "USER").last().unwrap_or_else(|| panic!("{rel}: the final stage has no USER"));
    let uid = user.split(':').next().unwrap_or_default();
    assert!(!matches!(uid, "" | "0" | "root"), "{rel}: USER {user} is root");

    // The binary the entrypoint runs is the one copied from the build stage.
    let copied: Vec<String> = args_of(stage, "COPY")
        .into_iter()
        .filter(|a| a.contains("--from="))
        .filter_map(|a| {
            let words: Vec<&str> = a.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            (words.len() == 2 && words[0].ends_with("/hub2mqtt")).then(|| words[1].to_owned())
        })
        .collect();
    let entrypoint = exec_form(rel, "ENTRYPOINT", args_of(stage, "ENTRYPOINT").last().expect("an ENTRYPOINT"));
    assert!(
        entrypoint.len() == 1 && copied.contains(&entrypoint[0]),
        "{rel}: ENTRYPOINT {entrypoint:?} is not the hub2mqtt binary copied into the image ({copied:?})"
    );
    let cmd = exec_form(rel, "CMD", args_of(stage, "CMD").last().expect("a CMD"));
    assert_eq!(cmd, ["run"], "{rel}: CMD");

    // Config and state under the /data volume, where the program looks for them.
    let env = env_of(stage);
    let config_path = env.get("HUB2MQTT_CONFIG").unwrap_or_else(|| panic!("{rel}: ENV HUB2MQTT_CONFIG missing"));
    assert_eq!(config_path, "/data/config.toml", "{rel}: HUB2MQTT_CONFIG");
    let volumes: Vec<String> = args_of(stage, "VOLUME").iter().flat_map(|a| exec_form(rel, "VOLUME", a)).collect();
    assert!(volumes.iter().any(|v| v == "/data"), "{rel}: VOLUME /data missing ({volumes:?})");
    // The program resolves the default state_dir relative to the config file.
    let state_dir = Path::new(config_path).parent().unwrap().join(BridgeConfig::default().state_dir);
    assert!(state_dir.starts_with("/data"), "{rel}: state dir {} is outside /data", state_dir.display());
    let copies_state = args_of(stage, "COPY").iter().any(|a| a.contains("--chown=") && a.ends_with(" /data"));
    assert!(copies_state, "{rel}: /data (with state/) should be copied in owned by the runtime user");

    // HEALTHCHECK runs `hub2mqtt healthcheck` (the config comes from HUB2MQTT_CONFIG).
    let health = *args_of(stage, "HEALTHCHECK").last().unwrap_or_else(|| panic!("{rel}: no HEALTHCHECK"));
    let (_, check) = health.split_once("CMD ").unwrap_or_else(|| panic!("{rel}: HEALTHCHECK without CMD: {health}"));
    let check = exec_form(rel, "HEALTHCHECK CMD", check);
    assert_eq!(check, [entrypoint[0].as_str(), "healthcheck"], "{rel}: HEALTHCHECK CMD");
}

#[test]
fn dockerignore_keeps_sources_and_drops_build_output_and_secrets() {
    let rel = ".dockerignore";
    let patterns: BTreeSet<String> = read(rel)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').to_owned())
        .collect();
    for needed in ["Cargo.toml", "Cargo.lock", "src", "*", "**", "*.toml", "*.lock", "src/*"] {
        assert!(!patterns.contains(needed), "{rel}: `{needed}` would drop what the build needs");
    }
    for dropped in ["target", ".git", "config.toml", "state"] {
        assert!(patterns.contains(dropped), "{rel}: `{dropped}` should be excluded from the build context");
    }

    // A file the sources embed must be in the context: no include_str!/include_bytes! into an
    // excluded top-level directory (deploy/, docs/, ...).
    let mut pending = vec![repo().join("src")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src").map(|e| e.expect("dir entry").path()) {
            if entry.is_dir() {
                pending.push(entry);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&entry) else { continue };
            let macros = ["include_str!(\"", "include_bytes!(\""];
            for piece in macros.iter().flat_map(|m| text.split(m).skip(1)) {
                let included = piece.split('"').next().unwrap_or_default();
                let Ok(path) = entry.parent().unwrap().join(included).canonicalize() else { continue };
                let inside = path.strip_prefix(repo().canonicalize().unwrap()).unwrap_or(&path).to_path_buf();
                let top = inside.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
                assert!(
                    !top.is_some_and(|top| patterns.contains(&top)),
                    "{}: embeds {}, which {rel} keeps out of the Docker build",
                    entry.display(),
                    inside.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// docker compose + Mosquitto.

/// `(source, target, read_only)` of a service's volumes, short or long syntax.
fn mounts(service: &Value) -> Vec<(String, String, bool)> {
    let Some(list) = service["volumes"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|v| match v {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let read_only = parts.get(2).is_some_and(|mode| mode.split(',').any(|m| m == "ro"));
                (parts[0].to_owned(), parts.get(1).copied().unwrap_or(parts[0]).to_owned(), read_only)
            }
            long => (
                long["source"].as_str().unwrap_or_default().to_owned(),
                long["target"].as_str().unwrap_or_default().to_owned(),
                long["read_only"].as_bool().unwrap_or(false),
            ),
        })
        .collect()
}

/// `key value` directives of mosquitto.conf.
fn mosquitto_conf(rel: &str) -> Vec<(String, String)> {
    read(rel)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (k.to_owned(), v.trim().to_owned())
        })
        .collect()
}

fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        Value::Object(map) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[test]
fn compose_wires_hub2mqtt_to_a_password_protected_mosquitto() {
    let rel = "deploy/docker-compose.yml";
    let deploy = repo().join("deploy");
    let compose = yaml(rel);
    let services = compose["services"].as_object().unwrap_or_else(|| panic!("{rel}: no services"));
    let mosquitto = services.get("mosquitto").unwrap_or_else(|| panic!("{rel}: no mosquitto service"));
    let bridge = services.get("hub2mqtt").unwrap_or_else(|| panic!("{rel}: no hub2mqtt service"));

    // Mosquitto: its own config, listening on the network, passwords required.
    let image = mosquitto["image"].as_str().unwrap_or_default();
    assert!(image.starts_with("eclipse-mosquitto:2"), "{rel}: mosquitto image {image}");
    let mosquitto_mounts = mounts(mosquitto);
    let conf_mount = mosquitto_mounts
        .iter()
        .find(|(_, target, _)| target == "/mosquitto/config/mosquitto.conf")
        .unwrap_or_else(|| panic!("{rel}: mosquitto.conf is not mounted at /mosquitto/config/mosquitto.conf"));
    let conf_rel = format!("deploy/{}", conf_mount.0.trim_start_matches("./"));
    assert!(repo().join(&conf_rel).is_file(), "{rel}: {} does not exist", conf_mount.0);
    let conf = mosquitto_conf(&conf_rel);
    let directive = |key: &str| conf.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    let listeners = directive("listener");
    assert_eq!(listeners.len(), 1, "{conf_rel}: expected one listener, found {listeners:?}");
    let listener: Vec<&str> = listeners[0].split_whitespace().collect();
    assert!(
        listener.len() == 1 || listener[1] == "0.0.0.0",
        "{conf_rel}: the listener must not be bound to one address"
    );
    let port: u16 = listener[0].parse().unwrap_or_else(|_| panic!("{conf_rel}: listener port {}", listener[0]));
    let default_port = MqttConfig::default().endpoint().expect("default endpoint").port;
    assert_eq!(port, default_port, "{conf_rel}: the listener should be the default MQTT port");
    assert_eq!(directive("allow_anonymous"), ["false"], "{conf_rel}: allow_anonymous");
    let covered = |path: &str, writable: bool| {
        mosquitto_mounts
            .iter()
            .any(|(_, target, ro)| Path::new(path).starts_with(target) && target != path && !(writable && *ro))
    };
    let password_file = *directive("password_file").first().unwrap_or_else(|| panic!("{conf_rel}: no password_file"));
    assert!(
        covered(password_file, true),
        "{rel}: {password_file} (password_file) is not in a writable mounted directory"
    );
    let persistence =
        *directive("persistence_location").first().unwrap_or_else(|| panic!("{conf_rel}: persistence_location"));
    assert_eq!(directive("persistence"), ["true"], "{conf_rel}: retained messages should survive restarts");
    assert!(covered(persistence, true), "{rel}: {persistence} (persistence_location) is not on a volume");
    let ports = string_list(&mosquitto["ports"]);
    assert!(
        ports.iter().any(|p| p.ends_with(&format!(":{port}")) || p == &port.to_string()),
        "{rel}: mosquitto should publish its listener port {port} ({ports:?})"
    );

    // hub2mqtt: built from this repository, the broker is the mosquitto service, /data mounted.
    let context =
        deploy.join(bridge["build"]["context"].as_str().unwrap_or_else(|| panic!("{rel}: hub2mqtt.build.context")));
    let dockerfile = bridge["build"]["dockerfile"].as_str().unwrap_or("Dockerfile");
    assert!(context.join("Cargo.toml").is_file(), "{rel}: the build context is not the repository root");
    assert_eq!(
        context.join(dockerfile).canonicalize().ok(),
        repo().join("deploy/Dockerfile").canonicalize().ok(),
        "{rel}: hub2mqtt should build with deploy/Dockerfile"
    );
    let env = environment(bridge);
    for key in env.keys().filter(|k| k.starts_with("HUB2MQTT_")) {
        assert!(key.contains("__") || key == "HUB2MQTT_CONFIG", "{rel}: {key} is not a hub2mqtt variable");
    }
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cfg = load("", &pairs).unwrap_or_else(|e| panic!("{rel}: hub2mqtt rejects its environment: {e}"));
    let endpoint = cfg.mqtt.endpoint().expect("endpoint");
    assert_eq!(endpoint.host, "mosquitto", "{rel}: HUB2MQTT_MQTT__URL should name the mosquitto service");
    assert_eq!((endpoint.port, endpoint.tls), (port, false), "{rel}: HUB2MQTT_MQTT__URL port");
    assert!(
        string_list(&bridge["depends_on"]).contains(&"mosquitto".to_owned()),
        "{rel}: hub2mqtt depends_on mosquitto"
    );
    let data = mounts(bridge).into_iter().find(|(_, target, _)| target == "/data");
    let (_, _, read_only) = data.unwrap_or_else(|| panic!("{rel}: hub2mqtt has no volume at /data"));
    assert!(!read_only, "{rel}: /data must be writable (state/)");
    let user = bridge["user"].as_str().unwrap_or_default();
    assert!(!user.is_empty() && !user.starts_with("0:") && !user.starts_with("root"), "{rel}: hub2mqtt user {user:?}");
    for (name, service) in [("mosquitto", mosquitto), ("hub2mqtt", bridge)] {
        let restart = service["restart"].as_str().unwrap_or("no");
        assert!(matches!(restart, "always" | "unless-stopped" | "on-failure"), "{rel}: {name} restart: {restart}");
    }

    // The compose tool itself, v2 plugin or v1.
    let (tool, output) = if run("docker", &["compose", "version"], &deploy).is_some_and(|o| o.status.success()) {
        ("docker compose", run("docker", &["compose", "config", "--quiet"], &deploy))
    } else if run("docker-compose", &["version"], &deploy).is_some_and(|o| o.status.success()) {
        ("docker-compose", run("docker-compose", &["config", "--quiet"], &deploy))
    } else {
        skip("compose validation", "neither `docker compose` nor `docker-compose` is installed");
        return;
    };
    let output = output.unwrap_or_else(|| panic!("{tool} did not start"));
    assert!(
        output.status.success(),
        "`{tool} config` rejects {rel}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{tool} config: {rel} is valid");
}

// ---------------------------------------------------------------------------------------------
// systemd.

/// `(section, key, value)` of a unit file, in order.
fn unit_file(rel: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read(rel).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("{rel}: not key=value: {line}"));
        out.push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
    }
    out
}

#[test]
fn systemd_unit_is_hardened_and_passes_systemd_analyze() {
    let rel = "deploy/hub2mqtt.service";
    let unit = unit_file(rel);
    let values = |key: &str| unit.iter().filter(|(_, k, _)| k == key).map(|(_, _, v)| v.as_str()).collect::<Vec<_>>();
    let one = |key: &str| -> String {
        let v = values(key);
        assert_eq!(v.len(), 1, "{rel}: expected one {key}=, found {v:?}");
        v[0].to_owned()
    };

    // The notify protocol the program implements, and recovery.
    assert_eq!(one("Type"), "notify", "{rel}: Type");
    assert!(one("WatchdogSec").trim_end_matches('s').parse::<u32>().is_ok_and(|s| s >= 10), "{rel}: WatchdogSec");
    assert_eq!(one("Restart"), "on-failure", "{rel}: Restart");
    assert!(!one("RestartSec").is_empty());

    // ExecStart runs `hub2mqtt run --config <the credential copy of /etc/hub2mqtt/config.toml>`.
    let exec = one("ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert!(argv[0].starts_with('/') && argv[0].ends_with("/hub2mqtt"), "{rel}: ExecStart binary {}", argv[0]);
    assert_eq!(argv.get(1), Some(&"run"), "{rel}: ExecStart should run `hub2mqtt run`");
    let config_arg = argv.iter().position(|a| *a == "--config").and_then(|i| argv.get(i + 1));
    let config_arg = config_arg.unwrap_or_else(|| panic!("{rel}: ExecStart without --config"));
    let config_dir = one("ConfigurationDirectory");
    let (credential, source) =
        one("LoadCredential").split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap();
    assert_eq!(source, format!("/etc/{config_dir}/config.toml"), "{rel}: LoadCredential source");
    assert_eq!(*config_arg, format!("${{CREDENTIALS_DIRECTORY}}/{credential}"), "{rel}: --config");

    // State in StateDirectory, told to the program through its own environment override.
    let state_dir = one("StateDirectory");
    let env: Vec<(String, String)> = values("Environment")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cfg = load("", &pairs).unwrap_or_else(|e| panic!("{rel}: hub2mqtt rejects the unit's Environment=: {e}"));
    assert_eq!(cfg.bridge.state_dir, Path::new("/var/lib").join(&state_dir), "{rel}: state_dir vs StateDirectory");

    // Hardening.
    assert!(one("DynamicUser") == "yes" || !one("User").is_empty(), "{rel}: a dedicated user");
    for (key, expected) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(key), expected, "{rel}: {key}");
    }
    assert!(values("SystemCallFilter").contains(&"@system-service"), "{rel}: SystemCallFilter=@system-service");

    // systemd's own verdict, on a copy whose ExecStart is the binary cargo just built.
    let Some(version) = run("systemd-analyze", &["--version"], &repo()) else {
        skip("systemd-analyze verify", "systemd-analyze is not installed");
        return;
    };
    println!("{}", String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or_default());
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("hub2mqtt.service");
    let text =
        read(rel).replace(&format!("ExecStart={}", argv[0]), &format!("ExecStart={}", env!("CARGO_BIN_EXE_hub2mqtt")));
    std::fs::write(&copy, text).expect("write unit copy");
    let copy_arg = copy.to_str().expect("utf-8 path");
    let verify = run("systemd-analyze", &["verify", "--man=no", copy_arg], dir.path()).expect("systemd-analyze runs");
    let report = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    // verify exits 0 on unknown keys and unparsable values; it reports them with the unit's name.
    let complaints: Vec<&str> = report.lines().filter(|l| l.contains("hub2mqtt")).collect();
    assert!(verify.status.success() && complaints.is_empty(), "systemd-analyze verify {rel}:\n{report}");

    let help = run("systemd-analyze", &["security", "--help"], dir.path()).expect("systemd-analyze runs");
    if !String::from_utf8_lossy(&help.stdout).contains("--offline") {
        skip("systemd-analyze security", "this systemd has no --offline (systemd 250 or later)");
        return;
    }
    // Exposure 0.0 (best) to 10.0; below 2.5 is what systemd calls OK. --threshold is in tenths.
    let security =
        run("systemd-analyze", &["security", "--offline=true", "--threshold=25", "--no-pager", copy_arg], dir.path())
            .expect("systemd-analyze runs");
    let report = String::from_utf8_lossy(&security.stdout);
    let overall = report.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default();
    assert!(security.status.success(), "{rel}: exposure above 2.5: {overall}\n{report}");
    println!("systemd-analyze security: {}", overall.trim());
}

// ---------------------------------------------------------------------------------------------
// The command lines themselves.

/// The binary cargo built, without any HUB2MQTT_* variable of the caller's environment.
fn hub2mqtt_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hub2mqtt"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("HUB2MQTT_") || name == "RUST_LOG") {
        command.env_remove(name);
    }
    command
}

#[test]
fn the_binary_accepts_the_command_lines_the_deploy_files_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    // Port 1: nothing listens there, so the health check has a definite answer without a broker.
    std::fs::write(&config, "[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n").expect("write config");

    // The image: the config comes from HUB2MQTT_CONFIG, for `check-config` and for the HEALTHCHECK.
    let out = hub2mqtt_command().arg("check-config").env("HUB2MQTT_CONFIG", &config).output().expect("runs");
    assert!(out.status.success(), "check-config with HUB2MQTT_CONFIG: {}", String::from_utf8_lossy(&out.stderr));
    let out = hub2mqtt_command().arg("healthcheck").env("HUB2MQTT_CONFIG", &config).output().expect("runs");
    assert_eq!(out.status.code(), Some(1), "healthcheck without a broker must report unhealthy");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("unreachable"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // run.sh and the systemd unit: `<subcommand> --config FILE --log-level LEVEL`, for every level the
    // add-on offers (check-config takes the same arguments as run and returns).
    let schema = yaml(&format!("{ADDON}/config.yaml"))["schema"]["log_level"].as_str().unwrap_or_default().to_owned();
    let levels = schema.trim_start_matches("list(").trim_end_matches(')');
    for level in levels.split('|') {
        let config_arg = config.to_str().expect("utf-8 path");
        let out = hub2mqtt_command()
            .args(["check-config", "--config", config_arg, "--log-level", level])
            .output()
            .expect("runs");
        assert!(out.status.success(), "--log-level {level}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

// ---------------------------------------------------------------------------------------------
// Home Assistant add-on.

const ADDON: &str = "deploy/homeassistant-addon";

/// The Supervisor's option types (supervisor/addons/options.py, RE_SCHEMA_ELEMENT).
fn schema_type_is_valid(typ: &str) -> bool {
    let typ = typ.strip_suffix('?').unwrap_or(typ);
    let (name, args) = match typ.split_once('(') {
        Some((name, rest)) => match rest.strip_suffix(')') {
            Some(args) => (name, Some(args)),
            None => return false,
        },
        None => (typ, None),
    };
    let range = |a: &str| {
        a.split_once(',').is_some_and(|(lo, hi)| lo.chars().chain(hi.chars()).all(|c| c.is_ascii_digit() || c == '.'))
    };
    match (name, args) {
        ("bool" | "email" | "url" | "port" | "device" | "str" | "password" | "int" | "float", None) => true,
        ("str" | "password" | "int" | "float", Some(a)) => range(a),
        ("match", Some(a)) => !a.is_empty(),
        ("list", Some(a)) => a.split('|').all(|item| !item.is_empty()),
        ("device", Some(a)) => a.starts_with("subsystem="),
        _ => false,
    }
}

/// Whether `value` is a valid default for `typ` (regular expressions are checked separately).
fn default_fits(typ: &str, value: &Value) -> bool {
    let typ = typ.strip_suffix('?').unwrap_or(typ);
    let name = typ.split('(').next().unwrap_or_default();
    match name {
        "str" | "password" | "email" | "url" | "match" | "device" => value.is_string(),
        "bool" => value.is_boolean(),
        "int" | "float" | "port" => value.is_number(),
        "list" => {
            let items = typ.trim_start_matches("list(").trim_end_matches(')');
            value.as_str().is_some_and(|v| items.split('|').any(|i| i == v))
        }
        _ => false,
    }
}

/// Walks options against schema the way the Supervisor validates them; returns the problems and
/// the `(path, pattern, default)` of every match() leaf that has a default.
fn check_options(
    options: &Value,
    schema: &Value,
    path: &str,
    depth: usize,
    problems: &mut Vec<String>,
    patterns: &mut Vec<(String, String, String)>,
) {
    let (Some(options), Some(schema)) = (options.as_object(), schema.as_object()) else {
        problems.push(format!("{path}: options and schema must both be maps"));
        return;
    };
    for (key, value) in options {
        let at = format!("{path}{key}");
        match schema.get(key) {
            None => problems.push(format!("{at}: in options but not in schema")),
            Some(Value::Object(_)) if depth >= 2 => problems.push(format!("{at}: nested deeper than two levels")),
            Some(nested @ Value::Object(_)) => {
                check_options(value, nested, &format!("{at}."), depth + 1, problems, patterns)
            }
            Some(Value::String(typ)) => {
                if !default_fits(typ, value) {
                    problems.push(format!("{at}: default {value} does not fit {typ}"));
                }
                if let (Some(re), Some(v)) = (typ.trim_end_matches('?').strip_prefix("match("), value.as_str()) {
                    patterns.push((at, re.trim_end_matches(')').to_owned(), v.to_owned()));
                }
            }
            Some(other) => problems.push(format!("{at}: unsupported schema {other}")),
        }
    }
    for (key, typ) in schema {
        let at = format!("{path}{key}");
        match typ {
            Value::String(t) if !schema_type_is_valid(t) => problems.push(format!("{at}: unknown type {t}")),
            Value::String(t) if !t.ends_with('?') && !options.contains_key(key) => {
                problems.push(format!("{at}: required ({t}) but has no default in options"))
            }
            Value::Object(_) if !options.contains_key(key) => problems
                .push(format!("{at}: a nested schema needs an entry in options (the Supervisor rejects it missing)")),
            _ => {}
        }
    }
}

#[test]
fn addon_manifest_follows_the_supervisor_rules() {
    let rel = format!("{ADDON}/config.yaml");
    let manifest = yaml(&rel);
    for key in ["name", "version", "slug", "description", "arch"] {
        assert!(!manifest[key].is_null(), "{rel}: required key {key} missing");
    }
    assert_eq!(manifest["version"], package("version").as_str(), "{rel}: version should be the crate's");
    let arch = string_list(&manifest["arch"]);
    assert!(!arch.is_empty(), "{rel}: arch");
    for a in &arch {
        // armhf, armv7 and i386 are deprecated by the Supervisor; the base image has no 32-bit builds.
        assert!(matches!(a.as_str(), "aarch64" | "amd64"), "{rel}: unsupported arch {a}");
    }
    assert!(string_list(&manifest["services"]).contains(&"mqtt:need".to_owned()), "{rel}: services: mqtt:need");
    assert_eq!(manifest["init"], false, "{rel}: init must be false with the s6-overlay v3 base image");

    let mut problems = Vec::new();
    let mut patterns = Vec::new();
    check_options(&manifest["options"], &manifest["schema"], "", 0, &mut problems, &mut patterns);
    assert!(problems.is_empty(), "{rel}:\n{}", problems.join("\n"));
    let log_levels = manifest["schema"]["log_level"].as_str().unwrap_or_default();
    assert_eq!(log_levels, "list(error|warn|info|debug|trace)", "{rel}: log_level choices");

    // Every schema entry has a name in the UI translation, and the translation names nothing else.
    let translations = yaml(&format!("{ADDON}/translations/en.yaml"));
    let names = translations["configuration"].as_object().expect("translations: configuration");
    let schema = manifest["schema"].as_object().expect("schema");
    for key in schema.keys().chain(names.keys()) {
        assert!(schema.contains_key(key) && names.contains_key(key), "translations/en.yaml vs schema: {key}");
        if let Some(nested) = schema[key].as_object() {
            let fields = names[key]["fields"].as_object().unwrap_or_else(|| panic!("translations: {key}.fields"));
            for field in nested.keys().chain(fields.keys()) {
                assert!(
                    nested.contains_key(field) && fields.contains_key(field),
                    "translations vs schema: {key}.{field}"
                );
            }
        }
    }

    // Defaults of match() options against their patterns, with jq's regular expressions.
    if run("jq", &["--version"], &repo()).is_none() {
        skip("add-on match() defaults", "jq is not installed");
        return;
    }
    for (at, pattern, value) in patterns {
        let out = run("jq", &["-n", "--arg", "v", &value, "--arg", "re", &pattern, "$v | test($re)"], &repo()).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true", "{rel}: {at} default {value:?} vs {pattern}");
    }
}

#[test]
fn addon_image_installs_what_the_run_script_uses() {
    let rel = format!("{ADDON}/Dockerfile");
    let all = dockerfile(&rel);
    let version = arg_default(&all, "BUILD_VERSION").expect("ARG BUILD_VERSION=<version>");
    assert_eq!(version, package("version"), "{rel}: BUILD_VERSION default");
    let froms = args_of(&all, "FROM");
    let builder = froms[0].split_whitespace().next().unwrap_or_default();
    let rust = builder.strip_prefix("rust:").unwrap_or_else(|| panic!("{rel}: build stage {builder}"));
    assert!(major_minor(rust) >= major_minor(&package("rust-version")), "{rel}: {builder} is older than rust-version");
    assert_eq!(
        arg_default(&all, "HUB2MQTT_GIT").as_deref(),
        Some(package("repository").as_str()),
        "{rel}: the source should be Cargo.toml's repository"
    );
    let stage = final_stage(&all);
    assert!(stage[0].args.starts_with("ghcr.io/home-assistant/base:"), "{rel}: runtime base {}", stage[0].args);
    assert!(args_of(stage, "LABEL").iter().any(|l| l.contains("io.hass.type=\"addon\"")), "{rel}: io.hass.type label");
    let cmd = exec_form(&rel, "CMD", args_of(stage, "CMD").last().expect("CMD"));
    assert_eq!(cmd, ["/run.sh"], "{rel}: CMD");

    // run.sh reads the filter where the image puts it and runs the binary the image installs.
    let script = read(&format!("{ADDON}/run.sh"));
    assert!(script.starts_with("#!/usr/bin/with-contenv bashio\n"), "run.sh: bashio shebang");
    let copies: Vec<(String, String)> = args_of(stage, "COPY")
        .iter()
        .map(|a| {
            let words: Vec<&str> = a.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            (words[0].to_owned(), words[words.len() - 1].to_owned())
        })
        .collect();
    let dest_of = |src: &str| copies.iter().find(|(s, _)| s.ends_with(src)).map(|(_, d)| d.clone());
    let filter = dest_of("options-to-config.jq").unwrap_or_else(|| panic!("{rel}: options-to-config.jq not copied"));
    assert!(script.contains(&format!("readonly FILTER={filter}\n")), "run.sh should read the filter at {filter}");
    assert_eq!(dest_of("run.sh").as_deref(), Some("/run.sh"), "{rel}: run.sh");
    let binary = dest_of("hub2mqtt").unwrap_or_else(|| panic!("{rel}: the hub2mqtt binary is not copied"));
    assert!(["/usr/bin/", "/usr/local/bin/"].iter().any(|d| binary.starts_with(d)), "{rel}: {binary} is not on PATH");
    assert!(script.contains("readonly CONFIG=/data/config.toml\n"), "run.sh: config path");
    assert!(script.contains("bashio::services \"mqtt\" \"host\""), "run.sh: broker from the Supervisor");
    let exec = script.lines().find(|l| l.starts_with("exec ")).expect("run.sh execs hub2mqtt");
    assert_eq!(
        exec, "exec hub2mqtt run --config \"${CONFIG}\" --log-level \"$(bashio::config \"log_level\")\"",
        "run.sh: the last line runs hub2mqtt with the generated config"
    );
}

/// `(section, key)` of every key config.example.toml documents (commented-out entries included).
fn documented_keys() -> BTreeSet<(String, String)> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in read("config.example.toml").lines() {
        let line = line.trim().trim_start_matches('#').trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split_once("]]")).map(|(n, _)| n) {
            section = name.to_owned();
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split_once(']')).map(|(n, _)| n) {
            section = name.to_owned();
        } else if !section.is_empty() {
            // `key = value`, and alternatives in its comment: `email = "..."   # or phone = "..."`.
            let mut candidates = vec![line.split(" = ").next().unwrap_or_default()];
            candidates.extend(line.split(" or ").skip(1).filter_map(|alt| alt.split(" = ").next()));
            for key in candidates.into_iter().filter(|k| line.contains(&format!("{k} = "))) {
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    keys.insert((section.clone(), key.to_owned()));
                }
            }
        }
    }
    keys
}

/// `(section, key)` of every key the add-on's jq filter writes.
fn keys_written_by_filter(filter: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in filter.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if let Some(rest) = line.split("\"[").nth(1) {
            section = rest.trim_start_matches('[').split(']').next().unwrap_or_default().to_owned();
        }
        for call in ["entry(\"", "entry_if_set(\""] {
            for piece in line.split(call).skip(1) {
                keys.push((section.clone(), piece.split('"').next().unwrap_or_default().to_owned()));
            }
        }
    }
    keys
}

fn run_filter(options: &Value, service: [&str; 3]) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let options_path = dir.path().join("options.json");
    std::fs::write(&options_path, options.to_string()).expect("write options");
    let filter = repo().join(ADDON).join("options-to-config.jq");
    let args = [
        "--raw-output",
        "--arg",
        "service_url",
        service[0],
        "--arg",
        "service_username",
        service[1],
        "--arg",
        "service_password",
        service[2],
        "--from-file",
        filter.to_str().unwrap(),
        options_path.to_str().unwrap(),
    ];
    let out = run("jq", &args, dir.path()).expect("jq runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("utf-8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn addon_options_become_a_valid_hub2mqtt_config() {
    let filter_rel = format!("{ADDON}/options-to-config.jq");
    let documented = documented_keys();
    let written = keys_written_by_filter(&read(&filter_rel));
    assert!(written.len() >= 15, "{filter_rel}: found only {written:?}");
    for (section, key) in &written {
        assert!(
            documented.contains(&(section.clone(), key.clone())),
            "{filter_rel} writes {section}.{key}, which config.example.toml does not document"
        );
    }

    if run("jq", &["--version"], &repo()).is_none() {
        skip("add-on options → config.toml", "jq is not installed");
        return;
    }
    let defaults = yaml(&format!("{ADDON}/config.yaml"))["options"].clone();
    let service = ["mqtt://core-mosquitto:1883", "addons", "pw from the \"Supervisor\" \\ ü"];

    // Default options and the Supervisor's broker: a config with no hubs that hub2mqtt accepts.
    let text = run_filter(&defaults, service).unwrap_or_else(|e| panic!("{filter_rel} on the default options: {e}"));
    let cfg = load(&text, &[]).unwrap_or_else(|e| panic!("hub2mqtt rejects the default add-on config: {e}\n{text}"));
    let endpoint = cfg.mqtt.endpoint().unwrap();
    assert_eq!((endpoint.host.as_str(), endpoint.port), ("core-mosquitto", 1883));
    assert_eq!(cfg.mqtt.username.as_deref(), Some("addons"));
    assert_eq!(cfg.mqtt.password.as_ref().map(|p| p.expose()), Some(service[2]), "the password survives TOML quoting");
    assert_eq!((cfg.mqtt.base_topic.as_str(), cfg.mqtt.discovery_prefix.as_str()), ("hub2mqtt", "homeassistant"));
    assert_eq!(cfg.bridge.state_dir, Path::new("/data/state"), "the add-on keeps state under /data like the image");
    assert!(cfg.ikuai.is_empty() && cfg.ewelink.is_empty(), "no hub until its options are filled in");
    let program = MqttConfig::default();
    assert_eq!(defaults["base_topic"], program.base_topic.as_str(), "add-on vs program default base_topic");
    assert_eq!(defaults["discovery_prefix"], program.discovery_prefix.as_str(), "add-on vs program discovery_prefix");

    // A router, an eWeLink account (phone login) and another broker: each value lands on its key.
    let mut filled = defaults.clone();
    filled["mqtt"] = json!({"url": "mqtts://broker.lan:8883", "username": "me", "password": "broker pw"});
    filled["base_topic"] = json!("home/bridge");
    filled["ikuai"] = json!({
        "url": "https://192.168.9.1", "username": "admin", "password": "r\"o\\u\tter 路由器",
        "insecure_tls": true, "track_clients": true, "id": "office"
    });
    filled["ewelink"] = json!({
        "api": "v1", "region": "eu", "app_id": "app-id-1", "app_secret": "app secret 2",
        "email": "", "phone": "+8613800000000", "password": "cloud pw 3"
    });
    let text = run_filter(&filled, service).unwrap_or_else(|e| panic!("{filter_rel} on filled options: {e}"));
    let cfg = load(&text, &[]).unwrap_or_else(|e| panic!("hub2mqtt rejects a filled add-on config: {e}\n{text}"));
    let endpoint = cfg.mqtt.endpoint().unwrap();
    assert_eq!((endpoint.host.as_str(), endpoint.port, endpoint.tls), ("broker.lan", 8883, true), "mqtt.url wins");
    assert_eq!(cfg.mqtt.username.as_deref(), Some("me"));
    assert_eq!(cfg.mqtt.password.as_ref().map(|p| p.expose()), Some("broker pw"));
    assert_eq!(cfg.mqtt.base_topic, "home/bridge");
    let router = &cfg.ikuai[..];
    assert_eq!(router.len(), 1);
    assert_eq!((router[0].id.as_str(), router[0].url.as_str()), ("office", "https://192.168.9.1"));
    assert_eq!(router[0].password.as_ref().map(|p| p.expose()), Some("r\"o\\u\tter 路由器"));
    assert!(router[0].insecure_tls && router[0].track_clients);
    let account = &cfg.ewelink[..];
    assert_eq!(account.len(), 1);
    assert_eq!((account[0].id.as_str(), account[0].api, account[0].region), ("home", EwelinkApi::V1, Region::Eu));
    assert_eq!(account[0].app_id, "app-id-1");
    assert_eq!(account[0].app_secret.as_ref().map(|s| s.expose()), Some("app secret 2"));
    assert_eq!((account[0].email.as_deref(), account[0].phone.as_deref()), (None, Some("+8613800000000")));
    assert_eq!(account[0].password.as_ref().map(|p| p.expose()), Some("cloud pw 3"));

    // A router without its password: hub2mqtt names the missing key.
    let mut incomplete = defaults.clone();
    incomplete["ikuai"]["url"] = json!("http://192.168.9.1");
    let text = run_filter(&incomplete, service).expect("filter runs");
    let err = load(&text, &[]).expect_err("a router without a password is refused");
    assert!(err.contains("ikuai[0].password"), "{err}");

    // No broker at all: the filter refuses with a message instead of writing a config that cannot work.
    let err = run_filter(&defaults, ["", "", ""]).expect_err("no broker is an error");
    assert!(err.contains("no MQTT broker"), "{err}");
}
