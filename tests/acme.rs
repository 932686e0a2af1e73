//! ACME against a real CA: Debian's `pebble` (Let's Encrypt's test CA) with its
//! validation on, resolving `hydrant.test` to 127.0.0.1 through
//! `pebble-challtestsrv`'s DNS and validating TLS-ALPN-01 on the port the real
//! binary's ingest listener binds. A Firehose delivery then gets 200 over TLS
//! from a client trusting only pebble's root; a restart serves the cached
//! certificate without ordering; a renewal point in the past renews without a
//! restart and without a failed delivery.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::certs::Certificates;
use common::process::{hydrant, send_signal, wait_with_timeout};
use common::{KEY, KEY_NAME, SOURCE_ARN, body_of};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

const DOMAIN: &str = "hydrant.test";
/// Longest wait for pebble to issue (it takes about a second).
const ISSUE_LIMIT: Duration = Duration::from_secs(60);

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pebble and its DNS server; both stopped when dropped.
struct Pebble {
    children: Vec<Child>,
    directory: String,
    management: u16,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Starts pebble with `certificates`' localhost certificate for its own HTTPS,
    /// validating TLS-ALPN-01 on `tls_port`.
    fn start(certificates: &Certificates, dir: &Path, tls_port: u16) -> Self {
        let (dns, dns_management, listen, management, http) = (
            common::free_port(),
            common::free_port(),
            common::free_port(),
            common::free_port(),
            common::free_port(),
        );
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": certificates.path("server.pem"),
                "privateKey": certificates.path("server.key"),
                "httpPort": http,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let spawn = |command: &mut Command| {
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("pebble and pebble-challtestsrv (Debian package `pebble`) are installed")
        };
        // Every name resolves to 127.0.0.1, and to no IPv6 address (the ingest
        // listener binds IPv4 loopback only).
        let challtestsrv = spawn(Command::new("pebble-challtestsrv").args([
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("127.0.0.1:{dns}"),
            "-management",
            &format!("127.0.0.1:{dns_management}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
        ]));
        let mut pebble = Self {
            children: vec![challtestsrv],
            directory: format!("https://localhost:{listen}/dir"),
            management,
        };
        wait_for_port(dns_management, "pebble-challtestsrv");
        let server = spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                // No random sleeps before validating, no refused nonces, and every
                // order validated afresh (no reuse of earlier authorizations).
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
        );
        pebble.children.push(server);
        wait_for_port(listen, "pebble");
        wait_for_port(management, "pebble's management interface");
        pebble
    }

    /// The root pebble issues under, as a trust store.
    fn roots(&self, certificates: &Certificates) -> rustls::RootCertStore {
        let mut test_ca = rustls::RootCertStore::empty();
        test_ca
            .add(CertificateDer::from_pem_file(certificates.path("ca.pem")).unwrap())
            .unwrap();
        let request = "GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let answer = exchange(
            SocketAddr::from(([127, 0, 0, 1], self.management)),
            "localhost",
            &test_ca,
            request.as_bytes(),
        )
        .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(answer.body.as_bytes()) {
            roots.add(certificate.unwrap()).unwrap();
        }
        assert_eq!(roots.len(), 1, "{}", answer.body);
        roots
    }
}

/// An HTTP answer over TLS, with the certificate the server presented.
struct Answer {
    status: u16,
    body: String,
    leaf: Vec<u8>,
}

/// Sends `request` over TLS to `address` naming `server_name` (SNI), trusting
/// `roots` only, and reads the answer up to the end of the connection.
fn exchange(
    address: SocketAddr,
    server_name: &str,
    roots: &rustls::RootCertStore,
    request: &[u8],
) -> Result<Answer, String> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(address).map_err(|error| format!("connect: {error}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    stream
        .write_all(request)
        .map_err(|error| format!("handshake or write: {error}"))?;
    let leaf = stream
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.as_ref().to_vec())
        .ok_or("no certificate")?;
    let mut bytes = Vec::new();
    if let Err(error) = stream.read_to_end(&mut bytes) {
        // A server may close without close_notify once it has answered.
        if error.kind() != std::io::ErrorKind::UnexpectedEof || bytes.is_empty() {
            return Err(format!("read: {error}"));
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok(Answer { status, body, leaf })
}

/// A Firehose delivery to `https://hydrant.test:<port>/`, connecting to
/// 127.0.0.1.
fn deliver(port: u16, roots: &rustls::RootCertStore, request_id: &str) -> Result<Answer, String> {
    let body = body_of(request_id, &[b"{\"via\":\"acme\"}"]);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {DOMAIN}:{port}\r\nContent-Type: application/json\r\n\
         X-Amz-Firehose-Protocol-Version: 1.0\r\nX-Amz-Firehose-Request-Id: {request_id}\r\n\
         X-Amz-Firehose-Source-Arn: {SOURCE_ARN}\r\nX-Amz-Firehose-Access-Key: {KEY}\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(
        SocketAddr::from(([127, 0, 0, 1], port)),
        DOMAIN,
        roots,
        request.as_bytes(),
    )
}

/// The running binary, its admin address and its log lines; stopped when dropped.
struct Running {
    child: Child,
    admin: SocketAddr,
    logs: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            send_signal(&self.child, "TERM");
            wait_with_timeout(&mut self.child, Duration::from_secs(30));
        }
    }
}

