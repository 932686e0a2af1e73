//! Configuration: command-line flags, environment variables and an optional TOML
//! file, checked into one typed [`Config`] before anything starts.
//!
//! Precedence, highest first: flag, environment variable, config file, default.
//! Access keys are the exception: keys from every source are used together (names
//! must be unique across them).
//!
//! - `settings.rs`: every global setting, declared once (flag, variable, key,
//!   help text and default); `cli.rs`: the command line around them;
//! - `file.rs`: the TOML file, its positions for messages and `${VAR}`
//!   interpolation of its string values, so secrets need not sit in the file;
//! - `keys.rs`: access keys from every source; `sinks.rs`: `[[sinks]]`, each read
//!   by its type ([`crate::sink::SinkConfig`]); `routes.rs`: `[[routes]]` and
//!   `[routing]`; `describe.rs`: what `hydrant validate` prints.
//!
//! Sizes and durations are read by [`crate::units`], everywhere.

mod cli;
mod describe;
mod file;
mod keys;
mod routes;
mod settings;
mod sinks;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use clap::FromArgMatches as _;
use serde::Deserialize;

pub use self::cli::LogFormat;
use self::cli::{Cli, Command, usage_error};
use self::file::{expand_document, interpolate, location, one_line, parse_document, read_text};
pub use self::keys::KeyReload;
pub use self::sinks::{EMBEDDED_SINK, SinkSpec};
use crate::decode::{BadRecords, DecodeSettings, DecoderRule, Format};
use crate::glob::Glob;
use crate::limits::Limits;
use crate::routing::Router;
use crate::server::auth::Auth;
use crate::server::listener::ConnectionSettings;
use crate::server::tls::acme::{AcmeSettings, check_domain};
use crate::server::tls::{CertFiles, CertificateSource, TlsSettings};
pub use crate::setting::{ByteSize, HumanDuration};
use crate::sink::fanout::{FanoutSettings, MAX_BACKOFF};
use crate::sink::file::FileSinkSettings;
use settings::{DecodeSection, FanoutSection, Settings};

/// Default ingest address: all interfaces, since Firehose reaches Hydrant through a
/// TLS-terminating proxy or load balancer that usually runs on another host.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default admin address: loopback only, since metrics are not for the internet.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default time deliveries in flight get to finish at shutdown. Firehose waits up to
/// 3 minutes for an answer, but orchestrators usually kill after 30 s or so, and an
/// unfinished delivery is simply retried.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// Access key names go into events and metric labels, so they are short and plain.
const MAX_KEY_NAME_CHARS: usize = 64;

/// Environment variable of access keys, `NAME=KEY` entries separated by newlines.
/// Read here rather than by clap, which would ignore it whenever `--access-key` is
/// given: keys from every source are used together.
pub const ENV_ACCESS_KEYS: &str = "HYDRANT_ACCESS_KEYS";
/// Environment variable naming an access key file, used besides `--access-key-file`.
pub const ENV_ACCESS_KEY_FILE: &str = "HYDRANT_ACCESS_KEY_FILE";

/// The checked configuration Hydrant runs with.
#[derive(Debug)]
pub struct Config {
    /// Ingest listener address.
    pub listen: SocketAddr,
    /// Admin listener address.
    pub admin_listen: SocketAddr,
    /// How deliveries are authenticated.
    pub auth: Auth,
    /// Where each access key came from, by name (for `validate`; never the secret).
    pub key_sources: Vec<(String, String)>,
    /// What reads the access keys again without a restart, when some come from
    /// files (key files or the config file).
    pub key_reload: Option<KeyReload>,
    /// The files the keys come from: the config file first, then the key files.
    key_files: Vec<std::path::PathBuf>,
    /// Limits on untrusted input.
    pub limits: Limits,
    /// Connection caps and timeouts of both listeners.
    pub connections: ConnectionSettings,
    /// HTTPS on the ingest listener; plain HTTP when `None`.
    pub tls: Option<TlsSettings>,
    /// The file sink's settings.
    pub storage: FileSinkSettings,
    /// How records are decoded.
    pub decode: DecodeSettings,
    /// Every sink, in order: the embedded file sink ([`EMBEDDED_SINK`]) first.
    pub sinks: Vec<SinkSpec>,
    /// Which sinks events go to.
    pub router: Router,
    /// Retries and deadline of the fan-out to sinks.
    pub fanout: FanoutSettings,
    /// Drain time at shutdown.
    pub shutdown_grace: Duration,
    /// Cardinality cap on the delivery stream label.
    pub max_stream_labels: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Things the operator should know, to log once logging is set up.
    pub warnings: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Serve with this configuration (no subcommand).
    Serve(Box<Config>),
    /// `hydrant validate`: print what this configuration resolves to and exit.
    Validate(Box<Config>),
    /// `hydrant check`: print it, then probe every routed sink's service and exit.
    Check(Box<Config>),
    /// `--health-check`: probe the admin listener at this address and exit.
    HealthCheck(SocketAddr),
}

