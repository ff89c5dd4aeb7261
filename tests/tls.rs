//! MQTT over TLS: `mqtts://` with the user's CA file, with a client certificate, and a wrong CA, which
//! must give a clear error and a calm retry, not a crash loop.

mod support;

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use support::{BridgeProcess, TestBroker, TlsFiles, WAIT, Watcher};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Writes `<name>.pem` and, for keys, `<name>.key`.
fn write(dir: &Path, name: &str, pem: &str) {
    std::fs::write(dir.join(name), pem).unwrap();
}

/// A test CA, a server certificate for 127.0.0.1 signed by it, a client certificate, and an unrelated CA.
fn make_pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = |cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    };
    let (ca_pem, issuer) = ca("hub2mqtt test CA");
    write(dir.path(), "ca.pem", &ca_pem);
    let (other_pem, _) = ca("some other CA");
    write(dir.path(), "other-ca.pem", &other_pem);

    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    write(dir.path(), "server.pem", &server.signed_by(&server_key, &issuer).unwrap().pem());
    write(dir.path(), "server.key", &server_key.serialize_pem());

    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.distinguished_name.push(DnType::CommonName, "hub2mqtt");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    write(dir.path(), "client.pem", &client.signed_by(&client_key, &issuer).unwrap().pem());
    write(dir.path(), "client.key", &client_key.serialize_pem());
    Pki { dir }
}

fn tls_files(pki: &Pki, require_client_cert: bool) -> TlsFiles {
    TlsFiles { ca: pki.path("ca.pem"), cert: pki.path("server.pem"), key: pki.path("server.key"), require_client_cert }
}

fn config(broker: &TestBroker, dir: &Path, extra: &str) -> String {
    format!(
        "[mqtt]\nurl = \"{}\"\nclient_id = \"{}\"\nkeep_alive_s = 5\n{extra}\n[bridge]\nstate_dir = \"{}\"\n",
        broker.tls_url(),
        support::unique("tls"),
        dir.join("state").display()
    )
}

#[tokio::test]
async fn mqtts_with_the_users_ca_file() {
    let pki = make_pki();
    let broker = TestBroker::start_with_tls(tls_files(&pki, false));
    let mut watcher = Watcher::connect(&broker, &["hub2mqtt/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("ca_file = \"{}\"", pki.path("ca.pem").display());
    let mut bridge = BridgeProcess::start(dir.path(), &config(&broker, dir.path(), &extra), "info");
    watcher.expect_where("hub2mqtt/bridge/state", |m| m.text() == "online", WAIT).await;
    watcher.expect("hub2mqtt/bridge/info", WAIT).await;
    bridge.signal("TERM");
    watcher.expect_where("hub2mqtt/bridge/state", |m| m.text() == "offline", WAIT).await;
    assert_eq!(bridge.wait(WAIT), Some(0), "{}", bridge.log());
}

#[tokio::test]
async fn mqtts_with_a_client_certificate() {
    let pki = make_pki();
    let broker = TestBroker::start_with_tls(tls_files(&pki, true));
    let mut watcher = Watcher::connect(&broker, &["hub2mqtt/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display()
    );
    let _bridge = BridgeProcess::start(dir.path(), &config(&broker, dir.path(), &extra), "info");
    watcher.expect_where("hub2mqtt/bridge/state", |m| m.text() == "online", WAIT).await;
}

#[tokio::test]
async fn a_wrong_ca_gives_a_clear_error_and_calm_retries() {
    let pki = make_pki();
    let broker = TestBroker::start_with_tls(tls_files(&pki, false));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("ca_file = \"{}\"", pki.path("other-ca.pem").display());
    let mut bridge = BridgeProcess::start(dir.path(), &config(&broker, dir.path(), &extra), "info");
    // Wait (by reading the log) for the third failed attempt.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while bridge.log().matches("MQTT connection").count() < 3 {
        assert!(std::time::Instant::now() < deadline, "no retries logged:\n{}", bridge.log());
        assert_eq!(bridge.child.try_wait().unwrap(), None, "the bridge exited:\n{}", bridge.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = bridge.log();
    assert!(log.contains("TLS error") && log.contains("mqtt.ca_file"), "the error names the cause:\n{log}");
    assert!(log.contains("retrying in"), "{log}");
    assert!(log.contains("attempt=3"), "attempts are counted:\n{log}");
    bridge.signal("TERM");
    assert_eq!(bridge.wait(WAIT), Some(0), "stops cleanly even while never connected:\n{}", bridge.log());
}
