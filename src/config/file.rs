//! The TOML file: reading it, where its values are for messages, and `${VAR}`
//! interpolation of its string values, so secrets need not sit in the file.

use std::path::Path;

use super::{ConfigError, Env, invalid};

/// Joins a message's lines, so every error stays one line.
pub(super) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// ` line L, column C` of a byte offset in `text` (both from 1).
pub(super) fn location(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    format!(" line {line}, column {column}")
}

pub(super) fn read_text(path: &Path, what: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|error| invalid(format!("cannot read {what} {}: {error}", path.display())))
}

/// Parses the file's TOML, keeping where each value is; a syntax error names its line
/// and column.
pub(super) fn parse_document(
    text: &str,
    path: &Path,
) -> Result<toml_edit::ImDocument<String>, ConfigError> {
    toml_edit::ImDocument::parse(text.to_owned()).map_err(|error| {
        let at = error
            .span()
            .map(|span| location(text, span.start))
            .unwrap_or_default();
        invalid(format!(
            "config file {}{at}: {}",
            path.display(),
            one_line(error.message())
        ))
    })
}

/// Values the file took from the environment, so messages can show them as written.
#[derive(Debug, Default)]
pub(super) struct Expansions(Vec<(String, String)>);

/// Expanded values shorter than this are left in messages: too short to be a
/// secret, and replacing them would garble the message around them.
const MIN_SCRUBBED_CHARS: usize = 4;

impl Expansions {
    /// The error with every expanded value written back as the `${VAR}` text it
    /// came from.
    pub(super) fn scrub(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::Invalid(mut message) => {
                for (expanded, written) in &self.0 {
                    if expanded.chars().count() >= MIN_SCRUBBED_CHARS {
                        message = message.replace(expanded.as_str(), written);
                    }
                }
                ConfigError::Invalid(message)
            }
            other => other,
        }
    }
}

/// Expands `${VAR}` in every string value of the file (not in keys or comments)
/// and gives the text back with those values rewritten, so that the file is then
/// read with positions intact for messages. A value spanning lines keeps its line
/// count (a multi-line string whose lines end in `\`), so later line numbers hold.
pub(super) fn expand_document(
    text: &str,
    path: &Path,
    env: Env<'_>,
) -> Result<(String, Expansions), ConfigError> {
    let document = parse_document(text, path)?;
    let mut strings = Vec::new();
    collect_strings(document.as_item(), &mut strings);
    let mut replacements = Vec::new();
    let mut expansions = Expansions::default();
    for (value, span) in strings {
        if !value.contains('$') {
            continue;
        }
        let written = &text[span.clone()];
        let expanded = interpolate(value, env).map_err(|reason| {
            invalid(format!(
                "config file {}{}: {reason}",
                path.display(),
                location(text, span.start)
            ))
        })?;
        // Only values that took something from the environment can hide a secret.
        if expanded != value.replace("$${", "${") {
            expansions.0.push((expanded.clone(), value.to_owned()));
        }
        replacements.push((
            span.clone(),
            toml_string(&expanded, written.matches('\n').count()),
        ));
    }
    replacements.sort_by_key(|(span, _)| span.start);
    let mut rewritten = String::with_capacity(text.len());
    let mut done = 0;
    for (span, literal) in replacements {
        rewritten.push_str(&text[done..span.start]);
        rewritten.push_str(&literal);
        done = span.end;
    }
    rewritten.push_str(&text[done..]);
    Ok((rewritten, expansions))
}

/// Every string value under `item`, with its place in the text.
fn collect_strings<'a>(
    item: &'a toml_edit::Item,
    out: &mut Vec<(&'a str, std::ops::Range<usize>)>,
) {
    match item {
        toml_edit::Item::Value(value) => collect_value_strings(value, out),
        toml_edit::Item::Table(table) => {
            for (_, item) in table {
                collect_strings(item, out);
            }
        }
        toml_edit::Item::ArrayOfTables(tables) => {
            for table in tables {
                for (_, item) in table {
                    collect_strings(item, out);
                }
            }
        }
        toml_edit::Item::None => {}
    }
}

fn collect_value_strings<'a>(
    value: &'a toml_edit::Value,
    out: &mut Vec<(&'a str, std::ops::Range<usize>)>,
) {
    match value {
        toml_edit::Value::String(string) => {
            if let Some(span) = value.span() {
                out.push((string.value().as_str(), span));
            }
        }
        toml_edit::Value::Array(array) => {
            for value in array {
                collect_value_strings(value, out);
            }
        }
        toml_edit::Value::InlineTable(table) => {
            for (_, value) in table {
                collect_value_strings(value, out);
            }
        }
        _ => {}
    }
}

/// `value` as a TOML basic string; with `lines` > 0 a multi-line one spanning that
/// many more lines, which a line-ending backslash keeps out of the value.
pub(super) fn toml_string(value: &str, lines: usize) -> String {
    let quote = if lines == 0 { "\"" } else { "\"\"\"" };
    let mut out = String::with_capacity(value.len() + 8);
    out.push_str(quote);
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    if lines > 0 {
        out.push('\\');
        out.push_str(&"\n".repeat(lines));
    }
    out.push_str(quote);
    out
}

/// Expands `${VAR}` and `${VAR:-default}` (the default when `VAR` is unset or
/// empty, as in a shell) in one string; `$${` is a literal `${` and any other `$`
/// stays as it is. A variable that is unset and has no default is an error naming
/// it. The expanded text is never logged or shown.
///
/// # Errors
///
/// A one-line reason: an unset variable, an unclosed `${`, a bad name.
pub(super) fn interpolate(text: &str, env: Env<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body) = tail.strip_prefix("${") else {
            out.push('$');
            rest = &tail[1..];
            continue;
        };
        let end = body
            .find('}')
            .ok_or_else(|| "a ${ is not closed by }; write $${ for a literal ${".to_owned())?;
        let inner = &body[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let valid_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!(
                "${{{name}}}: a variable name is letters, digits and _, not starting with a digit"
            ));
        }
        let value = env(name).filter(|value| !(value.is_empty() && default.is_some()));
        match (value, default) {
            (Some(value), _) => out.push_str(
                &value
                    .into_string()
                    .map_err(|_| format!("environment variable {name} is not valid UTF-8"))?,
            ),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (named by ${{{name}}}; ${{{name}:-default}} gives a default)"
                ));
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
