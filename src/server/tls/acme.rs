//! Certificates from an ACME CA (RFC 8555), validated by TLS-ALPN-01 (RFC 8737)
//! on the ingest listener itself: no port 80 and no DNS API are needed, only the
//! domain names resolving to this host and the CA reaching the listener on 443.
//!
//! - At startup, [`load_cache`] reads the certificate and key a previous run kept
//!   in the cache directory; when they are for the configured names and not
//!   expired they are served at once, so a restart orders nothing.
//! - Everything else runs in the background ([`spawn`]): the account is created
//!   (or read from the cache), and an order is placed when there is no
//!   certificate or when its renewal point has come (two thirds of its lifetime,
//!   or `--acme-renew-before` its end). For each name the CA asks for, a challenge
//!   certificate (the name as its only SAN, and the critical acmeIdentifier
//!   extension holding the SHA-256 of the key authorization) is answered by
//!   [`Certificates`] to handshakes offering ALPN `acme-tls/1`; once the order is
//!   ready, a CSR for a new key is sent, the chain downloaded, served from the
//!   next handshake on, and written to the cache.
//! - The old certificate is served until the new one is in hand. A failed order
//!   is logged (one line) and tried again after 1 minute, doubling up to 1 hour.
//! - Orders are counted by outcome in `hydrant_acme_orders_total`.
//!
//! The cache directory holds one subdirectory per ACME directory URL (an account
//! and a certificate of the staging CA are never used with the production one):
//! `account.json` (the account's key, mode 0600), `certificate.pem` (the chain),
//! `certificate.key` (its key, mode 0600) and `domains` (the names it was ordered
//! for, one a line). Each is written to a temporary file and renamed over the old.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::{Certificates, LoadError, Loaded};
use crate::metrics::AcmeRecorder;

/// Let's Encrypt's production directory, the default CA.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: the same protocol with far higher rate
/// limits, issuing certificates no client trusts; for trials.
pub const STAGING_ACME_DIRECTORY: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// The wait after a first failed order; it doubles after each further failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(60);
/// The longest wait between failed orders.
pub const MAX_RETRY: Duration = Duration::from_secs(3_600);
/// The least time between two successful orders, whatever the renewal point says
/// (a `--acme-renew-before` longer than the CA's lifetimes would otherwise order
/// without end and run into the CA's rate limits).
pub const MIN_RENEWAL_INTERVAL: Duration = Duration::from_secs(3_600);
/// The longest single sleep before the renewal point is checked again, so that a
/// clock change or a suspended host does not push a renewal back by weeks.
const CHECK_INTERVAL: Duration = Duration::from_secs(3_600);
/// How long an order may take to become ready, and then to be issued.
const ORDER_TIMEOUT: Duration = Duration::from_secs(180);

const ACCOUNT_FILE: &str = "account.json";
const CERT_FILE: &str = "certificate.pem";
const KEY_FILE: &str = "certificate.key";
const DOMAINS_FILE: &str = "domains";

/// What `--acme-*` configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names of the certificate, checked and lower case, each once.
    pub domains: Vec<String>,
    /// The email address given to the CA, without `mailto:`.
    pub contact: Option<String>,
    /// The ACME directory URL.
    pub directory: String,
    /// Where the account and the certificate are kept.
    pub cache_dir: PathBuf,
    /// Roots to trust for the directory's HTTPS instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Renew this long before expiry, instead of at two thirds of the lifetime.
    pub renew_before: Option<Duration>,
}

impl AcmeSettings {
    /// The subdirectory of this directory URL's account and certificate.
    #[must_use]
    pub fn cache(&self) -> PathBuf {
        let name: String = self
            .directory
            .trim_start_matches("https://")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.cache_dir.join(name)
    }
}

