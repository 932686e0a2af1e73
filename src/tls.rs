//! The one TLS crypto backend of the process.
//!
//! rustls needs a *crypto provider* (the algorithms behind a handshake). A binary
//! that links two of them (say `ring` through the NATS client and `aws-lc-rs`
//! through the S3 client) has no obvious default, and rustls then panics in the
//! first handshake that asks for one ("Could not automatically determine the
//! process-level CryptoProvider"), inside a connection task where nobody sees it.
//! Hydrant builds only `ring` (the Cargo manifest turns the others off) and
//! installs it as the process default before any client starts, so every TLS
//! connection — NATS, S3, Kafka — uses the same, known backend.

use std::path::Path;
use std::sync::Once;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Installs `ring` as rustls's process-wide default crypto provider. Safe to call
/// any number of times and from anywhere; only the first call does anything.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means another provider was installed first (an embedding
        // program's choice), which is as good: it is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The certificates in the PEM file at `path`: at least one.
///
/// # Errors
///
/// The file's name and what is wrong (unreadable, not PEM, no certificate), for a
/// configuration error.
pub fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certificates)
}

/// The private key in the PEM file at `path`.
///
/// # Errors
///
/// The file's name and what is wrong, for a configuration error.
pub fn pem_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|error| format!("{}: no usable private key ({error})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_installing_there_is_a_process_default() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn pem_files_are_checked_for_what_they_should_hold() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let empty = write("empty.pem", "");
        let garbage = write("garbage.pem", "not pem at all\n");
        let missing = dir.path().join("missing.pem");
        for path in [&empty, &garbage, &missing] {
            let error = pem_certificates(path).unwrap_err();
            assert!(error.contains(&path.display().to_string()), "{error}");
            assert!(pem_private_key(path).is_err());
        }
    }
}
