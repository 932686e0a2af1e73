//! Real TLS for the integration tests: a throwaway certificate authority made by the
//! `openssl` command line, and a proxy that terminates TLS in front of a plain-TCP
//! service (an S3 or Kafka server that speaks only plain TCP), so clients are tested
//! against real handshakes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The extensions of a server certificate for 127.0.0.1 and localhost.
const SERVER_EXTENSIONS: &str =
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";

/// A throwaway certificate authority with a server certificate for 127.0.0.1 and a
/// client certificate, made by the `openssl` command line in a temporary directory.
pub struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    pub fn new() -> Self {
        let certificates = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        certificates.key("ca.key");
        certificates.openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=hydrant test CA",
        ]);
        certificates.issue("server", SERVER_EXTENSIONS, 1);
        certificates.issue("client", "extendedKeyUsage=clientAuth\n", 1);
        certificates
    }

    /// Issues another server certificate for 127.0.0.1 and localhost from the same
    /// CA, valid for `days` from now, with a new key and the CA's next serial
    /// number: `name.pem` and `name.key`, whose paths it returns.
    pub fn issue_server(&self, name: &str, days: u32) -> (PathBuf, PathBuf) {
        self.issue(name, SERVER_EXTENSIONS, days);
        (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        )
    }

    /// Runs the `openssl` command line in the directory; fails the test if it fails.
    /// Its standard output.
    pub fn openssl(&self, args: &[&str]) -> String {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("the openssl command line (Debian package `openssl`) is installed");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn key(&self, name: &str) {
        self.openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            name,
        ]);
    }

    /// `name.key` and `name.pem`, signed by the CA with `extensions` for `days`;
    /// each call takes the CA's next serial number (kept in `ca.srl`).
    fn issue(&self, name: &str, extensions: &str, days: u32) {
        self.key(&format!("{name}.key"));
        std::fs::write(self.path(&format!("{name}.ext")), extensions).unwrap();
        self.openssl(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN=hydrant test {name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            &days.to_string(),
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Terminates TLS with the test server certificate on a local port and forwards
/// each connection's plain bytes to `target`; stops with the runtime.
pub struct TlsProxy {
    pub address: SocketAddr,
}

impl TlsProxy {
    pub async fn start(certificates: &Certificates, target: SocketAddr) -> Self {
        let chain = CertificateDer::pem_file_iter(certificates.path("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(certificates.path("server.key")).unwrap();
        let config = ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A failed handshake (a client that does not trust the CA) just
                    // closes the connection, as a real server would.
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self { address }
    }
}