/// Checks a domain name for a certificate ordered by TLS-ALPN-01: its lower-case
/// form, or why it is refused.
///
/// # Errors
///
/// A one-line reason.
pub fn check_domain(name: &str) -> Result<String, String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.contains('*') {
        return Err(format!(
            "{name}: wildcard names cannot be validated by TLS-ALPN-01 (only DNS-01 can); name each host"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("{name}: an IP address, not a domain name"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    };
    if name.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(format!(
            "{name:?}: not a fully qualified domain name (labels of letters, digits and '-', separated by dots)"
        ));
    }
    Ok(name)
}

/// A certificate with its validity, as served.
#[derive(Clone)]
pub struct Issued {
    /// What rustls serves.
    pub loaded: Loaded,
    /// When it became valid, in seconds since the epoch.
    pub not_before: i64,
    /// When it expires, in seconds since the epoch.
    pub not_after: i64,
    /// The PEM chain, to cache.
    chain_pem: String,
    /// The PEM private key, to cache.
    key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// From a PEM chain (leaf first) and a PEM private key.
    fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, String> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("certificate chain: {error}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|error| format!("private key: {error}"))?;
        let loaded = Loaded::new(chain, &key).map_err(|error| match error {
            LoadError::Signing(reason) => format!("a key rustls cannot sign with ({reason})"),
            LoadError::Mismatch => "the key is not the certificate's".to_owned(),
        })?;
        let (Some(not_before), Some(not_after)) = (loaded.not_before, loaded.not_after) else {
            return Err("the certificate's validity cannot be read".into());
        };
        Ok(Self {
            loaded,
            not_before,
            not_after,
            chain_pem: chain_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// When it is to be renewed, in seconds since the epoch.
    #[must_use]
    pub fn renew_at(&self, renew_before: Option<Duration>) -> i64 {
        match renew_before {
            Some(before) => self
                .not_after
                .saturating_sub(i64::try_from(before.as_secs()).unwrap_or(i64::MAX)),
            None => self.not_before + (self.not_after - self.not_before) * 2 / 3,
        }
    }
}

/// The cached certificate, when there is one for `settings`' names that has not
/// expired; a cache that does not load is logged and left to be replaced.
#[must_use]
pub fn load_cache(settings: &AcmeSettings) -> Option<Issued> {
    let dir = settings.cache();
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    let (Ok(chain), Ok(key), Ok(domains)) = (read(CERT_FILE), read(KEY_FILE), read(DOMAINS_FILE))
    else {
        return None;
    };
    let mut cached: Vec<&str> = domains.lines().filter(|line| !line.is_empty()).collect();
    cached.sort_unstable();
    let mut wanted: Vec<&str> = settings.domains.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    if cached != wanted {
        tracing::info!(
            cached = cached.join(","),
            "The cached ACME certificate is for other names; a new one is ordered."
        );
        return None;
    }
    match Issued::from_pem(&chain, &key) {
        Ok(issued) if issued.not_after > now() => Some(issued),
        Ok(_) => {
            tracing::info!("The cached ACME certificate has expired; a new one is ordered.");
            None
        }
        Err(reason) => {
            tracing::warn!(
                dir = %dir.display(),
                %reason,
                "The cached ACME certificate does not load; a new one is ordered."
            );
            None
        }
    }
}

/// Keeps `certificates` served with a certificate for `settings`' names: orders
/// one when there is none (`cached` is `None`) and whenever the renewal point
/// comes; until the task is aborted.
pub fn spawn(
    settings: AcmeSettings,
    certificates: Arc<Certificates>,
    recorder: AcmeRecorder,
    cached: Option<Issued>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut current = cached;
        let mut account = None;
        let mut retry = FIRST_RETRY;
        let mut last_order: Option<tokio::time::Instant> = None;
        loop {
            if let Some(issued) = &current {
                let due = issued.renew_at(settings.renew_before);
                let wait = u64::try_from(due - now()).unwrap_or(0);
                let floor = last_order.map_or(Duration::ZERO, |at| {
                    MIN_RENEWAL_INTERVAL.saturating_sub(at.elapsed())
                });
                let wait = Duration::from_secs(wait).max(floor);
                if !wait.is_zero() {
                    tokio::time::sleep(wait.min(CHECK_INTERVAL)).await;
                    continue;
                }
            }
            match order(&settings, &mut account, &certificates).await {
                Ok(issued) => {
                    recorder.order(true);
                    tracing::info!(
                        domains = settings.domains.join(","),
                        not_after = issued.not_after,
                        "ACME certificate issued; new handshakes use it."
                    );
                    certificates.set(issued.loaded.clone());
                    if let Err(reason) = save_certificate(&settings, &issued) {
                        tracing::warn!(
                            %reason,
                            "The ACME certificate could not be cached; a restart will order again."
                        );
                    }
                    current = Some(issued);
                    last_order = Some(tokio::time::Instant::now());
                    retry = FIRST_RETRY;
                }
                Err(reason) => {
                    recorder.order(false);
                    tracing::warn!(
                        domains = settings.domains.join(","),
                        directory = settings.directory,
                        %reason,
                        retry_in = %humantime::format_duration(retry),
                        "ACME order failed; the certificate in use (if any) is kept."
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    })
}

/// One order, from the account to the issued certificate.
async fn order(
    settings: &AcmeSettings,
    account: &mut Option<Account>,
    certificates: &Certificates,
) -> Result<Issued, String> {
    let account = match account {
        Some(account) => account,
        None => account.insert(load_or_create_account(settings).await?),
    };
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|domain| Identifier::Dns(domain.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|error| format!("new order: {error}"))?;
    let mut challenged = Vec::new();
    let result =
        validate_and_finalize(&mut order, &settings.domains, certificates, &mut challenged).await;
    for domain in &challenged {
        certificates.remove_challenge(domain);
    }
    let (chain, key) = result?;
    Issued::from_pem(&chain, &key).map_err(|reason| format!("issued certificate: {reason}"))
}

/// Answers each authorization's TLS-ALPN-01 challenge (the names answered are
/// pushed to `challenged`), waits for the order to be ready, and finalizes it
/// with a CSR for `domains` and a new key: the PEM chain and key.
async fn validate_and_finalize(
    order: &mut instant_acme::Order,
    domains: &[String],
    certificates: &Certificates,
    challenged: &mut Vec<String>,
) -> Result<(String, String), String> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|error| format!("authorization: {error}"))?;
        match authorization.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            status => return Err(format!("authorization is {status:?}")),
        }
        let mut challenge = authorization
            .challenge(ChallengeType::TlsAlpn01)
            .ok_or("the CA offers no tls-alpn-01 challenge")?;
        let domain = challenge.identifier().to_string();
        let key = challenge_certificate(&domain, challenge.key_authorization().digest().as_ref())?;
        certificates.add_challenge(&domain, key);
        challenged.push(domain);
        challenge
            .set_ready()
            .await
            .map_err(|error| format!("challenge ready: {error}"))?;
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .backoff(1.5)
        .timeout(ORDER_TIMEOUT);
    let status = order
        .poll_ready(&retries)
        .await
        .map_err(|error| format!("validation: {error}"))?;
    if status != OrderStatus::Ready {
        return Err(format!("the order is {status:?} after validation"));
    }
    let key = rcgen::KeyPair::generate().map_err(|error| format!("new key: {error}"))?;
    let mut params =
        rcgen::CertificateParams::new(domains.to_vec()).map_err(|error| format!("CSR: {error}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|error| format!("CSR: {error}"))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|error| format!("finalize: {error}"))?;
    let chain = order
        .poll_certificate(&retries)
        .await
        .map_err(|error| format!("certificate: {error}"))?;
    Ok((chain, key.serialize_pem()))
}

/// The self-signed certificate answering the TLS-ALPN-01 challenge of `domain`
/// (RFC 8737 §3): `domain` as its only SAN, and the critical acmeIdentifier
/// extension holding `digest`, the SHA-256 of the key authorization.
///
/// # Errors
///
/// When rcgen cannot make it.
pub fn challenge_certificate(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let failed = |error: rcgen::Error| format!("challenge certificate for {domain}: {error}");
    if digest.len() != 32 {
        return Err(format!(
            "challenge certificate for {domain}: a digest of {} bytes, not 32",
            digest.len()
        ));
    }
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(failed)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let certificate = params.self_signed(&key).map_err(failed)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|error| format!("challenge certificate for {domain}: {error}"))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![certificate.der().clone()],
        signing,
    )))
}

/// The account of the cache, or a new one (then cached).
async fn load_or_create_account(settings: &AcmeSettings) -> Result<Account, String> {
    let builder = || match &settings.ca_file {
        Some(path) => http_client(path).map(Account::builder_with_http),
        None => Account::builder().map_err(|error| format!("HTTPS client: {error}")),
    };
    let path = settings.cache().join(ACCOUNT_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        match serde_json::from_str::<AccountCredentials>(&text) {
            Ok(credentials) => {
                return builder()?
                    .from_credentials(credentials)
                    .await
                    .map_err(|error| format!("account: {error}"));
            }
            Err(error) => tracing::warn!(
                path = %path.display(),
                %error,
                "The cached ACME account does not load; a new one is created."
            ),
        }
    }
    let contact = settings
        .contact
        .as_ref()
        .map(|email| format!("mailto:{email}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(|error| format!("new account: {error}"))?;
    tracing::info!(
        id = account.id(),
        directory = settings.directory,
        "ACME account created."
    );
    let json = serde_json::to_vec(&credentials).map_err(|error| format!("account: {error}"))?;
    if let Err(reason) = write_atomically(&path, &json, true) {
        tracing::warn!(%reason, "The ACME account could not be cached; a restart creates another.");
    }
    Ok(account)
}

/// An HTTPS client trusting the PEM roots of `path` only, with ring.
fn http_client(path: &Path) -> Result<Box<dyn instant_acme::HttpClient>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in crate::tls::pem_certificates(path)? {
        roots
            .add(certificate)
            .map_err(|error| format!("{}: {error}", path.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| format!("TLS: {error}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, instant_acme::BodyWrapper<bytes::Bytes>>(connector);
    Ok(Box::new(client))
}

/// Writes the issued certificate, its key and names to the cache.
fn save_certificate(settings: &AcmeSettings, issued: &Issued) -> Result<(), String> {
    let dir = settings.cache();
    // The key is written first: a cache with a new key but the old chain does not
    // load (the key is checked against the chain) and is replaced, never served.
    write_atomically(&dir.join(KEY_FILE), issued.key_pem.as_bytes(), true)?;
    write_atomically(&dir.join(CERT_FILE), issued.chain_pem.as_bytes(), false)?;
    let mut domains = settings.domains.join("\n");
    domains.push('\n');
    write_atomically(&dir.join(DOMAINS_FILE), domains.as_bytes(), false)
}

/// Writes `contents` to a temporary file beside `path` (mode 0600 when `secret`)
/// and renames it over `path`, so that a reader sees the old or the new file,
/// never half of one; the directory is created (mode 0700) when missing.
fn write_atomically(path: &Path, contents: &[u8], secret: bool) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let failed = |error: std::io::Error| format!("{}: {error}", path.display());
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temporary = dir.join(name);
    // A leftover of an interrupted write may have other permissions.
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&temporary)
        .map_err(failed)?;
    file.write_all(contents).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(failed)
}

/// Seconds since the epoch.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cache_dir: &Path) -> AcmeSettings {
        AcmeSettings {
            domains: vec!["hydrant.example.com".into(), "b.example.com".into()],
            contact: None,
            directory: "https://localhost:14000/dir".into(),
            cache_dir: cache_dir.to_owned(),
            ca_file: None,
            renew_before: None,
        }
    }

    /// A self-signed certificate for `names` and its key, in PEM.
    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(
            names
                .iter()
                .map(|&name| name.to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn domain_names_are_checked() {
        assert_eq!(
            check_domain("Hydrant.Example.COM.").unwrap(),
            "hydrant.example.com"
        );
        assert_eq!(check_domain("a-b.c1.example").unwrap(), "a-b.c1.example");
        let wildcard = check_domain("*.example.com").unwrap_err();
        assert!(wildcard.contains("TLS-ALPN-01"), "{wildcard}");
        for bad in [
            "",
            "localhost",
            "a..b",
            "-a.example",
            "a-.example",
            "a_b.example",
            "192.0.2.1",
            "::1",
        ] {
            assert!(check_domain(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_domain(&format!("{}.example", "a".repeat(64))).is_err());
    }

    #[test]
    fn renewal_comes_at_two_thirds_of_the_lifetime_or_the_set_time_before_the_end() {
        let (chain, key) = self_signed(&["a.example"]);
        let mut issued = Issued::from_pem(&chain, &key).unwrap();
        issued.not_before = 1_000;
        issued.not_after = 1_000 + 90 * 86_400;
        assert_eq!(issued.renew_at(None), 1_000 + 60 * 86_400);
        assert_eq!(
            issued.renew_at(Some(Duration::from_secs(7 * 86_400))),
            1_000 + 83 * 86_400
        );
        assert!(issued.renew_at(Some(Duration::from_secs(u64::MAX))) < 0);
    }

    #[test]
    fn the_challenge_certificate_carries_the_digest_in_a_critical_acme_identifier() {
        let digest = [7_u8; 32];
        let key = challenge_certificate("hydrant.example.com", &digest).unwrap();
        let der = key.cert[0].as_ref();
        // id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31), critical TRUE, then the
        // OCTET STRING holding an OCTET STRING of the 32-byte digest.
        let mut extension = vec![0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        extension.extend([0x01, 0x01, 0xff, 0x04, 0x22, 0x04, 0x20]);
        extension.extend(digest);
        assert!(
            der.windows(extension.len())
                .any(|window| window == extension.as_slice()),
            "no critical acmeIdentifier with the digest"
        );
        assert!(
            der.windows(19)
                .any(|window| window == b"hydrant.example.com")
        );
        assert!(challenge_certificate("hydrant.example.com", &[0; 31]).is_err());
    }

    #[test]
    fn the_cache_gives_back_what_was_saved_for_the_same_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        assert!(
            load_cache(&settings).is_none(),
            "an empty cache gives nothing"
        );
        let (chain, key) = self_signed(&["hydrant.example.com", "b.example.com"]);
        let issued = Issued::from_pem(&chain, &key).unwrap();
        save_certificate(&settings, &issued).unwrap();
        let cached = load_cache(&settings).expect("the saved certificate");
        assert_eq!(cached.loaded.key.cert, issued.loaded.key.cert);
        assert_eq!(cached.not_after, issued.not_after);

        use std::os::unix::fs::PermissionsExt as _;
        let mode = |name: &str| {
            std::fs::metadata(settings.cache().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(CERT_FILE), 0o644);
        assert!(settings.cache().ends_with("localhost_14000_dir"));

        let mut other = settings.clone();
        other.domains.push("c.example.com".into());
        assert!(load_cache(&other).is_none(), "other names order again");
        let mut staging = settings.clone();
        staging.directory = STAGING_ACME_DIRECTORY.into();
        assert!(
            load_cache(&staging).is_none(),
            "another CA's cache is not used"
        );

        // A key that is not the chain's does not load.
        let (_, stranger) = self_signed(&["x.example"]);
        std::fs::write(settings.cache().join(KEY_FILE), stranger).unwrap();
        assert!(load_cache(&settings).is_none());
    }
}