/// Why the configuration was not accepted. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--help` or `--version` was asked for: print it and exit successfully.
    #[error("{0}")]
    Display(String),
    /// The command line could not be parsed.
    #[error("{0}")]
    Usage(String),
    /// A value is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Reads one environment variable (the process environment, or a test's).
type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

impl Invocation {
    /// Parses the command line (the program name first) and the process
    /// environment, and for serving or validating checks the whole configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Display`] for `--help`/`--version`, otherwise a one-line
    /// description of the first problem found.
    pub fn from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::from_args_and_env(args, &|name| std::env::var_os(name))
    }

    /// [`Self::from_args`] with the variables Hydrant reads itself (access keys, key
    /// files, `${VAR}` in the file) taken from `env`; clap still reads the others
    /// from the process environment.
    fn from_args_and_env<I, T>(args: I, env: Env<'_>) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = Cli::command_for_parsing()
            .try_get_matches_from(&args)
            .map_err(|error| usage_error(&error))?;
        let cli = Cli::from_arg_matches(&matches).map_err(|error| usage_error(&error))?;
        if cli.health_check {
            return health_check_address(&cli.settings, env).map(Self::HealthCheck);
        }
        match cli.command {
            Some(Command::Validate(settings)) => {
                Config::from_settings(settings, env).map(|config| Self::Validate(Box::new(config)))
            }
            Some(Command::Check(settings)) => {
                Config::from_settings(settings, env).map(|config| Self::Check(Box::new(config)))
            }
            None => Config::from_settings(cli.settings, env).map(|mut config| {
                if !config.key_files.is_empty() {
                    config.key_reload = Some(KeyReload::new(args, config.key_files.clone()));
                }
                Self::Serve(Box::new(config))
            }),
        }
    }
}

/// The admin address for `--health-check`: from the flag or its variable, else from
/// the config file's `admin_listen`, else the default. Nothing else of the
/// configuration is needed or checked, so a container whose keys are given to the
/// server as arguments can still run the check.
fn health_check_address(settings: &Settings, env: Env<'_>) -> Result<SocketAddr, ConfigError> {
    if let Some(address) = settings.admin_listen {
        return Ok(address);
    }
    let Some(path) = &settings.config else {
        return Ok(default_addr(DEFAULT_ADMIN_LISTEN));
    };
    let text = read_text(path, "config file")?;
    let document = parse_document(&text, path)?;
    let Some(item) = document.get("admin_listen") else {
        return Ok(default_addr(DEFAULT_ADMIN_LISTEN));
    };
    let where_ = |message: &str| {
        invalid(format!(
            "config file {}{}: admin_listen: {message}",
            path.display(),
            item.span()
                .map(|span| location(&text, span.start))
                .unwrap_or_default()
        ))
    };
    let written = item
        .as_str()
        .ok_or_else(|| where_("expected a string such as \"127.0.0.1:9464\""))?;
    interpolate(written, env)
        .map_err(|message| where_(&message))?
        .parse()
        .map_err(|_| where_("invalid socket address syntax"))
}

