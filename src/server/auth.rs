//! Access keys: checking `X-Amz-Firehose-Access-Key` against the configured keys.
//!
//! Several keys may be configured, each with a name (for rotation, or one key per
//! sender). The name travels with the data and into metrics; the secret never leaves
//! this module: it is not logged, not put in events, not shown by `Debug`.
//!
//! The comparison takes the same time whichever key matches and wherever a wrong key
//! differs: both sides are hashed with SHA-256 (so length differences do not shorten
//! the comparison) and every configured key is compared, without stopping early.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::error::ApiError;

/// Firehose allows access keys of up to 4096 bytes.
pub const MAX_ACCESS_KEY_BYTES: usize = 4096;

/// One configured access key.
#[derive(Clone)]
pub struct AccessKey {
    name: Arc<str>,
    digest: [u8; 32],
}

impl AccessKey {
    /// A key called `name` with secret `key`.
    #[must_use]
    pub fn new(name: &str, key: &str) -> Self {
        Self {
            name: Arc::from(name),
            digest: Sha256::digest(key.as_bytes()).into(),
        }
    }

    /// The key's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl PartialEq for AccessKey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && bool::from(self.digest.ct_eq(&other.digest))
    }
}

impl Eq for AccessKey {}

/// How requests are authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// A request must carry one of these keys.
    Keys(Vec<AccessKey>),
    /// Every request is accepted (`--no-auth`).
    #[default]
    Disabled,
}

impl Auth {
    /// Checks a request's access key header. Returns the matching key's name, or
    /// `None` when authentication is disabled.
    ///
    /// # Errors
    ///
    /// [`ApiError::MissingAccessKey`] without a header while keys are required,
    /// [`ApiError::InvalidAccessKey`] when it matches none of them.
    pub fn check(&self, presented: Option<&[u8]>) -> Result<Option<Arc<str>>, ApiError> {
        let Self::Keys(keys) = self else {
            return Ok(None);
        };
        let presented = presented.ok_or(ApiError::MissingAccessKey)?;
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // Compare with every key, remembering the match without branching on it.
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (position, key) in (0u32..).zip(keys) {
            let matches = key.digest.ct_eq(&digest);
            index.conditional_assign(&position, matches);
            found |= matches;
        }
        if bool::from(found) {
            let key = &keys[usize::try_from(index).unwrap_or_default()];
            Ok(Some(Arc::clone(&key.name)))
        } else {
            Err(ApiError::InvalidAccessKey)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Auth {
        Auth::Keys(vec![
            AccessKey::new("prod", "s3cret"),
            AccessKey::new("rotated", "n3w=key=="),
        ])
    }

    #[test]
    fn check_table() {
        type Row<'a> = (Option<&'a [u8]>, Result<Option<&'a str>, ApiError>);
        let table: &[Row<'_>] = &[
            (Some(b"s3cret"), Ok(Some("prod"))),
            (Some(b"n3w=key=="), Ok(Some("rotated"))),
            (Some(b"s3cret "), Err(ApiError::InvalidAccessKey)),
            (Some(b"S3CRET"), Err(ApiError::InvalidAccessKey)),
            (Some(b""), Err(ApiError::InvalidAccessKey)),
            (None, Err(ApiError::MissingAccessKey)),
        ];
        let auth = keys();
        for (presented, expected) in table {
            let got = auth.check(*presented);
            let got = got.as_ref().map(|name| name.as_deref());
            assert_eq!(got, expected.as_ref().map(|name| *name), "{presented:?}");
        }
    }

    #[test]
    fn disabled_accepts_anything_without_a_name() {
        assert_eq!(Auth::Disabled.check(None), Ok(None));
        assert_eq!(Auth::Disabled.check(Some(b"whatever")), Ok(None));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", keys());
        assert!(
            !shown.contains("s3cret") && shown.contains("<redacted>") && shown.contains("prod")
        );
    }
}
