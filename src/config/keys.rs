//! Access keys: every source (flags, environment, key files, the config file)
//! read and checked together.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::file::read_text;
use super::{ConfigError, ENV_ACCESS_KEY_FILE, ENV_ACCESS_KEYS, Env, MAX_KEY_NAME_CHARS, invalid};
use crate::server::auth::{AccessKey, Auth, MAX_ACCESS_KEY_BYTES};

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
pub(super) fn key_sources(
    flags: &[String],
    flag_files: Vec<PathBuf>,
    file_keys: Vec<FileAccessKey>,
    file_key_file: Option<PathBuf>,
    env: Env<'_>,
    warnings: &mut Vec<String>,
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
