//! Access keys: every source (flags, environment, key files, the config file)
//! read and checked together; and read again, without a restart, when a file they
//! come from changes or the process gets SIGHUP ([`KeyReload`]).
//!
//! A key file holds `NAME=KEY` lines, or the JSON AWS Secrets Manager keeps an
//! HTTP endpoint's key in for Firehose, `{"api_key": "..."}` (see
//! <https://docs.aws.amazon.com/firehose/latest/dev/secrets-manager-whats-secret.html>,
//! "Format of secret for HTTP endpoint"): one key, named after the file.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::file::read_text;
use super::{
    ConfigError, ENV_ACCESS_KEY_FILE, ENV_ACCESS_KEYS, Env, Invocation, MAX_KEY_NAME_CHARS, invalid,
};
use crate::metrics::{Metrics, RELOAD_TARGET_ACCESS_KEYS};
use crate::reload::{self, Files, Hangups};
use crate::server::auth::{AccessKey, Auth, KeyChange, MAX_ACCESS_KEY_BYTES, SharedAuth};

/// The field of a Secrets Manager secret that holds an HTTP endpoint's key.
const SECRETS_MANAGER_FIELD: &str = "api_key";

/// An `[[access_keys]]` entry of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAccessKey {
    name: String,
    key: String,
}

/// Where each access key came from: a label for messages and the `NAME=KEY` pairs.
#[derive(Debug, Default)]
pub(super) struct KeySource {
    pub(super) label: String,
    pub(super) keys: Vec<(String, String)>,
}

/// The keys of every source, in order: flags, `HYDRANT_ACCESS_KEYS`, key files
/// (each file once, however often it is named), the file's `[[access_keys]]`.
/// Every key file read is added to `files`.
pub(super) fn key_sources(
    flags: &[String],
    flag_files: Vec<PathBuf>,
    file_keys: Vec<FileAccessKey>,
    file_key_file: Option<PathBuf>,
    env: Env<'_>,
    warnings: &mut Vec<String>,
    files: &mut Vec<PathBuf>,
) -> Result<Vec<KeySource>, ConfigError> {
    let mut sources = vec![KeySource {
        label: "--access-key".into(),
        keys: parse_key_entries(flags.iter().map(String::as_str), "--access-key")?,
    }];
    if let Some(entries) = env(ENV_ACCESS_KEYS) {
        let entries = entries
            .into_string()
            .map_err(|_| invalid(format!("{ENV_ACCESS_KEYS} is not valid UTF-8")))?;
        let lines = entries
            .lines()
            .map(|line| line.trim_end_matches('\r'))
            .filter(|line| !line.trim().is_empty());
        sources.push(KeySource {
            label: ENV_ACCESS_KEYS.into(),
            keys: parse_key_entries(lines, ENV_ACCESS_KEYS)?,
        });
    }
    let mut key_files: Vec<(PathBuf, &str)> = flag_files
        .into_iter()
        .map(|path| (path, "--access-key-file"))
        .collect();
    if let Some(path) = env(ENV_ACCESS_KEY_FILE).filter(|path| !path.is_empty()) {
        key_files.push((PathBuf::from(path), ENV_ACCESS_KEY_FILE));
    }
    if let Some(path) = file_key_file {
        key_files.push((path, "access_key_file in the config file"));
    }
    for (index, (path, named_by)) in key_files.iter().enumerate() {
        // The same file named twice (say by the flag and by the config file) is
        // one source, not a clash of every name in it with itself.
        if key_files[..index].iter().any(|(other, _)| other == path) {
            continue;
        }
        files.push(path.clone());
        sources.push(KeySource {
            label: format!("access key file {} ({named_by})", path.display()),
            keys: read_key_file(path, warnings)?,
        });
    }
    sources.push(KeySource {
        label: "[[access_keys]] in the config file".into(),
        keys: file_keys
            .into_iter()
            .map(|entry| (entry.name, entry.key))
            .collect(),
    });
    Ok(sources)
}

/// Splits `NAME=KEY` at the first `=`, so keys may contain `=` (base64 padding).
fn parse_key_entry(entry: &str) -> Result<(String, String), String> {
    let (name, key) = entry
        .split_once('=')
        .ok_or_else(|| "expected NAME=KEY".to_owned())?;
    Ok((name.trim().to_owned(), key.to_owned()))
}

pub(super) fn parse_key_entries<'a>(
    entries: impl Iterator<Item = &'a str>,
    source: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    entries
        .map(|entry| {
            parse_key_entry(entry).map_err(|reason| invalid(format!("{source}: {reason}")))
        })
        .collect()
}

