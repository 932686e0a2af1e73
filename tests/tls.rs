//! HTTPS on the ingest listener of the `hydrant` binary, met by real TLS clients
//! (rustls, and the `openssl` command line) holding certificates of a throwaway CA:
//! a delivery over HTTPS, the protocol versions spoken, certificate reloads by file
//! change and by SIGHUP under continuous deliveries, broken certificate files, the
//! handshake timeout under the connection cap, and refusals at startup.

mod common;

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{
    ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion, version,
};

use common::certs::Certificates;
use common::process::{Hydrant, Stderr, hydrant, run, send_signal};
use common::{body_of, stored_events};

const KEY: &str = "tls-test-key==";
const SOURCE_ARN: &str = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/tls-test";
/// Longest one delivery (connect, handshake, request, answer) may take.
const DELIVERY_LIMIT: Duration = Duration::from_secs(10);
/// Both versions Hydrant speaks.
const TLS12_AND_13: &[&SupportedProtocolVersion] = &[&version::TLS13, &version::TLS12];

const HANDSHAKES: &str = "hydrant_tls_handshakes_total";
const RELOADS: &str = "hydrant_reloads_total";
const NOT_AFTER: &str = "hydrant_tls_certificate_not_after_seconds";
const RELOADED_OK: &[&str] = &[r#"target="tls_certificate""#, r#"outcome="ok""#];
const RELOAD_FAILED: &[&str] = &[r#"target="tls_certificate""#, r#"outcome="failed""#];

/// Starts Hydrant on a new data directory, serving HTTPS with `cert` and `key`,
/// with `extra` flags.
fn start(cert: &Path, key: &Path, extra: &[&str]) -> (tempfile::TempDir, Hydrant) {
    let dir = tempfile::tempdir().unwrap();
    let server = Hydrant::spawn(
        hydrant()
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--access-key")
            .arg(format!("tls-test={KEY}"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(extra),
        Stderr::Read,
    );
    (dir, server)
}

/// A TLS client that trusts the test CA alone and offers HTTP/1.1 by ALPN. It
/// never resumes a session, so each connection makes a full handshake and sees
/// the certificate served at that moment.
#[derive(Clone)]
struct Client(TlsConnector);

/// What one delivery over a new connection met.
#[derive(Debug)]
struct Delivered {
    leaf: CertificateDer<'static>,
    version: ProtocolVersion,
    status: u16,
    reply: Value,
}

impl Client {
    fn new(ca: &Path, versions: &[&'static SupportedProtocolVersion]) -> Self {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(certificate.unwrap()).unwrap();
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = Resumption::disabled();
        Self(TlsConnector::from(Arc::new(config)))
    }

    /// A TCP connection and a handshake on it.
    async fn connect(&self, address: SocketAddr) -> Result<TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        self.0
            .connect(ServerName::IpAddress(address.ip().into()), tcp)
            .await
            .map_err(|error| format!("handshake: {error}"))
    }

    /// The certificate a new handshake is given; the connection is then closed
    /// cleanly (close_notify), without a request.
    async fn presented(&self, address: SocketAddr) -> CertificateDer<'static> {
        let mut tls = self.connect(address).await.unwrap();
        let leaf = leaf(&tls);
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        // The server closes in turn, with or without its own close_notify.
        let _ = tls.read_to_end(&mut rest).await;
        leaf
    }

    /// One delivery of one record on a new connection.
    async fn deliver(&self, address: SocketAddr, request_id: &str) -> Result<Delivered, String> {
        let attempt = async {
            let mut tls = self.connect(address).await?;
            let leaf = leaf(&tls);
            let version = tls.get_ref().1.protocol_version().unwrap();
            let (status, body) = exchange(&mut tls, &delivery_request(address, request_id))
                .await
                .map_err(|error| format!("request: {error}"))?;
            let reply = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Ok(Delivered {
                leaf,
                version,
                status,
                reply,
            })
        };
        tokio::time::timeout(DELIVERY_LIMIT, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {DELIVERY_LIMIT:?}")))
    }
}

/// The leaf certificate the server presented on `tls`.
fn leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presented a certificate")
        .clone()
}

/// The first certificate in the PEM file at `path`.
fn leaf_of(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

/// A Firehose delivery of one record, as raw HTTP/1.1 asking to close afterwards.
fn delivery_request(address: SocketAddr, request_id: &str) -> Vec<u8> {
    let record = format!(r#"{{"delivery":"{request_id}"}}"#);
    let body = body_of(request_id, &[record.as_bytes()]);
    format!(
        "POST /firehose HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nX-Amz-Firehose-Protocol-Version: 1.0\r\n\
         X-Amz-Firehose-Request-Id: {request_id}\r\nX-Amz-Firehose-Source-Arn: {SOURCE_ARN}\r\n\
         X-Amz-Firehose-Access-Key: {KEY}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Writes `request` and reads the answer: its status and body, by its
/// Content-Length, or to the end of the connection (de-chunked when chunked).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> io::Result<(u16, Vec<u8>)> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut received = Vec::new();
    let head_end = loop {
        if let Some(at) = find(&received, b"\r\n\r\n") {
            break at + 4;
        }
        if read_some(stream, &mut received).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "no complete answer head in {:?}",
                    String::from_utf8_lossy(&received)
                ),
            ));
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status line in {head:?}")))?;
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let mut body = received.split_off(head_end);
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(io::Error::other)?;
        while body.len() < length {
            if read_some(stream, &mut body).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        body.truncate(length);
        return Ok((status, body));
    }
    while read_some(stream, &mut body).await? > 0 {}
    if header("transfer-encoding").is_some_and(|coding| coding.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    }
    Ok((status, body))
}

async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, into: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0; 8192];
    let read = stream.read(&mut chunk).await?;
    into.extend_from_slice(&chunk[..read]);
    Ok(read)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The data of a chunked body.
fn dechunk(mut chunked: &[u8]) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let line_end =
            find(chunked, b"\r\n").ok_or_else(|| io::Error::other("a chunk without a size"))?;
        let size = std::str::from_utf8(&chunked[..line_end])
            .ok()
            .and_then(|line| line.split(';').next())
            .and_then(|size| usize::from_str_radix(size.trim(), 16).ok())
            .ok_or_else(|| io::Error::other("a chunk size that is not hex"))?;
        chunked = &chunked[line_end + 2..];
        if size == 0 {
            return Ok(data);
        }
        let chunk = chunked
            .get(..size)
            .ok_or_else(|| io::Error::other("a chunk cut short"))?;
        data.extend_from_slice(chunk);
        chunked = chunked.get(size + 2..).unwrap_or_default();
    }
}

/// The admin listener's `/metrics`.
async fn metrics(admin: SocketAddr) -> String {
    let mut stream = TcpStream::connect(admin).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    let (status, body) = exchange(&mut stream, request.as_bytes()).await.unwrap();
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

/// The value of the series `name` whose labels include each of `labels` (each
/// `key="value"`).
fn sample(scrape: &str, name: &str, labels: &[&str]) -> Option<f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, set) = series.split_once('{').unwrap_or((series, "}"));
            let set: Vec<&str> = set.trim_end_matches('}').split(',').collect();
            (metric == name && labels.iter().all(|label| set.contains(label)))
                .then(|| value.parse().ok())
                .flatten()
        })
}

