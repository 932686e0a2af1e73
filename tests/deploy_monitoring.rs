//! The monitoring files under `deploy/`, checked against the real tools and the
//! real binary: the alert rules by `promtool check rules` and their unit tests by
//! `promtool test rules`; the Grafana dashboard by its shape, and every PromQL
//! expression in it by a real Prometheus that scrapes a real `hydrant` serving
//! HTTPS, after deliveries of captured CloudWatch Logs, Metric Streams and
//! CloudTrail bodies, a bad record, a retry, a wrong key and a plain-HTTP client.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package, which
//! `.ci/test` installs. Without them these tests say so and pass, unless the
//! variable `CI` is set: then they fail.

mod common;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use serde_json::Value;

use common::process::{Hydrant, Stderr, hydrant};
use common::{body_of, fixture};

const KEY: &str = "monitoring-test-key==";
const SOURCE_ARN: &str = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/monitoring";
/// The scrape job the alert rules expect (`up{job="hydrant"}`).
const JOB: &str = "hydrant";
/// How long Prometheus may take to start, scrape and answer.
const PROMETHEUS_LIMIT: Duration = Duration::from_secs(60);

/// Whether `tool` can be run (see [`common::installed`]: with `CI` set, a missing
/// tool fails the test).
fn available(tool: &str) -> bool {
    common::installed(tool, "--version")
}

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `promtool` with `args` in `deploy/prometheus`; fails the test, with what
/// promtool said, unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(repository("deploy/prometheus"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {args:?} ({}):\n{said}",
        output.status
    );
    said
}

/// The alert names of the rules file, in order.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// The rules parse, each alert carries what an operator needs, and promtool's unit
/// tests pass; each alert has a test where it fires and one where it stays quiet.
#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let rules =
        std::fs::read_to_string(repository("deploy/prometheus/hydrant-alerts.yml")).unwrap();
    let alerts = alert_names(&rules);
    assert!(alerts.len() >= 12, "{alerts:?}");

    // Each alert's block, from its `- alert:` line to the next one.
    let blocks: Vec<&str> = rules.split("- alert:").skip(1).collect();
    assert_eq!(blocks.len(), alerts.len());
    for (name, block) in alerts.iter().zip(&blocks) {
        for needed in [
            "expr:",
            "for:",
            "severity:",
            "summary:",
            "description:",
            "runbook:",
        ] {
            assert!(block.contains(needed), "{name} has no `{needed}`");
        }
        assert!(
            block.contains("severity: critical") || block.contains("severity: warning"),
            "{name}: severity is neither critical nor warning"
        );
    }

    // Every alert is tested both ways: `exp_alerts: []` after its name is a test
    // where it must stay quiet, `exp_alerts:` followed by an alert one where it
    // must fire.
    let tests =
        std::fs::read_to_string(repository("deploy/prometheus/hydrant-alerts.test.yml")).unwrap();
    let mut quiet = BTreeSet::new();
    let mut fires = BTreeSet::new();
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for (at, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        match lines.get(at + 1) {
            Some(&"exp_alerts: []") => quiet.insert(name.trim().to_owned()),
            Some(&"exp_alerts:") => fires.insert(name.trim().to_owned()),
            other => panic!("alertname {name} followed by {other:?}"),
        };
    }
    let all: BTreeSet<String> = alerts.iter().cloned().collect();
    assert_eq!(fires, all, "alerts without a test where they fire");
    assert_eq!(quiet, all, "alerts without a test where they stay quiet");

    if !available("promtool") {
        return;
    }
    let checked = promtool(&["check", "rules", "hydrant-alerts.yml"]);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{checked}"
    );
    let tested = promtool(&["test", "rules", "hydrant-alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// promtool's unit tests can fail: the rules with the 503 ratio's threshold
/// raised above the tests' 10% no longer fire where the tests say they do.
#[test]
fn the_alert_unit_tests_catch_a_wrong_threshold() {
    if !available("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules =
        std::fs::read_to_string(repository("deploy/prometheus/hydrant-alerts.yml")).unwrap();
    let changed = rules.replacen("> 0.05", "> 0.2", 1);
    assert_ne!(changed, rules);
    std::fs::write(dir.path().join("hydrant-alerts.yml"), changed).unwrap();
    std::fs::copy(
        repository("deploy/prometheus/hydrant-alerts.test.yml"),
        dir.path().join("hydrant-alerts.test.yml"),
    )
    .unwrap();
    let output = Command::new("promtool")
        .args(["test", "rules", "hydrant-alerts.test.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("HydrantServerErrors"), "{said}");
}

/// The dashboard, parsed.
fn dashboard() -> Value {
    serde_json::from_slice(&std::fs::read(repository("deploy/grafana/hydrant.json")).unwrap())
        .unwrap()
}

/// Every panel of the dashboard, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        all.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            all.extend(inner);
        }
    }
    all
}

/// Every PromQL expression of the dashboard's panels, with the panel's title.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |target| {
                    let expr = target["expr"].as_str().expect("a target without expr");
                    (title.clone(), expr.to_owned())
                })
        })
        .collect()
}