pub(super) fn read_key_file(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let text = read_text(path, "access key file")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            warnings.push(format!(
                "access key file {} can be read by other users; chmod 600 it",
                path.display()
            ));
        }
    }
    if text.trim_start().starts_with('{') {
        return secrets_manager_key(path, &text).map(|key| vec![key]);
    }
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        keys.push(parse_key_entry(line).map_err(|reason| {
            invalid(format!(
                "access key file {} line {}: {reason}",
                path.display(),
                number + 1
            ))
        })?);
    }
    Ok(keys)
}

/// The one key of a file in the Secrets Manager format, `{"api_key": "..."}`,
/// named after the file without its extension (`/secrets/firehose-prod.json` is
/// `firehose-prod`). Other fields are ignored. Messages never show a value.
fn secrets_manager_key(path: &Path, text: &str) -> Result<(String, String), ConfigError> {
    let refuse = |reason: String| {
        invalid(format!(
            "access key file {} (JSON, as AWS Secrets Manager stores a Firehose key): {reason}",
            path.display()
        ))
    };
    let document: serde_json::Value =
        serde_json::from_str(text).map_err(|error| refuse(format!("not valid JSON ({error})")))?;
    let serde_json::Value::Object(fields) = document else {
        return Err(refuse("expected an object".into()));
    };
    let kind = match fields.get(SECRETS_MANAGER_FIELD) {
        Some(serde_json::Value::String(key)) if key.is_empty() => {
            return Err(refuse(format!("\"{SECRETS_MANAGER_FIELD}\" is empty")));
        }
        Some(serde_json::Value::String(key)) => {
            // The name is checked with every other by `build_auth`.
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok((name, key.clone()));
        }
        None => return Err(refuse(format!("no \"{SECRETS_MANAGER_FIELD}\" field"))),
        Some(serde_json::Value::Null) => "null",
        Some(serde_json::Value::Bool(_)) => "a boolean",
        Some(serde_json::Value::Number(_)) => "a number",
        Some(serde_json::Value::Array(_)) => "an array",
        Some(serde_json::Value::Object(_)) => "an object",
    };
    Err(refuse(format!(
        "\"{SECRETS_MANAGER_FIELD}\" must be a string, not {kind}"
    )))
}

/// Checks the keys of every source together: names unique across all of them
/// (a clash names both sources), secrets unique, no keys with `--no-auth`.
pub(super) fn build_auth(sources: &[KeySource], no_auth: bool) -> Result<Auth, ConfigError> {
    let given: Vec<&str> = sources
        .iter()
        .filter(|source| !source.keys.is_empty())
        .map(|source| source.label.as_str())
        .collect();
    if no_auth {
        if !given.is_empty() {
            return Err(invalid(format!(
                "--no-auth cannot be combined with access keys (given by {})",
                given.join(", ")
            )));
        }
        return Ok(Auth::Disabled);
    }
    if given.is_empty() {
        return Err(invalid(format!(
            "no access key configured: pass --access-key NAME=KEY, {ENV_ACCESS_KEYS} or --access-key-file FILE (or --no-auth to accept unauthenticated deliveries)"
        )));
    }
    let mut checked: Vec<(AccessKey, &str)> = Vec::new();
    let mut secrets: Vec<(&str, &str)> = Vec::new();
    for source in sources {
        for (name, key) in &source.keys {
            let name_ok = !name.is_empty()
                && name.chars().count() <= MAX_KEY_NAME_CHARS
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !name_ok {
                return Err(invalid(format!(
                    "access key name {name:?} ({}) must be 1-{MAX_KEY_NAME_CHARS} characters of letters, digits, '-', '_' or '.'",
                    source.label
                )));
            }
            if key.is_empty() || key.len() > MAX_ACCESS_KEY_BYTES {
                return Err(invalid(format!(
                    "access key {name:?} ({}) must be 1-{MAX_ACCESS_KEY_BYTES} bytes long",
                    source.label
                )));
            }
            if let Some((_, first)) = checked.iter().find(|(existing, _)| existing.name() == name) {
                return Err(invalid(if *first == source.label {
                    format!(
                        "access key name {name:?} is configured twice by {}",
                        source.label
                    )
                } else {
                    format!(
                        "access key name {name:?} is configured twice: by {first} and by {}",
                        source.label
                    )
                }));
            }
            if let Some((_, other)) = secrets.iter().find(|(secret, _)| *secret == key) {
                return Err(invalid(format!(
                    "access key {name:?} has the same secret as {other:?}; each key needs its own"
                )));
            }
            secrets.push((key, name));
            checked.push((AccessKey::new(name, key), &source.label));
        }
    }
    Ok(Auth::Keys(
        checked.into_iter().map(|(key, _)| key).collect(),
    ))
}