impl Config {
    fn from_settings(settings: Settings, env: Env<'_>) -> Result<Self, ConfigError> {
        let Some(path) = settings.config.clone() else {
            return Self::merge(settings, Settings::default(), &[], env);
        };
        let text = read_text(&path, "config file")?;
        let (text, expansions) = expand_document(&text, &path, env)?;
        let config_path = path.clone();
        let file = toml::from_str::<Settings>(&text).map_err(|error| {
            let at = error
                .span()
                .map(|span| location(&text, span.start))
                .unwrap_or_default();
            invalid(format!(
                "config file {}{at}: {}",
                path.display(),
                one_line(error.message())
            ))
        });
        // Messages name values; a value that came from the environment may be a
        // secret, so it is shown as the `${VAR}` it was written as.
        file.and_then(|file| {
            let sink_locations: Vec<String> = file
                .sinks
                .iter()
                .map(|sink| location(&text, sink.span().start))
                .collect();
            Self::merge(settings, file, &sink_locations, env)
        })
        .map(|mut config| {
            config.key_files.insert(0, config_path);
            config
        })
        .map_err(|error| expansions.scrub(error))
    }

    /// The settings from the command line (flags and variables) over those of the
    /// file, over the defaults; then everything checked.
    fn merge(
        mut args: Settings,
        mut file: Settings,
        sink_locations: &[String],
        env: Env<'_>,
    ) -> Result<Self, ConfigError> {
        use std::mem::take;
        let mut warnings = Vec::new();
        let given_limits = take(&mut args.limits).or(take(&mut file.limits));
        let given_connections = take(&mut args.connections).or(take(&mut file.connections));
        let given_storage = take(&mut args.storage).or(take(&mut file.storage));
        let given_fanout = take(&mut args.fanout).or(take(&mut file.fanout));
        let given_tls = take(&mut args.tls).or(take(&mut file.tls));
        let (decode_args, decode_file) = (take(&mut args.decode), take(&mut file.decode));
        let key_flags = take(&mut args.access_key_args);
        let key_flag_files = take(&mut args.access_key_files);
        let file_keys = take(&mut file.access_keys);
        let file_key_file = file.access_key_file.take();
        let no_auth = args.no_auth_flag || file.no_auth.unwrap_or(false);
        let (sink_tables, routes, routing) = (
            take(&mut file.sinks),
            take(&mut file.routes),
            take(&mut file.routing),
        );
        let given = args.or(file);

        let limits = Limits {
            max_body_bytes: given_limits.max_body_bytes().0,
            max_inflated_bytes: given_limits.max_inflated_bytes().0,
            max_records: given_limits.max_records(),
            max_in_flight_bytes: given_limits.max_in_flight_bytes().0,
            max_decoded_ratio: given_limits.max_decoded_ratio(),
            max_decoded_bytes: given_limits.max_decoded_bytes().0,
        };
        limits.validate().map_err(ConfigError::Invalid)?;
        let connections = ConnectionSettings {
            header_timeout: given_connections.header_timeout().0,
            idle_timeout: given_connections.idle_timeout().0,
            body_timeout: given_connections.body_timeout().0,
            min_body_rate: given_connections.min_body_rate().0,
            min_body_rate_grace: given_connections.min_body_rate_grace().0,
            max_body_time: given_connections.max_body_time().0,
            max_connections: given_connections.max_connections(),
            max_admin_connections: given_connections.max_admin_connections(),
        };
        connections.validate().map_err(ConfigError::Invalid)?;
        let tls = build_tls(&given_tls, &given.data_dir())?;
        let storage = FileSinkSettings {
            data_dir: given.data_dir(),
            segment_max_bytes: given_storage.segment_max_bytes().0,
            segment_max_age: given_storage.segment_max_age().0,
            dedup_window: given_storage.dedup_window().0,
            dedup_capacity: given_storage.dedup_capacity(),
        };
        storage.validate().map_err(ConfigError::Invalid)?;

        let decode = build_decode(decode_args, decode_file)?;
        let sinks = sinks::build_sinks(sink_tables, sink_locations, &storage, &mut warnings)?;
        let router = routes::build_router(routes, routing, &sinks)?;
        let fanout = build_fanout(&given_fanout, &storage)?;

        let mut key_files = Vec::new();
        let sources = keys::key_sources(
            &key_flags,
            key_flag_files,
            file_keys,
            file_key_file,
            env,
            &mut warnings,
            &mut key_files,
        )?;
        let auth = keys::build_auth(&sources, no_auth)?;
        if auth == Auth::Disabled {
            warnings.push(
                "AUTHENTICATION IS OFF (--no-auth): anyone who can reach the ingest listener can write data".into(),
            );
        }
        let key_sources = sources
            .iter()
            .flat_map(|source| {
                source
                    .keys
                    .iter()
                    .map(|(name, _)| (name.clone(), source.label.clone()))
            })
            .collect();

        Ok(Self {
            listen: given.listen(),
            admin_listen: given.admin_listen(),
            auth,
            key_sources,
            key_reload: None,
            key_files,
            limits,
            connections,
            tls,
            storage,
            decode,
            sinks,
            router,
            fanout,
            shutdown_grace: given.shutdown_grace().0,
            max_stream_labels: given.max_stream_labels(),
            log_format: given.log_format(),
            warnings,
        })
    }
}

