//! Shell-style globs for matching names in configuration: `*` matches any run of
//! characters (including none), `?` exactly one; everything else matches itself.
//! Used to pick decoders (and routes) by URL path or delivery stream name.

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<char>);

/// The pattern as written.
impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0
            .iter()
            .try_for_each(|c| std::fmt::Write::write_char(f, *c))
    }
}

impl Glob {
    /// Compiles `pattern`; every string is a valid pattern.
    #[must_use]
    pub fn new(pattern: &str) -> Self {
        Self(pattern.chars().collect())
    }

    /// Whether `text` matches the whole pattern.
    #[must_use]
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let pattern = &self.0;
        // Iterative matching with one backtrack point: linear in practice and never
        // exponential, whatever the pattern.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some('?') => {
                    p += 1;
                    t += 1;
                }
                Some(c) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|c| *c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let table = [
            ("/metrics", "/metrics", true),
            ("/metrics", "/metrics/x", false),
            ("/metrics/*", "/metrics/x", true),
            ("/metrics/*", "/metrics/", true),
            ("*", "", true),
            ("prod-*-logs", "prod-eu-logs", true),
            ("prod-*-logs", "prod-eu-metrics", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*a*b*c*", "xxaxxbxxcxx", true),
            ("*a*b*c*", "xxaxxcxxbxx", false),
            ("aws-waf-logs-*", "aws-waf-logs-prod", true),
        ];
        for (pattern, text, expected) in table {
            assert_eq!(
                Glob::new(pattern).matches(text),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = "a".repeat(10_000);
        assert!(!Glob::new(&format!("{}b", "*a".repeat(50))).matches(&text));
    }
}