/// What it takes to read the access keys again: the command line they were first
/// read with and the files they came from (the key files and the config file).
/// Flags and environment variables cannot change in a running process, so reading
/// again parses the same command line, the same way as at startup, and only what
/// the files say can differ.
#[derive(Clone)]
pub struct KeyReload {
    args: Vec<OsString>,
    files: Vec<PathBuf>,
}

impl fmt::Debug for KeyReload {
    // Not the arguments: `--access-key` carries secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyReload")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl KeyReload {
    pub(super) fn new(args: Vec<OsString>, files: Vec<PathBuf>) -> Self {
        Self { args, files }
    }

    /// The files the keys are read from, which are watched.
    #[must_use]
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Re-reads the keys on every SIGHUP of `hangups` and whenever one of the
    /// files changes (checked every [`reload::POLL_INTERVAL`]), putting them in
    /// use in `auth` (see [`Self::reload`]), until the task is aborted.
    #[must_use]
    pub fn spawn(
        self,
        hangups: Hangups,
        auth: SharedAuth,
        metrics: Arc<Metrics>,
    ) -> tokio::task::JoinHandle<()> {
        let files = Files::new(self.files.clone());
        let mut this = self;
        reload::spawn(files, hangups, reload::POLL_INTERVAL, move || {
            let _ = this.reload(&auth, &metrics, &|name| std::env::var_os(name));
            Some(this.files.clone())
        })
    }

    /// Reads the keys again and, if they are complete and checked, puts them in
    /// use; otherwise keeps those in use. Either way logs one line (names, counts,
    /// files and the reason, never a key) and counts the reload.
    ///
    /// # Errors
    ///
    /// Why the keys were not replaced, as logged.
    pub(super) fn reload(
        &mut self,
        auth: &SharedAuth,
        metrics: &Metrics,
        env: Env<'_>,
    ) -> Result<KeyChange, String> {
        let replaced =
            self.read(env)
                .map_err(|error| error.to_string())
                .and_then(|(next, files)| {
                    // The configuration file may name other key files now: they are
                    // the ones to watch, whether or not their keys are taken.
                    self.files = files;
                    auth.replace(next).map_err(|error| error.to_string())
                });
        metrics.record_reload(RELOAD_TARGET_ACCESS_KEYS, replaced.is_ok());
        let files = self
            .files
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match &replaced {
            Ok(change) => {
                let names = |names: &[Arc<str>]| names.join(",");
                tracing::info!(
                    added = %names(&change.added),
                    removed = %names(&change.removed),
                    changed = %names(&change.changed),
                    keys = change.count,
                    files = %files,
                    "Access keys reloaded."
                );
            }
            Err(reason) => tracing::warn!(
                reason = %reason,
                files = %files,
                "Access keys not reloaded; the keys in use are kept."
            ),
        }
        replaced
    }