/// HTTPS on the ingest listener, from `--tls-cert` and `--tls-key` (or `[tls]`):
/// both or neither, and the files must load now, so that a wrong path or a key of
/// another certificate stops Hydrant before it binds a port; or from
/// `--acme-domain` (the ACME cache defaulting to `<data_dir>/acme`), exclusive
/// with the files.
fn build_tls(
    given: &settings::TlsSection,
    data_dir: &std::path::Path,
) -> Result<Option<TlsSettings>, ConfigError> {
    let domains = given.acme_domains.as_deref().unwrap_or_default();
    let certificate = match (&given.cert, &given.key) {
        (Some(_), _) | (_, Some(_)) if !domains.is_empty() => {
            return Err(invalid(
                "--acme-domain and --tls-cert/--tls-key are exclusive: the certificate comes either from the ACME CA or from the files",
            ));
        }
        (None, None) if domains.is_empty() => {
            let acme_only = [
                (given.acme_contact.is_some(), "--acme-contact"),
                (given.acme_directory.is_some(), "--acme-directory"),
                (given.acme_cache_dir.is_some(), "--acme-cache-dir"),
                (given.acme_ca_file.is_some(), "--acme-ca-file"),
                (given.acme_renew_before.is_some(), "--acme-renew-before"),
            ];
            if let Some((_, flag)) = acme_only.iter().find(|(given, _)| *given) {
                return Err(invalid(format!("{flag} needs --acme-domain")));
            }
            return Ok(None);
        }
        (None, None) => CertificateSource::Acme(build_acme(given, domains, data_dir)?),
        (Some(cert), Some(key)) => {
            let files = CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            files
                .load()
                .map_err(|reason| invalid(format!("tls: {reason}")))?;
            CertificateSource::Files(files)
        }
        (Some(_), None) => return Err(invalid("--tls-cert needs --tls-key")),
        (None, Some(_)) => return Err(invalid("--tls-key needs --tls-cert")),
    };
    let handshake_timeout = given.handshake_timeout().0;
    if handshake_timeout.is_zero() {
        return Err(invalid("tls-handshake-timeout must be greater than 0"));
    }
    Ok(Some(TlsSettings {
        certificate,
        handshake_timeout,
    }))
}

/// The ACME settings of `--acme-*`: names checked (no wildcards, each once), the
/// contact an email address, the directory an `https://` URL, the CA file loaded.
fn build_acme(
    given: &settings::TlsSection,
    domains: &[String],
    data_dir: &std::path::Path,
) -> Result<AcmeSettings, ConfigError> {
    let mut checked = Vec::new();
    for domain in domains {
        let domain =
            check_domain(domain).map_err(|reason| invalid(format!("--acme-domain {reason}")))?;
        if !checked.contains(&domain) {
            checked.push(domain);
        }
    }
    let contact = match &given.acme_contact {
        None => None,
        Some(contact) => {
            let email = contact.trim().trim_start_matches("mailto:");
            let plausible = email.split_once('@').is_some_and(|(user, host)| {
                !user.is_empty() && host.contains('.') && !host.ends_with('.')
            }) && !email.chars().any(|c| c.is_whitespace() || c == ',');
            if !plausible {
                return Err(invalid(format!(
                    "--acme-contact {contact:?}: not an email address (such as ops@example.com)"
                )));
            }
            Some(email.to_owned())
        }
    };
    let directory = given.acme_directory();
    if !directory.starts_with("https://") || directory.len() <= "https://".len() {
        return Err(invalid(format!(
            "--acme-directory {directory:?}: an ACME directory is an https:// URL (RFC 8555 §6.1)"
        )));
    }
    if let Some(path) = &given.acme_ca_file {
        crate::tls::pem_certificates(path)
            .map_err(|reason| invalid(format!("--acme-ca-file: {reason}")))?;
    }
    let renew_before = given.acme_renew_before.map(|duration| duration.0);
    if renew_before.is_some_and(|duration| duration.is_zero()) {
        return Err(invalid("--acme-renew-before must be greater than 0"));
    }
    Ok(AcmeSettings {
        domains: checked,
        contact,
        directory,
        cache_dir: given
            .acme_cache_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("acme")),
        ca_file: given.acme_ca_file.clone(),
        renew_before,
    })
}