/// The dashboard has what Grafana's import needs and what this one promises: a
/// schema version, unique panel ids, the `datasource`, `job` and `instance`
/// variables, and every panel and query reading `${datasource}`.
#[test]
fn the_dashboard_is_importable() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let panels = panels(&dashboard);
    let ids: Vec<u64> = panels
        .iter()
        .map(|panel| panel["id"].as_u64().expect("a panel without an id"))
        .collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "panel ids repeat: {ids:?}");
    for panel in &panels {
        let grid = &panel["gridPos"];
        for key in ["h", "w", "x", "y"] {
            assert!(grid[key].is_u64(), "{}: gridPos.{key}", panel["title"]);
        }
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        let ref_ids: BTreeSet<&str> = targets
            .iter()
            .map(|target| target["refId"].as_str().unwrap())
            .collect();
        assert_eq!(ref_ids.len(), targets.len(), "{}", panel["title"]);
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}");
        }
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variable| variable["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance"]);
    // Every query is narrowed to the chosen job and instances.
    for (title, expr) in expressions(&dashboard) {
        assert!(
            expr.contains(r#"job=~"$job""#) && expr.contains(r#"instance=~"$instance""#),
            "{title}: {expr}"
        );
    }
}

/// Dashboard queries allowed to return nothing in this run, and why. They must
/// still parse.
const MAY_BE_EMPTY: &[(&str, &str)] = &[(
    "hydrant_sink_reshaped_total",
    "only s3, nats and kafka sinks reshape events and have these series; this run has \
     a file, a prometheus and a remote_write sink",
)];

/// `text` percent-encoded for a URL's query.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// Prometheus's answer to the instant query `query`, parsed.
fn query(prometheus: SocketAddr, query: &str) -> Value {
    let path = format!("/api/v1/query?query={}", encode(query));
    let (status, body) =
        common::http_get(prometheus, &path).unwrap_or_else(|| panic!("no answer to {query}"));
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("{query}: {status} {error}: {body}"))
}

/// The sum of the values of `query`'s result, when it has one.
fn total(prometheus: SocketAddr, expr: &str) -> Option<f64> {
    let answer = query(prometheus, expr);
    let result = answer["data"]["result"].as_array()?;
    if result.is_empty() {
        return None;
    }
    Some(
        result
            .iter()
            .map(|sample| sample["value"][1].as_str().unwrap().parse::<f64>().unwrap())
            .sum(),
    )
}

/// A Prometheus process, killed when dropped (a failed assertion included).
struct Prometheus {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on `address`, taking remote writes, scraping Hydrant's
    /// `/metrics` on `admin` every second as job [`JOB`], and waits until it is
    /// ready.
    fn start(address: SocketAddr, admin: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: {JOB}\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: [\"{admin}\"]\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let prometheus = Self {
            child,
            address,
            _dir: dir,
        };
        let deadline = Instant::now() + PROMETHEUS_LIMIT;
        while common::http_get(address, "/-/ready").map(|(status, _)| status) != Some(200) {
            assert!(Instant::now() < deadline, "Prometheus not ready in time");
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Trusts exactly one certificate: the one the test gave Hydrant (a test
/// certificate without the server's name in it), checking the handshake's
/// signatures as usual.
#[derive(Debug)]
struct Pinned {
    certificate: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTPS client for Hydrant's ingest listener.
struct Client {
    config: Arc<ClientConfig>,
    address: SocketAddr,
}

impl Client {
    fn new(address: SocketAddr, certificate: &Path) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificate = CertificateDer::pem_file_iter(certificate)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                certificate,
                provider,
            }))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            config: Arc::new(config),
            address,
        }
    }

