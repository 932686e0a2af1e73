//! The two text formats a scrape can ask for: Prometheus text 0.0.4 and OpenMetrics
//! 1.0, chosen by the request's `Accept` header. Both write a family as `# HELP`,
//! `# TYPE … gauge` and its samples; they differ in the content type, the escapes of
//! the help text, the unit of timestamps (milliseconds in 0.0.4, seconds in
//! OpenMetrics) and the `# EOF` line OpenMetrics ends with.

use std::fmt::Write as _;

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A text format of the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: what every scraper reads, and the answer
    /// when the request does not ask for OpenMetrics.
    Text,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (version 1.0.0, 0.0.1 or none) with a quality
    /// above 0 and no lower than that of `text/plain` or a wildcard; else text.
    /// Prometheus sends OpenMetrics first unless its scrape config says otherwise.
    #[must_use]
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Self::Text;
        };
        let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let (mut quality, mut version) = (1.0_f32, None);
            for parameter in parts {
                let Some((key, value)) = parameter.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => {
                        quality = value
                            .parse::<f32>()
                            .ok()
                            .filter(|q| q.is_finite())
                            .map_or(0.0, |q| q.clamp(0.0, 1.0));
                    }
                    "version" => version = Some(value.to_owned()),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if version
                        .as_deref()
                        .is_none_or(|version| matches!(version, "1.0.0" | "0.0.1")) =>
                {
                    openmetrics = openmetrics.max(quality);
                }
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// The `Content-Type` of an answer in this format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => CONTENT_TYPE_TEXT,
            Self::OpenMetrics => CONTENT_TYPE_OPENMETRICS,
        }
    }
}

/// The labels of a series as they are written after its name: `{a="x",b="y"}`, or
/// nothing when there are none. `labels` are sorted and their names unique, so two
/// series have the same text exactly when they have the same labels: the text is
/// the series' key, kept once, ready to write.
pub(super) fn label_text(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(
        2 + labels
            .iter()
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum::<usize>(),
    );
    out.push('{');
    for (index, (name, value)) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape(&mut out, value, true);
        out.push('"');
    }
    out.push('}');
    out
}

/// Writes `text` with the exposition's escapes: `\` as `\\`, a line feed as `\n`,
/// and `"` as `\"` when `quote` (label values always; help text in OpenMetrics).
fn escape(out: &mut String, text: &str, quote: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Writes a family's `# HELP` and `# TYPE` lines.
pub(super) fn family(out: &mut String, format: Format, name: &str, help: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape(out, help, format == Format::OpenMetrics);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push_str(" gauge\n");
}

/// Writes one sample line; `timestamp_ms` is CloudWatch's time of the point, when
/// samples carry it.
pub(super) fn sample(
    out: &mut String,
    format: Format,
    name: &str,
    labels: &str,
    value: f64,
    timestamp_ms: Option<i64>,
) {
    out.push_str(name);
    out.push_str(labels);
    out.push(' ');
    write_value(out, value);
    if let Some(ms) = timestamp_ms {
        // Writing into a String cannot fail.
        let _ = match format {
            Format::Text => write!(out, " {ms}"),
            Format::OpenMetrics => {
                write!(out, " {}.{:03}", ms.div_euclid(1_000), ms.rem_euclid(1_000))
            }
        };
    }
    out.push('\n');
}

/// Ends the exposition.
pub(super) fn finish(out: &mut String, format: Format) {
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
}

/// A value as both formats read it: the shortest digits that give the same double,
/// in plain notation where that stays short and in exponent notation otherwise (a
/// plain 1e-300 would be 300 digits long), `NaN`, `+Inf` and `-Inf`.
fn write_value(out: &mut String, value: f64) {
    // Writing into a String cannot fail.
    let _ = if value.is_nan() {
        write!(out, "NaN")
    } else if value.is_infinite() {
        write!(out, "{}", if value > 0.0 { "+Inf" } else { "-Inf" })
    } else if value == 0.0 || (1e-5..1e16).contains(&value.abs()) {
        write!(out, "{value}")
    } else {
        write!(out, "{value:e}")
    };
}