/// `hydrant_tls_handshakes_total` of `outcome` in `scrape`.
fn handshakes(scrape: &str, outcome: &str) -> Option<f64> {
    sample(scrape, HANDSHAKES, &[&format!(r#"outcome="{outcome}""#)])
}

/// Waits until the series `name{labels}` is `expected`; fails after `limit`.
async fn wait_for_sample(
    admin: SocketAddr,
    name: &str,
    labels: &[&str],
    expected: f64,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let scrape = metrics(admin).await;
        let value = sample(&scrape, name, labels);
        if value == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} is {value:?}, not {expected}, after {limit:?}:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A certificate's notAfter as `openssl x509 -enddate` gives it
/// (`notAfter=Nov 30 16:38:46 2026 GMT`), in seconds since the epoch.
fn not_after(certificates: &Certificates, path: &Path) -> f64 {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let printed =
        certificates.openssl(&["x509", "-enddate", "-noout", "-in", path.to_str().unwrap()]);
    let fields: Vec<&str> = printed
        .trim()
        .strip_prefix("notAfter=")
        .unwrap_or_else(|| panic!("{printed:?}"))
        .split_whitespace()
        .collect();
    let [month, day, time, year, "GMT"] = fields[..] else {
        panic!("{printed:?}");
    };
    let month = MONTHS.iter().position(|name| *name == month).unwrap() as i64 + 1;
    let time: Vec<i64> = time.split(':').map(|part| part.parse().unwrap()).collect();
    let days = days_from_civil(year.parse().unwrap(), month, day.parse().unwrap());
    (days * 86_400 + time[0] * 3_600 + time[1] * 60 + time[2]) as f64
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar, counting
/// in 400-year eras from a year that starts in March (so leap days come last).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The serial number `openssl x509 -serial` prints for the certificate at `path`.
fn serial(certificates: &Certificates, path: &Path) -> String {
    certificates
        .openssl(&["x509", "-serial", "-noout", "-in", path.to_str().unwrap()])
        .trim()
        .to_owned()
}

/// The JSON log lines whose message is `message`.
fn log_entries(server: &Hydrant, message: &str) -> Vec<Value> {
    server
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == message)
        .collect()
}

/// The request ids of every stored event.
fn stored_request_ids(data_dir: &Path) -> BTreeSet<String> {
    stored_events(data_dir)
        .iter()
        .map(|event| event["firehose"]["request_id"].as_str().unwrap().to_owned())
        .collect()
}

/// One delivery of a [`Load`].
#[derive(Debug)]
struct Sent {
    request_id: String,
    started: Instant,
    result: Result<Delivered, String>,
}

/// Deliveries sent back to back by a few tasks, each on a new connection, until
/// [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Vec<Sent>>>,
}

impl Load {
    fn start(client: &Client, address: SocketAddr, tasks: usize, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|task| {
                let (client, stop) = (client.clone(), Arc::clone(&stop));
                let prefix = format!("{prefix}-{task}");
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let request_id = format!("{prefix}-{}", sent.len());
                        let started = Instant::now();
                        let result = client.deliver(address, &request_id).await;
                        sent.push(Sent {
                            request_id,
                            started,
                            result,
                        });
                    }
                    sent
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the load once each task's delivery in progress is answered; every
    /// delivery sent.
    async fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        let mut sent = Vec::new();
        for task in self.tasks {
            sent.extend(task.await.unwrap());
        }
        sent
    }
}

/// Every delivery was connected, handshaken and answered 200 with its request id.
fn assert_all_answered(sent: &[Sent]) {
    assert!(!sent.is_empty(), "no delivery was sent");
    let failed: Vec<String> = sent
        .iter()
        .filter_map(|sent| match &sent.result {
            Ok(delivered)
                if delivered.status == 200
                    && delivered.reply["requestId"] == sent.request_id.as_str() =>
            {
                None
            }
            Ok(delivered) => Some(format!(
                "{}: {} {}",
                sent.request_id, delivered.status, delivered.reply
            )),
            Err(error) => Some(format!("{}: {error}", sent.request_id)),
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} deliveries failed: {failed:#?}",
        failed.len(),
        sent.len()
    );
}

/// The certificate each delivery was given.
fn leaf_sent(sent: &Sent) -> &CertificateDer<'static> {
    &sent.result.as_ref().unwrap().leaf
}

/// Replaces the file at `path` with `contents` in one step: written beside it,
/// then renamed over it.
fn replace(path: &Path, contents: &[u8]) {
    let next = path.with_extension("next");
    std::fs::write(&next, contents).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// A certificate and key laid out as a Kubernetes secret volume holds them:
/// `tls.crt` and `tls.key` are symlinks into `..data`, a symlink to the current
/// version's directory, which an update replaces by a rename, so both files
/// change in one step.
struct SecretVolume {
    dir: tempfile::TempDir,
    versions: usize,
}

impl SecretVolume {
    fn new(cert: &Path, key: &Path) -> Self {
        let mut volume = Self {
            dir: tempfile::tempdir().unwrap(),
            versions: 0,
        };
        volume.update(cert, key);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(
                Path::new("..data").join(name),
                volume.dir.path().join(name),
            )
            .unwrap();
        }
        volume
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Makes `cert` and `key` the volume's pair.
    fn update(&mut self, cert: &Path, key: &Path) {
        self.versions += 1;
        let version = format!("..v{}", self.versions);
        let dir = self.dir.path();
        std::fs::create_dir(dir.join(&version)).unwrap();
        std::fs::copy(cert, dir.join(&version).join("tls.crt")).unwrap();
        std::fs::copy(key, dir.join(&version).join("tls.key")).unwrap();
        std::os::unix::fs::symlink(&version, dir.join("..data_next")).unwrap();
        std::fs::rename(dir.join("..data_next"), dir.join("..data")).unwrap();
    }
}

/// The date arithmetic the expiry checks rely on, against dates known by heart.
#[test]
fn dates_count_days_from_the_epoch() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(1970, 3, 1), 59);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    assert_eq!(days_from_civil(2038, 1, 19), 24_855);
}

/// A Firehose delivery over HTTPS: the configured certificate is presented and
/// trusted through the CA, HTTP/1.1 is agreed by ALPN, the answer is 200 with the
/// request id, the records are stored, and the handshake and the certificate's
/// expiry show in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_over_https_is_answered_and_stored() {
    let certificates = Certificates::new();
    let cert = certificates.path("server.pem");
    let (dir, server) = start(&cert, &certificates.path("server.key"), &[]);
    let client = Client::new(&certificates.path("ca.pem"), TLS12_AND_13);

    let mut tls = client.connect(server.ingest).await.unwrap();
    assert_eq!(leaf(&tls), leaf_of(&cert), "the configured certificate");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, body) = exchange(&mut tls, &delivery_request(server.ingest, "https-1"))
        .await
        .unwrap();
    let reply: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["requestId"], "https-1");
    assert!(reply["timestamp"].is_u64(), "{reply}");
    drop(tls);

    let scrape = metrics(server.admin).await;
    assert_eq!(handshakes(&scrape, "ok"), Some(1.0), "{scrape}");
    for outcome in ["failed", "timed_out", "acme_challenge"] {
        assert_eq!(
            handshakes(&scrape, outcome),
            Some(0.0),
            "{outcome}: {scrape}"
        );
    }
    assert_eq!(
        sample(&scrape, NOT_AFTER, &[r#"listener="ingest""#]),
        Some(not_after(&certificates, &cert)),
        "{scrape}"
    );
    assert_eq!(sample(&scrape, RELOADS, RELOADED_OK), Some(0.0));
    assert_eq!(sample(&scrape, RELOADS, RELOAD_FAILED), Some(0.0));

    let (status, _) = server.terminate();
    assert!(status.success(), "{status:?}");
    let events = stored_events(dir.path());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["firehose"]["request_id"], "https-1");
    assert_eq!(events[0]["data"]["delivery"], "https-1");
}