impl Running {
    /// Starts Hydrant getting its certificate from `pebble`, its ingest listener
    /// on `port`, with `extra` flags.
    fn start(
        pebble: &Pebble,
        certificates: &Certificates,
        dir: &Path,
        port: u16,
        extra: &[&str],
    ) -> Self {
        let mut child = hydrant()
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--access-key", &format!("{KEY_NAME}={KEY}")])
            .args([
                "--acme-domain",
                DOMAIN,
                "--acme-contact",
                "ops@hydrant.test",
            ])
            .args(["--acme-directory", &pebble.directory])
            .arg("--acme-cache-dir")
            .arg(dir.join("acme"))
            .arg("--acme-ca-file")
            .arg(certificates.path("ca.pem"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (sender, admin) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let collected = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
                    && entry["message"] == "Listening."
                    && entry["listener"] == "admin"
                {
                    let _ = sender.send(entry["address"].as_str().unwrap().parse().unwrap());
                }
                let mut logs = collected.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let admin: SocketAddr = admin
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("hydrant did not listen: {}", logs.lock().unwrap()));
        Self { child, admin, logs }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The value of the series `series` (name and labels, as scraped).
    fn metric(&self, series: &str) -> f64 {
        let mut socket = TcpStream::connect(self.admin).unwrap();
        socket
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        socket.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in the scrape"))
    }

    fn orders(&self, outcome: &str) -> f64 {
        self.metric(&format!(
            "hydrant_acme_orders_total{{outcome=\"{outcome}\"}}"
        ))
    }

    /// Delivers until one gets 200 (while there is no certificate, handshakes
    /// fail); that answer.
    fn first_delivery(&self, port: u16, roots: &rustls::RootCertStore) -> Answer {
        let deadline = Instant::now() + ISSUE_LIMIT;
        loop {
            match deliver(port, roots, "first") {
                Ok(answer) if answer.status == 200 => return answer,
                Ok(answer) => panic!("delivery answered {}: {}", answer.status, answer.body),
                Err(error) => assert!(
                    Instant::now() < deadline,
                    "no certificate within {ISSUE_LIMIT:?} ({error}): {}",
                    self.logs()
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_certificate_is_ordered_validated_cached_and_renewed_with_pebble() {
    let certificates = Certificates::new();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let pebble = Pebble::start(&certificates, dir.path(), port);
    let roots = pebble.roots(&certificates);

    // First run: nothing cached, so an account and an order; pebble validates
    // TLS-ALPN-01 by connecting to the ingest listener.
    let first = Running::start(&pebble, &certificates, dir.path(), port, &[]);
    assert!(
        first.logs().contains("No certificate yet"),
        "{}",
        first.logs()
    );
    let answer = first.first_delivery(port, &roots);
    let issued = answer.leaf;
    assert_eq!(first.orders("ok"), 1.0);
    assert_eq!(first.orders("failed"), 0.0);
    assert!(
        first.metric("hydrant_tls_handshakes_total{outcome=\"acme_challenge\"}") >= 1.0,
        "pebble's validation handshakes were answered"
    );
    assert!(first.metric("hydrant_tls_certificate_not_after_seconds{listener=\"ingest\"}") > 0.0);
    use std::os::unix::fs::PermissionsExt as _;
    let cache = std::fs::read_dir(dir.path().join("acme"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mode = std::fs::metadata(cache.join("certificate.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(first);

    // A restart serves the cached certificate at once and orders nothing.
    let second = Running::start(&pebble, &certificates, dir.path(), port, &[]);
    let answer = deliver(port, &roots, "after-restart").expect("the cached certificate at once");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.leaf, issued, "the same certificate");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(second.orders("ok"), 0.0, "{}", second.logs());
    assert_eq!(second.orders("failed"), 0.0, "{}", second.logs());
    drop(second);

    // A renewal point before now (pebble's certificates last years): renewed in
    // the background, deliveries all answered meanwhile, the new certificate
    // served without a restart.
    let third = Running::start(
        &pebble,
        &certificates,
        dir.path(),
        port,
        &["--acme-renew-before", "36500d"],
    );
    let deadline = Instant::now() + ISSUE_LIMIT;
    let mut deliveries = 0;
    let renewed = loop {
        let answer = deliver(port, &roots, &format!("renewal-{deliveries}"))
            .unwrap_or_else(|error| panic!("delivery {deliveries} failed: {error}"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        deliveries += 1;
        if answer.leaf != issued {
            break answer.leaf;
        }
        assert!(
            Instant::now() < deadline,
            "not renewed within {ISSUE_LIMIT:?}: {}",
            third.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(deliveries >= 1);
    assert_eq!(third.orders("ok"), 1.0);
    assert_eq!(third.orders("failed"), 0.0);
    let cached = CertificateDer::from_pem_file(cache.join("certificate.pem")).unwrap();
    assert_eq!(
        cached.as_ref(),
        renewed.as_slice(),
        "the renewed certificate is cached"
    );
}

/// Mistakes in the ACME flags stop Hydrant before it binds a port, with one line
/// and exit code 64 (EX_USAGE).
#[test]
fn acme_flag_mistakes_are_refused() {
    let certificates = Certificates::new();
    let cert = certificates.path("server.pem");
    let key = certificates.path("server.key");
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec![
                "--acme-domain",
                DOMAIN,
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
            "exclusive",
        ),
        (vec!["--acme-domain", "*.example.com"], "TLS-ALPN-01"),
        (
            vec!["--acme-domain", "bad_name.example"],
            "not a fully qualified domain name",
        ),
        (
            vec!["--acme-contact", "ops@example.com"],
            "--acme-contact needs --acme-domain",
        ),
        (
            vec![
                "--acme-domain",
                DOMAIN,
                "--acme-directory",
                "http://ca.example/dir",
            ],
            "https://",
        ),
    ];
    for (args, expected) in cases {
        let (code, _, stderr) = common::process::run(
            hydrant()
                .args(["--no-auth", "--data-dir", "/nonexistent/hydrant-acme"])
                .args(&args),
        );
        assert_eq!(code, Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}