    /// POSTs `body` as a Firehose delivery with request id `id` and access key
    /// `key`, on a new connection: the status and the reply.
    fn deliver(&self, id: &str, body: &[u8], key: &str) -> (u16, String) {
        let server_name = ServerName::IpAddress(self.address.ip().into());
        let connection = ClientConnection::new(Arc::clone(&self.config), server_name).unwrap();
        let tcp = TcpStream::connect(self.address).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut tls = StreamOwned::new(connection, tcp);
        let head = format!(
            "POST /firehose HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\nX-Amz-Firehose-Protocol-Version: 1.0\r\n\
             X-Amz-Firehose-Request-Id: {id}\r\nX-Amz-Firehose-Source-Arn: {SOURCE_ARN}\r\n\
             X-Amz-Firehose-Access-Key: {key}\r\n\r\n",
            self.address,
            body.len()
        );
        tls.write_all(head.as_bytes()).unwrap();
        tls.write_all(body).unwrap();
        tls.flush().unwrap();
        let mut reply = Vec::new();
        // The server closes after the answer (`Connection: close`), with or
        // without a close_notify.
        let _ = tls.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let status = reply
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {reply:?}"));
        (status, reply.split_once("\r\n\r\n").unwrap().1.to_owned())
    }

    /// Delivers a captured request body (its own request id) until Hydrant
    /// answers 200, for at most 30 s (a remote_write sink is down until its probe
    /// reaches the receiver).
    fn deliver_until_stored(&self, body: &[u8]) {
        let parsed: Value = serde_json::from_slice(body).unwrap();
        let id = parsed["requestId"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, reply) = self.deliver(id, body, KEY);
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "{status} {reply}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A CloudTrail management event as an EventBridge rule hands it to Firehose.
const CLOUDTRAIL_BY_EVENTBRIDGE: &str = concat!(
    r#"{"version":"0","id":"3f1c2b4a-9d8e-4f70-8a6b-5c4d3e2f1a00","detail-type":"AWS API Call via CloudTrail","#,
    r#""source":"aws.s3","account":"123456789012","time":"2026-11-29T12:00:00Z","region":"eu-west-1","resources":[],"#,
    r#""detail":{"eventVersion":"1.09","eventSource":"s3.amazonaws.com","eventName":"CreateBucket","#,
    r#""eventTime":"2026-11-29T12:00:00Z","awsRegion":"eu-west-1","sourceIPAddress":"198.51.100.7","#,
    r#""userIdentity":{"type":"IAMUser","accountId":"123456789012"},"requestParameters":{"bucketName":"monitoring"},"#,
    r#""eventType":"AwsApiCall","recipientAccountId":"123456789012"}}"#,
    "\n"
);

/// Hydrant's configuration for the run: metric events to a `prometheus` sink and
/// to a `remote_write` sink writing to the test's Prometheus, everything else to
/// the file sink.
fn hydrant_config(remote_write: SocketAddr) -> String {
    format!(
        r#"[[sinks]]
name = "cloudwatch"
type = "prometheus"

[[sinks]]
name = "prom"
type = "remote_write"
url = "http://{remote_write}/api/v1/write"

[[routes]]
kind = "metric"
sinks = ["cloudwatch", "prom"]

[routing]
default_sinks = ["file"]
"#
    )
}

/// A real Prometheus scrapes a real Hydrant that has served HTTPS deliveries of
/// every kind, and answers every query of the dashboard, its variables put in,
/// with data (but for [`MAY_BE_EMPTY`], which must still parse).
#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    if !available("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prometheus_address: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let config = dir.path().join("hydrant.toml");
    std::fs::write(&config, hydrant_config(prometheus_address)).unwrap();
    let certificate = repository("tests/fixtures/tls/client.pem");
    let server = Hydrant::spawn(
        hydrant()
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .arg("--access-key")
            .arg(format!("monitoring={KEY}"))
            .arg("--tls-cert")
            .arg(&certificate)
            .arg("--tls-key")
            .arg(repository("tests/fixtures/tls/client.key")),
        Stderr::Read,
    );
    let prometheus = Prometheus::start(prometheus_address, server.admin);
    let client = Client::new(server.ingest, &certificate);

    // CloudWatch Logs, twice (the second a retry, answered as a duplicate).
    let logs = fixture("alloy/cw_logs_with_only_data_messages.json");
    client.deliver_until_stored(&logs);
    client.deliver_until_stored(&logs);
    // A captured metric stream, to the prometheus and remote_write sinks.
    client.deliver_until_stored(&fixture("telegraf/record.json"));
    // A point of a series, then an older point of the same series, which the
    // receiver refuses as out of order (samples rejected; the delivery is stored).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for (id, time_ms) in [
        ("5e0b1f0e-3c1a-4f7e-9a59-1d2f3a4b5c01", now_ms - 60_000),
        ("5e0b1f0e-3c1a-4f7e-9a59-1d2f3a4b5c02", now_ms - 120_000),
    ] {
        let point = format!(
            r#"{{"metric_stream_name":"monitoring","account_id":"123456789012","region":"eu-west-1","namespace":"AWS/EC2","metric_name":"NetworkIn","dimensions":{{"InstanceId":"i-0123456789abcdef0"}},"timestamp":{time_ms},"value":{{"sum":100.0,"count":4.0}},"unit":"Bytes"}}"#
        );
        client.deliver_until_stored(body_of(id, &[format!("{point}\n").as_bytes()]).as_bytes());
    }
    // A control message and a record that is not base64: a dead letter.
    client.deliver_until_stored(&fixture("alloy/cw_logs_control_and_bad_records.json"));
    // CloudTrail events through a CloudWatch Logs subscription, and one through
    // an EventBridge rule.
    let trail = fixture("otel-contrib/cloudtraillog/cloudtrail_log_cw.json");
    let id = "8d0f5a52-62a6-4c3b-a0e6-0c8f2d2a1e01";
    let (status, reply) = client.deliver(id, body_of(id, &[&trail]).as_bytes(), KEY);
    assert_eq!(status, 200, "{reply}");
    let id = "8d0f5a52-62a6-4c3b-a0e6-0c8f2d2a1e02";
    let (status, reply) = client.deliver(
        id,
        body_of(id, &[CLOUDTRAIL_BY_EVENTBRIDGE.as_bytes()]).as_bytes(),
        KEY,
    );
    assert_eq!(status, 200, "{reply}");
    // A wrong key.
    let id = "0b7c6c1e-6d0a-4a55-9a1f-7f0e7f9b9c11";
    let (status, reply) = client.deliver(id, body_of(id, &[b"{}"]).as_bytes(), "wrong");
    assert_eq!(status, 401, "{reply}");
    // Plain HTTP to the HTTPS listener: a failed handshake.
    let mut plain = TcpStream::connect(server.ingest).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let _ = plain.read_to_end(&mut Vec::new());

