//! A small JSON tokenizer for tests: it splits JSON text into tokens and keeps every
//! number and string as its exact source text, so two JSON texts can be compared
//! token for token without going through `f64` or a map (which would round numbers
//! and merge duplicate keys, hiding the very changes the tests look for).
//!
//! Shared by the property tests and the minifier's fuzz target.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One of `{ } [ ] : ,`.
    Punct,
    /// A string, quotes and escapes included, exactly as written.
    String,
    /// A number, exactly as written.
    Number,
    /// `true`, `false` or `null`.
    Literal,
}

/// One token: its kind and its source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: Kind,
    pub(crate) text: &'a str,
}

/// JSON's insignificant whitespace (RFC 8259, section 2): nothing else.
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// The tokens of `json`. Checks the lexical form of each token (closed strings
/// without raw control characters, number characters, the three literals), not the
/// grammar: pair it with a parser where validity matters.
pub(crate) fn tokenize(json: &str) -> Result<Vec<Token<'_>>, String> {
    let bytes = json.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let kind = match bytes[at] {
            byte if is_whitespace(byte) => {
                at += 1;
                continue;
            }
            b'{' | b'}' | b'[' | b']' | b':' | b',' => {
                at += 1;
                Kind::Punct
            }
            b'"' => {
                at += 1;
                loop {
                    match bytes.get(at) {
                        None => return Err(format!("unterminated string at {start}")),
                        Some(b'"') => break,
                        Some(b'\\') => at += 2,
                        Some(byte) if *byte < 0x20 => {
                            return Err(format!("raw control byte in string at {at}"));
                        }
                        Some(_) => at += 1,
                    }
                }
                at += 1;
                Kind::String
            }
            b'-' | b'0'..=b'9' => {
                while at < bytes.len()
                    && matches!(bytes[at], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    at += 1;
                }
                Kind::Number
            }
            b'a'..=b'z' => {
                while at < bytes.len() && bytes[at].is_ascii_lowercase() {
                    at += 1;
                }
                if !matches!(&json[start..at], "true" | "false" | "null") {
                    return Err(format!("unknown literal {:?}", &json[start..at]));
                }
                Kind::Literal
            }
            other => return Err(format!("unexpected byte {other:#04x} at {at}")),
        };
        let text = json
            .get(start..at)
            .ok_or_else(|| format!("token at {start} ends inside a character"))?;
        tokens.push(Token { kind, text });
    }
    Ok(tokens)
}

/// The number of tokens of the value that starts `tokens`.
pub(crate) fn value_len(tokens: &[Token<'_>]) -> usize {
    let mut depth = 0_usize;
    for (index, token) in tokens.iter().enumerate() {
        if token.kind == Kind::Punct {
            match token.text {
                "{" | "[" => depth += 1,
                "}" | "]" => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if depth == 0 {
            return index + 1;
        }
    }
    tokens.len()
}

/// The tokens of the first member named `key` (written without escapes) of the
/// object whose tokens start `object`.
pub(crate) fn member<'t, 'a>(object: &'t [Token<'a>], key: &str) -> Option<&'t [Token<'a>]> {
    let quoted = format!("\"{key}\"");
    let end = value_len(object);
    let mut at = 1; // past `{`
    while at + 2 < end {
        let value = &object[at + 2..end];
        let len = value_len(value);
        if object[at].text == quoted {
            return Some(&value[..len]);
        }
        at += 2 + len + 1; // key, colon, value, comma
    }
    None
}

/// The source text spanned by `tokens`, which were cut from `source`.
pub(crate) fn span<'a>(source: &'a str, tokens: &[Token<'a>]) -> &'a str {
    let (Some(first), Some(last)) = (tokens.first(), tokens.last()) else {
        return "";
    };
    let offset = |text: &str| text.as_ptr() as usize - source.as_ptr() as usize;
    &source[offset(first.text)..offset(last.text) + last.text.len()]
}