    /// The keys as the configuration gives them now, and the files they come
    /// from: the command line parsed again, the files read again, everything
    /// checked as at startup.
    fn read(&self, env: Env<'_>) -> Result<(Auth, Vec<PathBuf>), ConfigError> {
        match Invocation::from_args_and_env(self.args.iter().cloned(), env)? {
            Invocation::Serve(config)
            | Invocation::Validate(config)
            | Invocation::Check(config) => Ok((config.auth, config.key_files)),
            Invocation::HealthCheck(_) => Err(invalid("the command line no longer serves")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::error::ApiError;

    const KEY_A: &str = "key-a-0123456789";
    const KEY_B: &str = "key-b-0123456789";

    fn json_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("firehose.json");
        std::fs::write(&path, text).unwrap();
        read_key_file(&path, &mut Vec::new())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_secrets_manager_file_is_one_key_named_after_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("firehose-prod.json");
        std::fs::write(
            &path,
            format!("\n  {{\"api_key\": \"{KEY_A}\", \"note\": \"ignored\"}}\n"),
        )
        .unwrap();
        let keys = read_key_file(&path, &mut Vec::new()).unwrap();
        assert_eq!(keys, [("firehose-prod".to_owned(), KEY_A.to_owned())]);
        // And so it is read at startup, from --access-key-file.
        let config = parse_config(&path);
        assert_eq!(
            config.auth.check(Some(KEY_A.as_bytes())),
            Ok(Some(Arc::from("firehose-prod")))
        );
    }

    #[test]
    fn a_secrets_manager_file_without_a_usable_api_key_is_refused() {
        let table = [
            (r#"{"apikey": "x"}"#, r#"no "api_key" field"#),
            (r#"{"api_key": ""}"#, r#""api_key" is empty"#),
            (
                r#"{"api_key": 42}"#,
                r#""api_key" must be a string, not a number"#,
            ),
            (
                r#"{"api_key": null}"#,
                r#""api_key" must be a string, not null"#,
            ),
            (r#"{"api_key": "sec"#, "not valid JSON"),
            (r#"{"api_key": "s3cret-value",}"#, "not valid JSON"),
        ];
        for (text, expected) in table {
            let error = json_error(text);
            assert!(
                error.contains(expected) && error.contains("firehose.json"),
                "{text}: {error}"
            );
            assert!(!error.contains("s3cret-value"), "{text}: {error}");
        }
    }

    #[test]
    fn a_secrets_manager_file_whose_name_is_no_key_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fire hose.json");
        std::fs::write(&path, format!(r#"{{"api_key": "{KEY_A}"}}"#)).unwrap();
        let args = ["hydrant", "--access-key-file", path.to_str().unwrap()];
        let error = Invocation::from_args_and_env(args, &|_| None).unwrap_err();
        assert!(
            error.to_string().contains(r#"access key name "fire hose""#),
            "{error}"
        );
    }

    fn parse_config(key_file: &Path) -> super::super::Config {
        let args = ["hydrant", "--access-key-file", key_file.to_str().unwrap()];
        match Invocation::from_args_and_env(args, &|_| None).unwrap() {
            Invocation::Serve(config) => *config,
            other => panic!("{other:?}"),
        }
    }

    /// The configuration a server started with `--config config` serves with.
    fn serving_with(config: &Path) -> super::super::Config {
        let args = ["hydrant", "--config", config.to_str().unwrap()];
        match Invocation::from_args_and_env(args, &|_| None).unwrap() {
            Invocation::Serve(config) => *config,
            other => panic!("{other:?}"),
        }
    }

    /// A server's keys as started from `key_file`, and what reloads them.
    fn started(key_file: &Path, metrics: &Metrics) -> (SharedAuth, KeyReload) {
        let config = parse_config(key_file);
        let reload = config.key_reload.expect("keys from a file are reloadable");
        assert_eq!(reload.files(), [key_file.to_path_buf()]);
        (
            SharedAuth::new(config.auth, metrics.access_keys_gauge()),
            reload,
        )
    }

    fn accepts(auth: &SharedAuth, key: &str) -> Result<Option<Arc<str>>, ApiError> {
        auth.current().check(Some(key.as_bytes()))
    }

    fn reloads(metrics: &Metrics, outcome: &str) -> String {
        let prefix =
            format!("hydrant_reloads_total{{outcome=\"{outcome}\",target=\"access_keys\"}} ");
        metrics
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
            .unwrap()
    }

    #[test]
    fn a_reload_adds_and_removes_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("a={KEY_A}\n")).unwrap();
        let metrics = Metrics::new(1);
        let (auth, mut reload) = started(&path, &metrics);
        assert!(metrics.render().contains("hydrant_access_keys 1"));

        std::fs::write(&path, format!("a={KEY_A}\nb={KEY_B}\n")).unwrap();
        let change = reload.reload(&auth, &metrics, &|_| None).unwrap();
        assert_eq!(change.added, [Arc::from("b")]);
        assert_eq!(accepts(&auth, KEY_A), Ok(Some(Arc::from("a"))));
        assert_eq!(accepts(&auth, KEY_B), Ok(Some(Arc::from("b"))));
        assert!(metrics.render().contains("hydrant_access_keys 2"));

        std::fs::write(&path, format!("b={KEY_B}\n")).unwrap();
        let change = reload.reload(&auth, &metrics, &|_| None).unwrap();
        assert_eq!((change.removed, change.count), (vec![Arc::from("a")], 1));
        assert_eq!(accepts(&auth, KEY_A), Err(ApiError::InvalidAccessKey));
        assert_eq!(accepts(&auth, KEY_B), Ok(Some(Arc::from("b"))));
        assert_eq!(
            (reloads(&metrics, "ok"), reloads(&metrics, "failed")),
            ("2".into(), "0".into())
        );
        assert!(metrics.render().contains("hydrant_access_keys 1"));
    }

    #[test]
    fn a_reload_that_leaves_no_key_or_does_not_parse_keeps_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("a={KEY_A}\n")).unwrap();
        let metrics = Metrics::new(1);
        let (auth, mut reload) = started(&path, &metrics);
        let table = [
            (
                "# every key removed\n".to_owned(),
                "no access key configured",
            ),
            (format!("a{KEY_B}\n"), "line 1: expected NAME=KEY"),
            (format!("a={KEY_A}\na={KEY_B}\n"), "configured twice"),
            (r#"{"api_key": ""}"#.to_owned(), "is empty"),
        ];
        for (failures, (text, expected)) in (1..).zip(table) {
            std::fs::write(&path, &text).unwrap();
            let error = reload.reload(&auth, &metrics, &|_| None).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains(KEY_A) && !error.contains(KEY_B), "{error}");
            assert_eq!(accepts(&auth, KEY_A), Ok(Some(Arc::from("a"))), "{text}");
            assert_eq!(reloads(&metrics, "failed"), failures.to_string());
        }
        std::fs::remove_file(&path).unwrap();
        assert!(
            reload.reload(&auth, &metrics, &|_| None).is_err(),
            "a missing file"
        );
        assert_eq!(accepts(&auth, KEY_A), Ok(Some(Arc::from("a"))));
        assert_eq!(
            (reloads(&metrics, "ok"), reloads(&metrics, "failed")),
            ("0".into(), "5".into())
        );
        assert!(metrics.render().contains("hydrant_access_keys 1"));
    }

    #[test]
    fn a_reload_cannot_turn_authentication_off_or_on() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("hydrant.toml");
        std::fs::write(
            &config,
            format!("[[access_keys]]\nname = \"a\"\nkey = \"{KEY_A}\"\n"),
        )
        .unwrap();
        let started = serving_with(&config);
        let metrics = Metrics::new(1);
        let mut reload = started.key_reload.unwrap();
        assert_eq!(reload.files(), std::slice::from_ref(&config));
        let auth = SharedAuth::new(started.auth, metrics.access_keys_gauge());
        std::fs::write(&config, "no_auth = true\n").unwrap();
        let error = reload.reload(&auth, &metrics, &|_| None).unwrap_err();
        assert!(error.contains("only a restart"), "{error}");
        assert_eq!(accepts(&auth, KEY_A), Ok(Some(Arc::from("a"))));

        let open = SharedAuth::new(Auth::Disabled, metrics.access_keys_gauge());
        std::fs::write(
            &config,
            format!("[[access_keys]]\nname = \"a\"\nkey = \"{KEY_A}\"\n"),
        )
        .unwrap();
        let error = reload.reload(&open, &metrics, &|_| None).unwrap_err();
        assert!(error.contains("takes a restart"), "{error}");
        assert_eq!(*open.current(), Auth::Disabled);
        assert_eq!(reloads(&metrics, "failed"), "2");
    }

    /// The configuration file names another key file: after the reload, that file
    /// is the one watched, and its keys are in use.
    #[test]
    fn a_key_file_named_anew_is_watched_from_the_reload_on() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("hydrant.toml");
        let (old, new) = (dir.path().join("old.keys"), dir.path().join("new.keys"));
        std::fs::write(&old, format!("a={KEY_A}\n")).unwrap();
        std::fs::write(&new, format!("b={KEY_B}\n")).unwrap();
        let names = |file: &Path| format!("access_key_file = {:?}\n", file.to_str().unwrap());
        std::fs::write(&config, names(&old)).unwrap();
        let started = serving_with(&config);
        let metrics = Metrics::new(1);
        let mut reload = started.key_reload.unwrap();
        assert!(reload.files().contains(&old) && !reload.files().contains(&new));
        let auth = SharedAuth::new(started.auth, metrics.access_keys_gauge());
        std::fs::write(&config, names(&new)).unwrap();
        reload.reload(&auth, &metrics, &|_| None).unwrap();
        assert!(
            reload.files().contains(&new) && !reload.files().contains(&old),
            "{:?}",
            reload.files()
        );
        assert_eq!(accepts(&auth, KEY_B), Ok(Some(Arc::from("b"))));
        assert!(accepts(&auth, KEY_A).is_err());
    }
}