/// The fan-out's settings, each from its flag, variable or `[fanout]` key.
fn build_fanout(
    given: &FanoutSection,
    storage: &FileSinkSettings,
) -> Result<FanoutSettings, ConfigError> {
    let fanout = FanoutSettings {
        attempts: given.attempts(),
        backoff: given.backoff().0,
        deadline: given.deadline().0,
        dedup_window: storage.dedup_window,
        dedup_capacity: storage.dedup_capacity,
    };
    if fanout.attempts == 0 {
        return Err(invalid(
            "fanout-attempts ([fanout] attempts) must be at least 1 (the first try counts)",
        ));
    }
    // Later waits double up to the cap; a first wait above it would break the
    // documented promise that no wait is longer.
    if fanout.backoff > MAX_BACKOFF {
        return Err(invalid(format!(
            "fanout-backoff ([fanout] backoff) must be at most {}, the longest wait between attempts",
            humantime::format_duration(MAX_BACKOFF)
        )));
    }
    if fanout.deadline.is_zero() || fanout.deadline >= FIREHOSE_TIMEOUT {
        return Err(invalid(format!(
            "delivery-deadline must be between 1 s and {} s (Firehose gives up after 3 minutes)",
            FIREHOSE_TIMEOUT.as_secs() - 1
        )));
    }
    Ok(fanout)
}

/// A `[[decode.rules]]` entry of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDecoderRule {
    path: Option<String>,
    delivery_stream: Option<String>,
    format: String,
    vpc_flow_fields: Option<Vec<String>>,
}

/// The decoding settings: flags over `[decode]`, the flags' rules before the file's.
fn build_decode(args: DecodeSection, file: DecodeSection) -> Result<DecodeSettings, ConfigError> {
    let format = |name: &str| name.parse::<Format>().map_err(ConfigError::Invalid);
    let mut rules = Vec::new();
    for (flag, entries, by_path) in [
        ("--path-format", &args.path_formats, true),
        ("--stream-format", &args.stream_formats, false),
    ] {
        for entry in entries {
            let (glob, name) = entry
                .rsplit_once('=')
                .ok_or_else(|| invalid(format!("{flag} {entry:?}: expected GLOB=FORMAT")))?;
            let glob = Some(Glob::new(glob));
            rules.push(DecoderRule {
                path: if by_path { glob.clone() } else { None },
                delivery_stream: if by_path { None } else { glob },
                format: format(name)?,
                vpc_flow_fields: None,
            });
        }
    }
    for rule in file.rules {
        if rule.path.is_none() && rule.delivery_stream.is_none() {
            return Err(invalid(
                "a [[decode.rules]] entry needs a path or a delivery_stream",
            ));
        }
        rules.push(DecoderRule {
            path: rule.path.as_deref().map(Glob::new),
            delivery_stream: rule.delivery_stream.as_deref().map(Glob::new),
            format: format(&rule.format)?,
            vpc_flow_fields: rule.vpc_flow_fields,
        });
    }
    let given = args.or(DecodeSection {
        rules: Vec::new(),
        ..file
    });
    Ok(DecodeSettings {
        rules,
        default_format: format(&given.default_format())?,
        bad_records: given
            .bad_records()
            .parse::<BadRecords>()
            .map_err(ConfigError::Invalid)?,
        max_record_inflated_bytes: given.max_record_inflated_bytes().0,
        vpc_flow_fields: given.vpc_flow_fields.map(|fields| fields.0),
    })
}

/// Firehose abandons a request after 3 minutes without an answer.
const FIREHOSE_TIMEOUT: Duration = Duration::from_secs(180);

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

fn default_addr(text: &str) -> SocketAddr {
    text.parse().expect("default addresses are valid")
}

#[cfg(test)]
mod tests;