/// Runs `openssl s_client` against `address` with `args`, trusting the test CA,
/// with nothing to send: whether it succeeded, and all it printed.
fn s_client(certificates: &Certificates, address: SocketAddr, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(address.to_string())
        .arg("-CAfile")
        .arg(certificates.path("ca.pem"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// TLS 1.1 is refused in the handshake while 1.2 and 1.3 are served, and plain
/// HTTP on the HTTPS port gets no HTTP answer; each handshake is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_1_2_and_1_3_are_spoken() {
    let certificates = Certificates::new();
    let (_dir, server) = start(
        &certificates.path("server.pem"),
        &certificates.path("server.key"),
        &[],
    );
    let address = server.ingest;
    let admin = server.admin;

    // Security level 0 lets OpenSSL 3 offer TLS 1.1 at all; -msg shows the offer.
    let (succeeded, printed) = s_client(
        &certificates,
        address,
        &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-msg"],
    );
    assert!(!succeeded, "a TLS 1.1 handshake succeeded:\n{printed}");
    assert!(
        printed
            .lines()
            .any(|line| line.starts_with(">>> TLS 1.1, Handshake") && line.contains("ClientHello")),
        "the client did not offer TLS 1.1:\n{printed}"
    );
    assert!(
        printed.contains("alert"),
        "the server did not answer with an alert:\n{printed}"
    );
    wait_for_sample(
        admin,
        HANDSHAKES,
        &[r#"outcome="failed""#],
        1.0,
        Duration::from_secs(5),
    )
    .await;

    // The same client, asking for TLS 1.2, is served: the refusal was the version.
    let (succeeded, printed) = s_client(
        &certificates,
        address,
        &["-tls1_2", "-verify_return_error", "-brief"],
    );
    assert!(succeeded, "{printed}");
    assert!(printed.contains("Protocol version: TLSv1.2"), "{printed}");

    for (versions, expected) in [
        (&[&version::TLS12][..], ProtocolVersion::TLSv1_2),
        (&[&version::TLS13][..], ProtocolVersion::TLSv1_3),
    ] {
        let client = Client::new(&certificates.path("ca.pem"), versions);
        let request_id = format!("{expected:?}");
        let delivered = client.deliver(address, &request_id).await.unwrap();
        assert_eq!(delivered.version, expected);
        assert_eq!(delivered.status, 200, "{}", delivered.reply);
        assert_eq!(delivered.reply["requestId"], request_id.as_str());
    }
    wait_for_sample(
        admin,
        HANDSHAKES,
        &[r#"outcome="ok""#],
        3.0,
        Duration::from_secs(5),
    )
    .await;

    // Plain HTTP on the HTTPS port: the handshake fails at once (well before the
    // 10 s handshake timeout) and no HTTP answer comes back.
    let mut plain = TcpStream::connect(address).await.unwrap();
    plain
        .write_all(&delivery_request(address, "plain"))
        .await
        .unwrap();
    let mut answer = Vec::new();
    // Closed, cleanly or by a reset (either ends the wait); what came before is
    // at most a TLS alert.
    let _ = tokio::time::timeout(Duration::from_secs(3), plain.read_to_end(&mut answer))
        .await
        .expect("plain HTTP on the HTTPS port was neither answered nor closed within 3 s");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    wait_for_sample(
        admin,
        HANDSHAKES,
        &[r#"outcome="failed""#],
        2.0,
        Duration::from_secs(5),
    )
    .await;
    let scrape = metrics(admin).await;
    assert_eq!(handshakes(&scrape, "ok"), Some(3.0), "{scrape}");
    assert_eq!(handshakes(&scrape, "timed_out"), Some(0.0), "{scrape}");
}

/// Waits until new handshakes are given `expected`, probing every 50 ms; each
/// probe may only see `expected` or `before`. Fails once `limit` has passed since
/// `since`. When it was first seen, and how many probes were made.
async fn wait_for_certificate(
    client: &Client,
    address: SocketAddr,
    (before, expected): (&CertificateDer<'static>, &CertificateDer<'static>),
    since: Instant,
    limit: Duration,
) -> (Instant, usize) {
    let mut probes = 0;
    loop {
        let presented = client.presented(address).await;
        probes += 1;
        if presented == *expected {
            return (Instant::now(), probes);
        }
        assert!(
            presented == *before,
            "a certificate that is neither the old nor the new one"
        );
        assert!(
            since.elapsed() < limit,
            "the new certificate was not served within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deliveries keep coming, each on a new connection, while the certificate is
/// replaced twice as a Kubernetes secret volume is updated: first found by the
/// file check (within 10 s), then at once on SIGHUP. No delivery fails, none is
/// given an older certificate after a newer one was served, each replacement is
/// one successful reload, and the expiry gauge follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::print_stderr,
    reason = "the reload latencies are reported for the operations notes"
)]
async fn certificates_are_reloaded_under_load_without_a_failed_delivery() {
    let certificates = Certificates::new();
    let first = (
        certificates.path("server.pem"),
        certificates.path("server.key"),
    );
    let second = certificates.issue_server("second", 2);
    let third = certificates.issue_server("third", 3);
    let serials: BTreeSet<String> = [&first.0, &second.0, &third.0]
        .map(|cert| serial(&certificates, cert))
        .into();
    assert_eq!(serials.len(), 3, "{serials:?}");
    let [leaf1, leaf2, leaf3] = [&first.0, &second.0, &third.0].map(|cert| leaf_of(cert));

    let mut volume = SecretVolume::new(&first.0, &first.1);
    let (dir, server) = start(&volume.cert(), &volume.key(), &[]);
    let address = server.ingest;
    let client = Client::new(&certificates.path("ca.pem"), TLS12_AND_13);
    assert_eq!(client.presented(address).await, leaf1);
    let mut probes = 1;

    let load = Load::start(&client, address, 3, "reload");
    tokio::time::sleep(Duration::from_millis(500)).await;

    volume.update(&second.0, &second.1);
    let updated = Instant::now();
    let (second_served, made) = wait_for_certificate(
        &client,
        address,
        (&leaf1, &leaf2),
        updated,
        Duration::from_secs(12),
    )
    .await;
    probes += made;
    let by_file_check = second_served - updated;

    // The file check runs every 5 s and has just run: the third certificate,
    // served within 1.5 s of the signal, came from the signal.
    volume.update(&third.0, &third.1);
    let signalled = Instant::now();
    send_signal(&server.child, "HUP");
    let (third_served, made) = wait_for_certificate(
        &client,
        address,
        (&leaf2, &leaf3),
        signalled,
        Duration::from_millis(1500),
    )
    .await;
    probes += made;
    let by_signal = third_served - signalled;
    assert!(
        third_served - second_served < Duration::from_secs(4),
        "{:?} between the two reloads: the file check may have done the second",
        third_served - second_served
    );

    // Past the next file check, which must find nothing more to reload.
    tokio::time::sleep_until((third_served + Duration::from_millis(5500)).into()).await;
    let sent = load.finish().await;
    assert_all_answered(&sent);
    for delivery in &sent {
        let leaf = leaf_sent(delivery);
        if delivery.started > third_served {
            assert!(
                *leaf == leaf3,
                "{} got an older certificate",
                delivery.request_id
            );
        } else if delivery.started > second_served {
            assert!(
                *leaf == leaf2 || *leaf == leaf3,
                "{} got the first certificate after the second was served",
                delivery.request_id
            );
        } else {
            assert!(*leaf == leaf1 || *leaf == leaf2, "{}", delivery.request_id);
        }
    }
    let count = |expected: &CertificateDer<'static>| {
        sent.iter()
            .filter(|delivery| leaf_sent(delivery) == expected)
            .count()
    };
    let per_certificate = [count(&leaf1), count(&leaf2), count(&leaf3)];
    assert!(
        per_certificate[0] > 0 && per_certificate[2] > 0,
        "{per_certificate:?}"
    );

    let scrape = metrics(server.admin).await;
    assert_eq!(sample(&scrape, RELOADS, RELOADED_OK), Some(2.0), "{scrape}");
    assert_eq!(
        sample(&scrape, RELOADS, RELOAD_FAILED),
        Some(0.0),
        "{scrape}"
    );
    assert_eq!(
        handshakes(&scrape, "ok"),
        Some((sent.len() + probes) as f64),
        "{} deliveries and {probes} probes: {scrape}",
        sent.len()
    );
    assert_eq!(handshakes(&scrape, "failed"), Some(0.0), "{scrape}");
    assert_eq!(handshakes(&scrape, "timed_out"), Some(0.0), "{scrape}");
    assert_eq!(
        sample(&scrape, NOT_AFTER, &[r#"listener="ingest""#]),
        Some(not_after(&certificates, &third.0)),
        "{scrape}"
    );
    assert_eq!(client.presented(address).await, leaf3);
    eprintln!(
        "reload under load: {} deliveries {per_certificate:?} per certificate; \
         file check reload seen after {by_file_check:?}, SIGHUP reload after {by_signal:?}",
        sent.len()
    );

    let reloaded = log_entries(&server, "TLS certificate reloaded; new handshakes use it.");
    assert_eq!(reloaded.len(), 2, "{}", server.logs());
    let (status, _) = server.terminate();
    assert!(status.success(), "{status:?}");
    let expected: BTreeSet<String> = sent
        .iter()
        .map(|delivery| delivery.request_id.clone())
        .collect();
    assert_eq!(stored_request_ids(dir.path()), expected);
}

/// A certificate file that does not load (garbage, or a certificate whose key is
/// not in the key file) is one failed reload with one log line saying why; the
/// certificate in use stays, deliveries go on, and a good pair is then picked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_certificate_file_keeps_the_one_in_use() {
    const NOT_RELOADED: &str = "TLS certificate not reloaded; the one in use is kept.";
    let certificates = Certificates::new();
    let second = certificates.issue_server("second", 2);
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    std::fs::copy(certificates.path("server.pem"), &cert).unwrap();
    std::fs::copy(certificates.path("server.key"), &key).unwrap();
    let (leaf1, leaf2) = (leaf_of(&cert), leaf_of(&second.0));
    let (dir, server) = start(&cert, &key, &[]);
    let (address, admin) = (server.ingest, server.admin);
    let client = Client::new(&certificates.path("ca.pem"), TLS12_AND_13);
    let load = Load::start(&client, address, 2, "broken");
    let file_check = Duration::from_secs(12);

    replace(&cert, b"this is not a certificate\n");
    wait_for_sample(admin, RELOADS, RELOAD_FAILED, 1.0, file_check).await;
    assert_eq!(
        client.presented(address).await,
        leaf1,
        "the old certificate"
    );
    let lines = log_entries(&server, NOT_RELOADED);
    assert_eq!(lines.len(), 1, "{}", server.logs());
    let reason = lines[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&cert.display().to_string()) && reason.contains("no PEM certificate"),
        "{}",
        lines[0]
    );

    // A good certificate, but the key file holds the key of the first one.
    replace(&cert, &std::fs::read(&second.0).unwrap());
    wait_for_sample(admin, RELOADS, RELOAD_FAILED, 2.0, file_check).await;
    assert_eq!(
        client.presented(address).await,
        leaf1,
        "the old certificate"
    );
    let lines = log_entries(&server, NOT_RELOADED);
    assert_eq!(lines.len(), 2, "{}", server.logs());
    let reason = lines[1]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&cert.display().to_string())
            && reason.contains(&key.display().to_string())
            && reason.contains("not the key"),
        "{}",
        lines[1]
    );
    let scrape = metrics(admin).await;
    assert_eq!(sample(&scrape, RELOADS, RELOADED_OK), Some(0.0), "{scrape}");
    assert_eq!(
        sample(&scrape, NOT_AFTER, &[r#"listener="ingest""#]),
        Some(not_after(&certificates, &certificates.path("server.pem"))),
        "{scrape}"
    );

    // Its key arrives: the pair loads.
    replace(&key, &std::fs::read(&second.1).unwrap());
    wait_for_sample(admin, RELOADS, RELOADED_OK, 1.0, file_check).await;
    assert_eq!(
        client.presented(address).await,
        leaf2,
        "the new certificate"
    );

    let sent = load.finish().await;
    assert_all_answered(&sent);
    assert!(sent.iter().any(|delivery| *leaf_sent(delivery) == leaf1));
    let scrape = metrics(admin).await;
    assert_eq!(
        sample(&scrape, RELOADS, RELOAD_FAILED),
        Some(2.0),
        "{scrape}"
    );
    assert_eq!(handshakes(&scrape, "failed"), Some(0.0), "{scrape}");
    assert_eq!(
        sample(&scrape, NOT_AFTER, &[r#"listener="ingest""#]),
        Some(not_after(&certificates, &second.0)),
        "{scrape}"
    );
    assert_eq!(log_entries(&server, NOT_RELOADED).len(), 2);
    let (status, _) = server.terminate();
    assert!(status.success(), "{status:?}");
    let expected: BTreeSet<String> = sent
        .iter()
        .map(|delivery| delivery.request_id.clone())
        .collect();
    assert_eq!(stored_request_ids(dir.path()), expected);
}

/// Reads from `stream` until it is closed (an end or a reset); fails the test if
/// it is still open after `limit`, or if the server sent anything.
async fn wait_closed(stream: &mut TcpStream, limit: Duration) {
    let mut received = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut received)).await {
        Ok(Ok(_)) => assert!(received.is_empty(), "{received:?}"),
        Ok(Err(error)) => assert!(
            matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            "{error}"
        ),
        Err(_) => panic!("the connection is still open after {limit:?}"),
    }
}

/// A client that connects and sends nothing is closed at the handshake timeout,
/// and counted; the listener then serves the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_at_the_handshake_timeout() {
    let certificates = Certificates::new();
    let (_dir, server) = start(
        &certificates.path("server.pem"),
        &certificates.path("server.key"),
        &["--tls-handshake-timeout", "1s"],
    );
    let mut silent = TcpStream::connect(server.ingest).await.unwrap();
    let connected = Instant::now();
    wait_closed(&mut silent, Duration::from_secs(3)).await;
    let closed_after = connected.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed after {closed_after:?}, before the 1 s timeout"
    );
    wait_for_sample(
        server.admin,
        HANDSHAKES,
        &[r#"outcome="timed_out""#],
        1.0,
        Duration::from_secs(5),
    )
    .await;
    let client = Client::new(&certificates.path("ca.pem"), TLS12_AND_13);
    let delivered = client.deliver(server.ingest, "after").await.unwrap();
    assert_eq!(delivered.status, 200, "{}", delivered.reply);
    let scrape = metrics(server.admin).await;
    assert_eq!(handshakes(&scrape, "failed"), Some(0.0), "{scrape}");
}

/// A connection still in its handshake holds one of the listener's slots: with
/// two slots, two silent clients hold both, a third connection is closed at once
/// and counted as refused, and the slots come back when the handshake timeout
/// closes the silent ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshaking_connections_hold_connection_slots() {
    let certificates = Certificates::new();
    let (_dir, server) = start(
        &certificates.path("server.pem"),
        &certificates.path("server.key"),
        &["--max-connections", "2", "--tls-handshake-timeout", "3s"],
    );
    let (address, admin) = (server.ingest, server.admin);
    let mut silent = [
        TcpStream::connect(address).await.unwrap(),
        TcpStream::connect(address).await.unwrap(),
    ];
    let open = [r#"listener="ingest""#];
    wait_for_sample(
        admin,
        "hydrant_open_connections",
        &open,
        2.0,
        Duration::from_secs(2),
    )
    .await;

    let mut third = TcpStream::connect(address).await.unwrap();
    wait_closed(&mut third, Duration::from_millis(1000)).await;
    let scrape = metrics(admin).await;
    assert_eq!(
        sample(&scrape, "hydrant_connections_refused_total", &open),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(handshakes(&scrape, "timed_out"), Some(0.0), "{scrape}");

    for stream in &mut silent {
        wait_closed(stream, Duration::from_secs(5)).await;
    }
    wait_for_sample(
        admin,
        HANDSHAKES,
        &[r#"outcome="timed_out""#],
        2.0,
        Duration::from_secs(2),
    )
    .await;
    let client = Client::new(&certificates.path("ca.pem"), TLS12_AND_13);
    let delivered = client.deliver(address, "after-the-cap").await.unwrap();
    assert_eq!(delivered.status, 200, "{}", delivered.reply);
    let scrape = metrics(admin).await;
    assert_eq!(
        sample(&scrape, "hydrant_connections_refused_total", &open),
        Some(1.0),
        "{scrape}"
    );
}

/// A setting's name and value.
type Setting<'a> = (&'a str, &'a Path);

/// TLS settings that cannot work stop Hydrant with exit code 64 and one line that
/// names what is wrong, before it creates its data directory or listens.
#[test]
fn unusable_tls_settings_are_refused_at_startup() {
    let certificates = Certificates::new();
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    let missing_cert = scratch.path().join("missing.pem");
    let missing_key = scratch.path().join("missing.key");
    let [cert, key, other_key] =
        ["server.pem", "server.key", "client.key"].map(|name| certificates.path(name));
    let shown = |path: &Path| path.display().to_string();
    // Each setting is a flag, or an environment variable when not spelled `--…`.
    let table: Vec<(Vec<Setting<'_>>, Vec<String>)> = vec![
        (
            vec![("--tls-cert", &cert)],
            vec!["--tls-cert needs --tls-key".into()],
        ),
        (
            vec![("--tls-key", &key)],
            vec!["--tls-key needs --tls-cert".into()],
        ),
        (
            vec![("HYDRANT_TLS_CERT", &cert)],
            vec!["--tls-cert needs --tls-key".into()],
        ),
        (
            vec![("--tls-cert", &cert), ("--tls-key", &other_key)],
            vec![shown(&cert), shown(&other_key)],
        ),
        (
            vec![("--tls-cert", &missing_cert), ("--tls-key", &key)],
            vec![shown(&missing_cert)],
        ),
        (
            vec![("--tls-cert", &cert), ("--tls-key", &missing_key)],
            vec![shown(&missing_key)],
        ),
        (
            vec![
                ("--tls-cert", &cert),
                ("--tls-key", &key),
                ("--tls-handshake-timeout", Path::new("0s")),
            ],
            vec!["tls-handshake-timeout".into()],
        ),
    ];
    for (settings, expected) in table {
        let mut command = hydrant();
        command
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--access-key")
            .arg(format!("tls-test={KEY}"));
        for (name, value) in &settings {
            if name.starts_with("--") {
                command.arg(name).arg(value);
            } else {
                command.env(name, value);
            }
        }
        let (code, _, stderr) = run(&mut command);
        let case = format!("{settings:?}");
        assert_eq!(code, Some(64), "{case}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{case}: {stderr:?}");
        assert!(stderr.starts_with("hydrant: error: "), "{case}: {stderr:?}");
        for text in &expected {
            assert!(
                stderr.contains(text.as_str()),
                "{case}: {text} in {stderr:?}"
            );
        }
    }
    assert!(!data_dir.exists(), "the data directory was created");
}
