use std::path::Path;

use super::*;
use crate::metrics::Metrics;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn files(cert: &str, key: &str) -> CertFiles {
    CertFiles {
        cert: fixture(cert),
        key: fixture(key),
    }
}

#[test]
fn a_certificate_and_its_key_load_with_the_expiry() {
    let loaded = files("client.pem", "client.key").load().unwrap();
    // `openssl x509 -enddate -noout -in client.pem`: Nov  5 10:24:53 2126 GMT.
    assert_eq!(loaded.not_after, Some(4_949_547_893));
    assert_eq!(loaded.key.cert.len(), 1);
}

#[test]
fn what_does_not_load_is_named_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            files("client.pem", "other.key"),
            "is not the key of the first certificate",
        ),
        (
            CertFiles {
                cert: garbage.clone(),
                key: fixture("client.key"),
            },
            "garbage.pem",
        ),
        (
            CertFiles {
                cert: missing.clone(),
                key: fixture("client.key"),
            },
            "missing.pem",
        ),
        (
            CertFiles {
                cert: fixture("client.pem"),
                key: fixture("client.pem"),
            },
            "no usable private key",
        ),
    ];
    for (files, expected) in cases {
        let error = files.load().unwrap_err();
        assert!(error.contains(expected), "{files:?}: {error}");
    }
}

fn certificates() -> (Certificates, Metrics) {
    let metrics = Metrics::new(1);
    let labels = HandshakeOutcome::ALL.map(HandshakeOutcome::label);
    let certificates = Certificates::new(metrics.tls("ingest", &labels));
    (certificates, metrics)
}

#[test]
fn a_failed_reload_keeps_the_certificate_and_is_counted() {
    let (certificates, metrics) = certificates();
    assert!(!certificates.is_set());
    certificates.reloaded("c", files("client.pem", "client.key").load());
    assert!(certificates.is_set());
    let before = certificates
        .current
        .read()
        .unwrap()
        .clone()
        .expect("a certificate");
    certificates.reloaded("c", files("client.pem", "other.key").load());
    let after = certificates
        .current
        .read()
        .unwrap()
        .clone()
        .expect("a certificate");
    assert!(Arc::ptr_eq(&before, &after), "the old certificate is kept");
    let text = metrics.render();
    for line in [
        r#"hydrant_reloads_total{outcome="ok",target="tls_certificate"} 1"#,
        r#"hydrant_reloads_total{outcome="failed",target="tls_certificate"} 1"#,
        r#"hydrant_tls_certificate_not_after_seconds{listener="ingest"} 4949547893"#,
        r#"hydrant_tls_handshakes_total{outcome="timed_out"} 0"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[test]
fn handshake_outcomes_have_their_labels() {
    let labels: Vec<&str> = HandshakeOutcome::ALL.iter().map(|o| o.label()).collect();
    assert_eq!(labels, ["ok", "failed", "timed_out", "acme_challenge"]);
}

#[test]
fn the_server_offers_http1_and_acme_only_when_asked() {
    let (certificates, _) = certificates();
    let certificates = Arc::new(certificates);
    let plain = server_config(Arc::clone(&certificates), false).unwrap();
    assert_eq!(plain.alpn_protocols, [ALPN_HTTP1.to_vec()]);
    let acme = server_config(certificates, true).unwrap();
    assert_eq!(
        acme.alpn_protocols,
        [ALPN_HTTP1.to_vec(), ALPN_ACME_TLS.to_vec()]
    );
}
