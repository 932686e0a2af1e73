//! HTTPS on the ingest listener: Firehose delivers only to `https://` endpoints on
//! port 443 with a certificate of a public CA, so Hydrant terminates TLS itself
//! when given a certificate, instead of needing a proxy or load balancer in front.
//!
//! - rustls with the `ring` provider, TLS 1.3 and 1.2 only (rustls implements
//!   nothing older, so a TLS 1.1 or 1.0 client is refused in the handshake), and
//!   HTTP/1.1, offered by ALPN. HTTP/2 is not offered: Firehose sends one large
//!   request per connection at a time, where HTTP/2's multiplexing gains nothing.
//! - The certificate chain and key come from PEM files ([`CertFiles`]), or from an
//!   ACME CA such as Let's Encrypt ([`acme`]), ordered and renewed in the
//!   background and validated by TLS-ALPN-01 on this listener.
//! - PEM files are read again on SIGHUP and when either file changes
//!   ([`crate::reload`]): new handshakes use the new certificate, connections
//!   already open keep theirs (so do they when an ACME certificate is renewed). A
//!   new file that does not load (half written, a key that does not belong to the
//!   certificate) keeps the old certificate, logs one line and counts a failed
//!   reload.
//! - [`Certificates`] is the resolver rustls asks for a certificate on each
//!   handshake: the current one, or, for a TLS-ALPN-01 challenge of an ACME
//!   server (ALPN `acme-tls/1`, RFC 8737), the challenge certificate of the name
//!   asked for.
//! - A handshake must finish within the handshake timeout, and holds one of the
//!   listener's connection slots meanwhile; after it, the listener's head, body and
//!   idle timeouts apply as on plain HTTP ([`super::listener`]).
//! - Metrics: handshakes by outcome, the certificate's expiry as a gauge (so an
//!   alert can fire days before it), reloads by outcome.

pub mod acme;
pub mod x509;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::metrics::TlsRecorder;
use crate::reload::{self, Files, Hangups};

/// Default time a client has to complete the TLS handshake. A handshake is two
/// round trips and a few KB; 10 s is far beyond any working path, and bounds how
/// long a client that opens connections and sends nothing holds a slot.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// The ALPN protocol id of an ACME TLS-ALPN-01 validation (RFC 8737 §6.2).
pub const ALPN_ACME_TLS: &[u8] = b"acme-tls/1";

/// The PEM files of a certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Where the ingest listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// PEM files, read again when they change.
    Files(CertFiles),
    /// An ACME CA, ordered from and renewed in the background.
    Acme(acme::AcmeSettings),
}

/// HTTPS on the ingest listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Where the certificate comes from.
    pub certificate: CertificateSource,
    /// Time a client has to complete the handshake.
    pub handshake_timeout: Duration,
}

/// A certificate and key, loaded and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// When the leaf certificate became valid, in seconds since the epoch.
    pub not_before: Option<i64>,
    /// When the leaf certificate expires, in seconds since the epoch.
    pub not_after: Option<i64>,
}

impl CertFiles {
    /// Reads and checks the two files: a chain, a key rustls can sign with, and
    /// the key belonging to the chain's first certificate.
    ///
    /// # Errors
    ///
    /// A one-line reason naming the file.
    pub fn load(&self) -> Result<Loaded, String> {
        let chain = crate::tls::pem_certificates(&self.cert)?;
        let key = crate::tls::pem_private_key(&self.key)?;
        Loaded::new(chain, &key).map_err(|error| match error {
            LoadError::Signing(reason) => format!(
                "{}: a key rustls cannot sign with ({reason})",
                self.key.display()
            ),
            LoadError::Mismatch => format!(
                "{} is not the key of the first certificate in {}",
                self.key.display(),
                self.cert.display()
            ),
        })
    }
}

/// Why a chain and a key do not make a certificate to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// rustls cannot sign with the key (an unsupported algorithm or curve).
    Signing(String),
    /// The key is not the first certificate's.
    Mismatch,
}

impl Loaded {
    /// The certificate to serve of `chain` (leaf first) and its `key`: the one
    /// check of a pair, wherever it came from (files, or an ACME order).
    ///
    /// # Errors
    ///
    /// [`LoadError`] when rustls cannot sign with the key or it is not the leaf's.
    pub fn new(
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: &rustls::pki_types::PrivateKeyDer<'_>,
    ) -> Result<Self, LoadError> {
        let signing = rustls::crypto::ring::sign::any_supported_type(key)
            .map_err(|error| LoadError::Signing(error.to_string()))?;
        let validity = chain.first().and_then(|leaf| x509::validity(leaf.as_ref()));
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|_| LoadError::Mismatch)?;
        Ok(Self {
            key: Arc::new(certified),
            not_before: validity.map(|(not_before, _)| not_before),
            not_after: validity.map(|(_, not_after)| not_after),
        })
    }
}

