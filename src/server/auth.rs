//! Access keys: checking `X-Amz-Firehose-Access-Key` against the configured keys.
//!
//! Several keys may be configured, each with a name (for rotation, or one key per
//! sender). The name travels with the data and into metrics; the secret never leaves
//! this module: it is not logged, not put in events, not shown by `Debug`.
//!
//! The comparison takes the same time whichever key matches and wherever a wrong key
//! differs: both sides are hashed with SHA-256 (so length differences do not shorten
//! the comparison) and every configured key is compared, without stopping early.
//!
//! The keys in use can be replaced while requests run ([`SharedAuth`]): a reload
//! builds the new set in full, then swaps it in at once, so a request sees either
//! the old set or the new one, never a mix, and never waits for a reload.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus::IntGauge;
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

    /// The number of keys (0 when authentication is disabled).
    #[must_use]
    pub fn key_count(&self) -> usize {
        match self {
            Self::Keys(keys) => keys.len(),
            Self::Disabled => 0,
        }
    }
}

/// The [`Auth`] requests are checked against, replaceable as a whole while they
/// run. Each request takes the current set (a pointer copy under a lock held for
/// no longer than that); [`Self::replace`] swaps in a set built beforehand, so a
/// request never waits for a reload to read files or hash keys.
#[derive(Debug, Clone)]
pub struct SharedAuth {
    current: Arc<RwLock<Arc<Auth>>>,
    /// The number of keys in use, kept beside them.
    key_count: IntGauge,
}

/// What replacing the keys changed, by name (never a secret).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChange {
    /// Names that are new.
    pub added: Vec<Arc<str>>,
    /// Names that are gone.
    pub removed: Vec<Arc<str>>,
    /// Names kept with another secret.
    pub changed: Vec<Arc<str>>,
    /// Keys in use now.
    pub count: usize,
}

/// Why a new set of keys was not taken; the old set stays in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceError {
    /// The new set has no key while authentication is on.
    #[error("no access key would be left")]
    NoKey,
    /// The new configuration turns authentication off.
    #[error(
        "the configuration now turns authentication off (--no-auth), which only a restart can do"
    )]
    WouldDisable,
    /// The new configuration has keys while authentication is off.
    #[error(
        "the configuration now has access keys while authentication is off (--no-auth); turning it on takes a restart"
    )]
    WouldEnable,
}

impl SharedAuth {
    /// Starts with `auth`, its key count shown by `key_count`.
    #[must_use]
    pub fn new(auth: Auth, key_count: IntGauge) -> Self {
        key_count.set(i64::try_from(auth.key_count()).unwrap_or(i64::MAX));
        Self {
            current: Arc::new(RwLock::new(Arc::new(auth))),
            key_count,
        }
    }

    /// The keys in use now.
    #[must_use]
    pub fn current(&self) -> Arc<Auth> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `next` in use, unless it would leave no key or switch authentication
    /// on or off (both take a restart, so that a mistaken edit cannot open the
    /// listener to anyone).
    ///
    /// # Errors
    ///
    /// [`ReplaceError`], the keys in use left as they were.
    pub fn replace(&self, next: Auth) -> Result<KeyChange, ReplaceError> {
        let old = self.current();
        let change = match (old.as_ref(), &next) {
            (Auth::Disabled, Auth::Disabled) => KeyChange::default(),
            (Auth::Keys(_), Auth::Disabled) => return Err(ReplaceError::WouldDisable),
            (Auth::Disabled, Auth::Keys(_)) => return Err(ReplaceError::WouldEnable),
            (Auth::Keys(_), Auth::Keys(keys)) if keys.is_empty() => {
                return Err(ReplaceError::NoKey);
            }
            (Auth::Keys(before), Auth::Keys(after)) => {
                let named = |keys: &[AccessKey], name: &str| {
                    keys.iter().find(|key| key.name() == name).cloned()
                };
                let mut change = KeyChange {
                    count: after.len(),
                    ..KeyChange::default()
                };
                for key in after {
                    match named(before, key.name()) {
                        None => change.added.push(Arc::clone(&key.name)),
                        Some(same) if same != *key => change.changed.push(Arc::clone(&key.name)),
                        Some(_) => {}
                    }
                }
                for key in before {
                    if named(after, key.name()).is_none() {
                        change.removed.push(Arc::clone(&key.name));
                    }
                }
                change
            }
        };
        self.key_count
            .set(i64::try_from(next.key_count()).unwrap_or(i64::MAX));
        let next = Arc::new(next);
        let previous = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(PoisonError::into_inner),
            next,
        );
        // The old set is dropped here, outside the lock (or later, by the last
        // request still holding it).
        drop(previous);
        Ok(change)
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

    fn shared(auth: Auth) -> SharedAuth {
        SharedAuth::new(auth, IntGauge::new("keys", "keys").unwrap())
    }

    #[test]
    fn replacing_keys_reports_names_and_swaps_at_once() {
        let auth = shared(keys());
        let held = auth.current();
        let change = auth
            .replace(Auth::Keys(vec![
                AccessKey::new("prod", "other"),
                AccessKey::new("next", "n3xt"),
            ]))
            .unwrap();
        let names = |names: &[Arc<str>]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&change.added), ["next"]);
        assert_eq!(names(&change.removed), ["rotated"]);
        assert_eq!(names(&change.changed), ["prod"]);
        assert_eq!(change.count, 2);
        assert_eq!(auth.key_count.get(), 2);
        let now = auth.current();
        assert_eq!(now.check(Some(b"n3xt")), Ok(Some(Arc::from("next"))));
        assert_eq!(now.check(Some(b"s3cret")), Err(ApiError::InvalidAccessKey));
        // A request that took the old set before the swap finishes with it.
        assert_eq!(held.check(Some(b"s3cret")), Ok(Some(Arc::from("prod"))));
    }

    #[test]
    fn a_replacement_that_empties_or_switches_auth_keeps_the_old_set() {
        let auth = shared(keys());
        assert_eq!(
            auth.replace(Auth::Keys(Vec::new())),
            Err(ReplaceError::NoKey)
        );
        assert_eq!(
            auth.replace(Auth::Disabled),
            Err(ReplaceError::WouldDisable)
        );
        assert_eq!(*auth.current(), keys());
        assert_eq!(auth.key_count.get(), 2);
        let open = shared(Auth::Disabled);
        assert_eq!(open.replace(keys()), Err(ReplaceError::WouldEnable));
        assert_eq!(*open.current(), Auth::Disabled);
        assert_eq!(open.replace(Auth::Disabled), Ok(KeyChange::default()));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", keys());
        assert!(
            !shown.contains("s3cret") && shown.contains("<redacted>") && shown.contains("prod")
        );
    }
}
