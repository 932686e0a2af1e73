//! What `hydrant validate` prints: the resolved configuration, secrets left out.

use std::time::Duration;

use super::Config;
use crate::decode::{BadRecords, FORMAT_NAMES, Format};
use crate::routing::{Match, SinkSet};
use crate::server::auth::Auth;
use crate::setting::ByteSize;
use crate::sink::SinkConfig;

impl Config {
    /// What `hydrant validate` prints: the resolved listeners, keys (names and
    /// where they came from, never the secrets), decoding, sinks with their type and
    /// settings (secrets redacted by each sink's `Debug`), routes in order and the
    /// default route.
    #[must_use]
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let duration = |d: Duration| humantime::format_duration(d).to_string();
        let _ = writeln!(out, "The configuration is valid.");
        let _ = writeln!(out, "listen {}, admin {}", self.listen, self.admin_listen);
        match &self.tls {
            None => {
                let _ = writeln!(out, "https: off (plain HTTP on the ingest listener)");
            }
            Some(tls) => match &tls.certificate {
                crate::server::tls::CertificateSource::Files(files) => {
                    let _ = writeln!(
                        out,
                        "https: certificate {}, key {} (read again on SIGHUP or a change), handshake timeout {}",
                        files.cert.display(),
                        files.key.display(),
                        duration(tls.handshake_timeout)
                    );
                }
                crate::server::tls::CertificateSource::Acme(acme) => {
                    let _ = writeln!(
                        out,
                        "https: ACME certificate for {} from {}, cached in {}, handshake timeout {}",
                        acme.domains.join(", "),
                        acme.directory,
                        acme.cache_dir.display(),
                        duration(tls.handshake_timeout)
                    );
                }
            },
        }
        match &self.auth {
            Auth::Disabled => {
                let _ = writeln!(out, "access keys: none, authentication is OFF (--no-auth)");
            }
            Auth::Keys(_) => {
                let _ = writeln!(out, "access keys:");
                for (name, source) in &self.key_sources {
                    let _ = writeln!(out, "  {name} (from {source})");
                }
            }
        }
        let decode = &self.decode;
        let _ = writeln!(
            out,
            "decoding: default format {}, bad records {}, {} rule(s)",
            format_name(decode.default_format),
            bad_records_name(decode.bad_records),
            decode.rules.len()
        );
        for rule in &decode.rules {
            let mut facts = Vec::new();
            if let Some(path) = &rule.path {
                facts.push(format!("path {path}"));
            }
            if let Some(stream) = &rule.delivery_stream {
                facts.push(format!("delivery_stream {stream}"));
            }
            let _ = writeln!(
                out,
                "  {} -> {}",
                facts.join(", "),
                format_name(rule.format)
            );
        }
        let _ = writeln!(out, "sinks:");
        for sink in &self.sinks {
            let settings = match &sink.config {
                SinkConfig::File(file) => {
                    let file = file.settings(&self.storage);
                    format!(
                        "data_dir {}, segment_max_bytes {}, segment_max_age {}, dedup_window {}, dedup_capacity {}",
                        file.data_dir.display(),
                        ByteSize(file.segment_max_bytes),
                        duration(file.segment_max_age),
                        duration(file.dedup_window),
                        file.dedup_capacity
                    )
                }
                other => format!("{:?}", other.settings()),
            };
            let _ = writeln!(
                out,
                "  {} (type {}): {settings}",
                sink.name,
                sink.config.kind()
            );
        }
        let names = |set: SinkSet| -> String {
            let names: Vec<&str> = self
                .sinks
                .iter()
                .enumerate()
                .filter(|(position, _)| set.contains(*position))
                .map(|(_, sink)| sink.name.as_str())
                .collect();
            if names.is_empty() {
                "(nowhere: dropped and counted)".to_owned()
            } else {
                names.join(", ")
            }
        };
        let _ = writeln!(
            out,
            "routes, in order (the first match decides, unless it continues):"
        );
        if self.router.routes.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for (index, route) in self.router.routes.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. {:?}: {} -> {}{}",
                index + 1,
                route.name,
                describe_match(&route.matcher),
                names(route.sinks),
                if route.continue_matching {
                    ", then continue"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            out,
            "default route (events no route takes): -> {}",
            names(self.router.default_sinks)
        );
        let fanout = &self.fanout;
        let _ = writeln!(
            out,
            "fanout: attempts {}, backoff {}, deadline {}",
            fanout.attempts,
            duration(fanout.backoff),
            duration(fanout.deadline)
        );
        out
    }
}

/// A format's name as configured.
pub(super) fn format_name(format: Format) -> &'static str {
    FORMAT_NAMES
        .into_iter()
        .find(|name| name.parse() == Ok(format))
        .unwrap_or("?")
}

/// A bad-records policy's name as configured.
pub(super) fn bad_records_name(policy: BadRecords) -> &'static str {
    match policy {
        BadRecords::DeadLetter => "dead_letter",
        BadRecords::Reject => "reject",
    }
}

/// A route's match, as `key value` pairs.
fn describe_match(matcher: &Match) -> String {
    let mut facts = Vec::new();
    let globs = [
        ("path", &matcher.path),
        ("delivery_stream", &matcher.delivery_stream),
        ("source_arn", &matcher.source_arn),
        ("access_key", &matcher.access_key),
        ("log_group", &matcher.log_group),
        ("namespace", &matcher.namespace),
        ("source", &matcher.source),
        ("detail_type", &matcher.detail_type),
    ];
    for (key, glob) in globs {
        if let Some(glob) = glob {
            facts.push(format!("{key} {glob}"));
        }
    }
    for (attribute, glob) in &matcher.common_attributes {
        facts.push(format!("common_attributes.{attribute} {glob}"));
    }
    if !matcher.kinds.is_empty() {
        facts.push(format!("kind {}", matcher.kinds.join("|")));
    }
    if !matcher.formats.is_empty() {
        facts.push(format!("format {}", matcher.formats.join("|")));
    }
    if facts.is_empty() {
        "every event".to_owned()
    } else {
        facts.join(", ")
    }
}