    // Wait until Prometheus has scraped what the deliveries did, then a few
    // scrapes more, so that every rate has samples to work on.
    let instance = server.admin.to_string();
    let selector = format!(r#"job="{JOB}", instance="{instance}""#);
    let waits = [
        (
            format!(r#"sum(hydrant_requests_total{{{selector}, outcome=~"ok|duplicate"}})"#),
            5.0,
        ),
        (
            format!(r#"sum(hydrant_requests_total{{{selector}, outcome="unauthorized"}})"#),
            1.0,
        ),
        (
            format!(r#"sum(hydrant_dead_letter_records_total{{{selector}}})"#),
            1.0,
        ),
        (
            format!(r#"sum(hydrant_remote_write_samples_rejected_total{{{selector}}})"#),
            1.0,
        ),
        (
            format!(r#"sum(hydrant_tls_handshakes_total{{{selector}, outcome="failed"}})"#),
            1.0,
        ),
    ];
    let deadline = Instant::now() + PROMETHEUS_LIMIT;
    for (expr, at_least) in &waits {
        loop {
            let value = total(prometheus.address, expr);
            if value.is_some_and(|value| value >= *at_least) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{expr} is {value:?}, not {at_least}, after {PROMETHEUS_LIMIT:?}; Hydrant's log:\n{}",
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    std::thread::sleep(Duration::from_secs(3));

    // The variables' queries find this run's job and instance.
    let (_, jobs) = common::http_get(
        prometheus.address,
        &format!(
            "/api/v1/label/job/values?match[]={}",
            encode("hydrant_build_info")
        ),
    )
    .unwrap();
    assert!(jobs.contains(&format!("\"{JOB}\"")), "{jobs}");

    let dashboard = dashboard();
    let mut failures = Vec::new();
    let mut answered = 0;
    for (title, expr) in expressions(&dashboard) {
        let promql = expr
            .replace("$__rate_interval", "1m")
            .replace("$job", JOB)
            .replace("$instance", &instance);
        assert!(
            !promql.contains('$'),
            "{title}: a variable left in {promql}"
        );
        let answer = query(prometheus.address, &promql);
        answered += 1;
        if answer["status"] != "success" {
            failures.push(format!("{title}: {promql}: {answer}"));
            continue;
        }
        let empty = answer["data"]["result"]
            .as_array()
            .is_none_or(|result| result.is_empty());
        let allowed = MAY_BE_EMPTY
            .iter()
            .any(|(metric, _)| promql.contains(metric));
        if empty && !allowed {
            failures.push(format!("{title}: {promql}: no data"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {answered} dashboard queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(answered >= 40, "only {answered} queries in the dashboard");

    // The alert rules (expressions and runbooks) name metrics and outcomes this
    // Hydrant serves: a misspelt
    // name would pass promtool's tests (their series are written by hand) and
    // never fire.
    let rules =
        std::fs::read_to_string(repository("deploy/prometheus/hydrant-alerts.yml")).unwrap();
    let names: BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("hydrant_") && word.len() > "hydrant_".len())
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        // A histogram (named in a runbook) is served as its `_bucket`, `_sum` and
        // `_count` series.
        let expr = format!(r#"count({{__name__=~"{name}(_bucket|_sum|_count)?", {selector}}})"#);
        assert!(
            total(prometheus.address, &expr).is_some(),
            "the alert rules name {name}, which this Hydrant does not serve"
        );
    }
    let (_, outcomes) =
        common::http_get(prometheus.address, "/api/v1/label/outcome/values").unwrap();
    let outcomes: Value = serde_json::from_str(&outcomes).unwrap();
    let outcomes: BTreeSet<&str> = outcomes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap())
        .collect();
    for quoted in rules.split("outcome").skip(1) {
        let Some(values) = quoted
            .strip_prefix("=~\"")
            .or_else(|| quoted.strip_prefix("=\""))
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        for value in values.split('|') {
            assert!(
                outcomes.contains(value),
                "the alert rules name outcome {value:?}; served: {outcomes:?}"
            );
        }
    }

    // The data the panels show is this run's, not just series at zero.
    for (expr, at_least) in [
        (
            format!("sum(hydrant_records_decoded_total{{{selector}, format=\"cloudtrail\"}})"),
            1.0,
        ),
        (
            format!(
                "sum(hydrant_records_decoded_total{{{selector}, format=\"metric_stream_json\"}})"
            ),
            1.0,
        ),
        (
            format!("sum(hydrant_duplicate_deliveries_total{{{selector}}})"),
            1.0,
        ),
        (format!("sum(hydrant_prometheus_series{{{selector}}})"), 5.0),
        (
            format!("sum(hydrant_tls_handshakes_total{{{selector}, outcome=\"ok\"}})"),
            6.0,
        ),
        (
            format!(
                "min(hydrant_tls_certificate_not_after_seconds{{{selector}}} - time()) / 86400"
            ),
            14.0,
        ),
    ] {
        let value = total(prometheus.address, &expr);
        assert!(
            value.is_some_and(|value| value >= at_least),
            "{expr} is {value:?}, expected at least {at_least}"
        );
    }
}
