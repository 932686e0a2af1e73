//! `[[sinks]]`: the keys every sink takes (`name`, `gates_readiness`) and what
//! involves several sinks (unique names, data directories and scrape paths). A sink's own
//! settings are read and checked by its type, [`SinkConfig::from_table`].

use super::{ConfigError, MAX_KEY_NAME_CHARS, invalid};
use crate::routing::MAX_SINKS;
use crate::sink::SinkConfig;
use crate::sink::file::{FileConfig, FileSinkSettings};

/// Name of the embedded file sink (the one `--data-dir` configures).
pub const EMBEDDED_SINK: &str = "file";

/// The `[[sinks]]` key that says whether a sink gates `/readyz`; every sink type
/// takes it.
const GATES_READINESS_KEY: &str = "gates_readiness";

/// A configured sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    /// Its name, used by routes and metrics.
    pub name: String,
    /// Its type and settings.
    pub config: SinkConfig,
    /// Whether `/readyz` answers 503 while the sink is down: the `gates_readiness`
    /// key, by default as [`crate::sink::Sink::gates_readiness_by_default`] says.
    pub gates_readiness: bool,
}

/// The embedded file sink, then each `[[sinks]]` table in order; `locations` says
/// where each table starts, for messages.
pub(super) fn build_sinks(
    tables: Vec<toml::Spanned<toml::Table>>,
    locations: &[String],
    embedded: &FileSinkSettings,
    warnings: &mut Vec<String>,
) -> Result<Vec<SinkSpec>, ConfigError> {
    let embedded = SinkConfig::File(FileConfig::embedded(embedded));
    let mut sinks = vec![SinkSpec {
        name: EMBEDDED_SINK.to_owned(),
        gates_readiness: embedded.gates_readiness_by_default(),
        config: embedded,
    }];
    for (index, spanned) in tables.into_iter().enumerate() {
        let mut table = spanned.into_inner();
        // Each message below names the sink and where its entry starts.
        let at = locations
            .get(index)
            .map(|at| format!(" ({})", at.trim_start()))
            .unwrap_or_default();
        let Some(toml::Value::String(name)) = table.remove("name") else {
            return Err(invalid(format!(
                "[[sinks]] entry {}{at} needs a name",
                index + 1
            )));
        };
        let sink = format!("sink {name:?}{at}");
        let valid_name = !name.is_empty()
            && name.len() <= MAX_KEY_NAME_CHARS
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !valid_name {
            return Err(invalid(format!(
                "sink name {name:?}{at} must be 1-{MAX_KEY_NAME_CHARS} letters, digits, '-' or '_'"
            )));
        }
        if sinks.iter().any(|sink| sink.name == name) {
            return Err(invalid(format!(
                "sink name {name:?}{at} is used twice (\"{EMBEDDED_SINK}\" is the embedded file sink)"
            )));
        }
        let gates_readiness = match table.remove(GATES_READINESS_KEY) {
            None => None,
            Some(toml::Value::Boolean(gates)) => Some(gates),
            Some(_) => {
                return Err(invalid(format!(
                    "{sink}: {GATES_READINESS_KEY} must be true or false"
                )));
            }
        };
        let config = SinkConfig::from_table(table, warnings)
            .map_err(|reason| invalid(format!("{sink}: {reason}")))?;
        if let SinkConfig::File(file) = &config {
            let shared = sinks.iter().any(|other| {
                matches!(&other.config, SinkConfig::File(other) if other.data_dir == file.data_dir)
            });
            if shared {
                return Err(invalid(format!(
                    "{sink}: data_dir is used by another file sink"
                )));
            }
        }
        if let SinkConfig::Prometheus(prometheus) = &config {
            let shared = sinks.iter().any(|other| {
                matches!(&other.config, SinkConfig::Prometheus(other) if other.path == prometheus.path)
            });
            if shared {
                return Err(invalid(format!(
                    "{sink}: path {:?} is served by another prometheus sink",
                    prometheus.path
                )));
            }
        }
        sinks.push(SinkSpec {
            name,
            gates_readiness: gates_readiness.unwrap_or_else(|| config.gates_readiness_by_default()),
            config,
        });
    }
    if sinks.len() > MAX_SINKS {
        return Err(invalid(format!(
            "at most {MAX_SINKS} sinks can be configured"
        )));
    }
    Ok(sinks)
}