/// The certificates the ingest listener serves: the current one, and the
/// challenge certificates of ACME validations in progress, by domain.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    recorder: TlsRecorder,
}

impl Certificates {
    /// No certificate yet (handshakes fail until [`Self::set`]); counted with
    /// `recorder`.
    #[must_use]
    pub fn new(recorder: TlsRecorder) -> Self {
        Self {
            current: RwLock::new(None),
            challenges: RwLock::new(HashMap::new()),
            recorder,
        }
    }

    /// Serves `loaded` from the next handshake on.
    pub fn set(&self, loaded: Loaded) {
        if let Some(not_after) = loaded.not_after {
            self.recorder.not_after(not_after);
        }
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(loaded.key);
    }

    /// Whether a certificate is being served.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Answers TLS-ALPN-01 validations of `domain` with `key` until
    /// [`Self::remove_challenge`].
    pub fn add_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(domain.to_ascii_lowercase(), key);
    }

    /// Stops answering validations of `domain`.
    pub fn remove_challenge(&self, domain: &str) {
        self.challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&domain.to_ascii_lowercase());
    }

    /// Counts a reload and logs it; on success `loaded` is served from now on.
    pub fn reloaded(&self, source: &str, loaded: Result<Loaded, String>) {
        match loaded {
            Ok(loaded) => {
                tracing::info!(
                    source,
                    not_after = loaded.not_after,
                    "TLS certificate reloaded; new handshakes use it."
                );
                self.set(loaded);
                self.recorder.reload(true);
            }
            Err(reason) => {
                tracing::warn!(
                    source,
                    %reason,
                    "TLS certificate not reloaded; the one in use is kept."
                );
                self.recorder.reload(false);
            }
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|protocol| protocol == ALPN_ACME_TLS));
        if acme {
            let domain = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&domain)
                .cloned();
        }
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The rustls configuration of the ingest listener: TLS 1.3 and 1.2 with `ring`,
/// certificates from `certificates`, HTTP/1.1 by ALPN (and `acme-tls/1` when
/// `acme` validations are to be answered).
///
/// # Errors
///
/// When rustls refuses the protocol versions (it does not, with `ring`).
pub fn server_config(
    certificates: Arc<Certificates>,
    acme: bool,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| format!("TLS: {error}"))?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    if acme {
        config.alpn_protocols.push(ALPN_ACME_TLS.to_vec());
    }
    Ok(Arc::new(config))
}

/// Terminates TLS on accepted connections.
#[derive(Clone)]
pub struct Terminator {
    acceptor: TlsAcceptor,
    timeout: Duration,
    recorder: TlsRecorder,
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Terminator {
    /// Handshakes with `config`, each within `timeout`, counted with `recorder`.
    #[must_use]
    pub fn new(config: Arc<ServerConfig>, timeout: Duration, recorder: TlsRecorder) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config),
            timeout,
            recorder,
        }
    }

    /// The handshake on `stream`: the TLS stream to serve HTTP on, or `None` when
    /// it failed, timed out, or was an ACME validation (which ends with the
    /// handshake).
    pub async fn accept(&self, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(self.timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                if stream.get_ref().1.alpn_protocol() == Some(ALPN_ACME_TLS) {
                    self.recorder
                        .handshake(HandshakeOutcome::AcmeChallenge.label());
                    return None;
                }
                self.recorder.handshake(HandshakeOutcome::Ok.label());
                Some(stream)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed.");
                self.recorder.handshake(HandshakeOutcome::Failed.label());
                None
            }
            Err(_) => {
                self.recorder.handshake(HandshakeOutcome::TimedOut.label());
                None
            }
        }
    }
}

/// How a handshake ended: the `outcome` label values of
/// `hydrant_tls_handshakes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// Done; HTTP follows.
    Ok,
    /// Refused or broken (an old protocol version, no common cipher, a client that
    /// does not trust the certificate, garbage).
    Failed,
    /// Not done within the handshake timeout.
    TimedOut,
    /// An ACME server's TLS-ALPN-01 validation, answered with its challenge
    /// certificate.
    AcmeChallenge,
}

impl HandshakeOutcome {
    /// Every outcome, to show each counter from the start.
    pub const ALL: [Self; 4] = [Self::Ok, Self::Failed, Self::TimedOut, Self::AcmeChallenge];

    /// The `outcome` label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::AcmeChallenge => "acme_challenge",
        }
    }
}

/// Reads `files` again on every SIGHUP and whenever one of them changes, serving
/// the new certificate once it loads; until the task is aborted.
pub fn spawn_reloader(
    files: CertFiles,
    certificates: Arc<Certificates>,
    hangups: Hangups,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let watched = Files::new(vec![files.cert.clone(), files.key.clone()]);
    reload::spawn(watched, hangups, interval, move || {
        let source = files.cert.display().to_string();
        certificates.reloaded(&source, files.load());
        None
    })
}

#[cfg(test)]
mod tests;
