//! `[[routes]]` and `[routing]`: which sinks events go to, resolved against the
//! configured sinks.

use std::fmt;

use serde::Deserialize;

use super::sinks::{EMBEDDED_SINK, SinkSpec};
use super::{ConfigError, invalid};
use crate::glob::Glob;
use crate::routing::{EVENT_FORMATS, KINDS, Match, Route, Router, SinkSet};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRoute {
    name: Option<String>,
    sinks: Vec<String>,
    #[serde(rename = "continue", default)]
    continue_matching: bool,
    path: Option<String>,
    delivery_stream: Option<String>,
    source_arn: Option<String>,
    access_key: Option<String>,
    #[serde(default)]
    common_attributes: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    kind: OneOrMany,
    #[serde(default)]
    format: OneOrMany,
    log_group: Option<String>,
    namespace: Option<String>,
    source: Option<String>,
    detail_type: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Default)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

/// By hand rather than `untagged`, whose error ("did not match any variant")
/// does not say what was expected.
impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(text.to_owned()))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut many = Vec::new();
                while let Some(one) = seq.next_element::<String>()? {
                    many.push(one);
                }
                Ok(OneOrMany::Many(many))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRouting {
    default_sinks: Option<Vec<String>>,
}

pub(super) fn build_router(
    routes: Vec<FileRoute>,
    routing: FileRouting,
    sinks: &[SinkSpec],
) -> Result<Router, ConfigError> {
    let resolve = |names: &[String], whose: &str| -> Result<SinkSet, ConfigError> {
        let mut set = SinkSet::default();
        for name in names {
            let position = sinks
                .iter()
                .position(|sink| &sink.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = sinks.iter().map(|sink| sink.name.as_str()).collect();
                    invalid(format!(
                        "{whose} names unknown sink {name:?}; configured: {}",
                        known.join(", ")
                    ))
                })?;
            set.insert(position);
        }
        Ok(set)
    };
    let glob =
        |pattern: Option<String>, field: &str, route: &str| -> Result<Option<Glob>, ConfigError> {
            match pattern {
                Some(pattern) if pattern.is_empty() => Err(invalid(format!(
                    "route {route:?}: {field} is an empty pattern"
                ))),
                pattern => Ok(pattern.as_deref().map(Glob::new)),
            }
        };
    let mut built = Vec::with_capacity(routes.len());
    for (index, route) in routes.into_iter().enumerate() {
        let name = route.name.unwrap_or_else(|| format!("#{}", index + 1));
        if route.sinks.is_empty() {
            return Err(invalid(format!("route {name:?} names no sinks")));
        }
        let kinds = route.kind.into_vec();
        check_names(&kinds, &KINDS, "event kind")
            .map_err(|reason| invalid(format!("route {name:?}: {reason}")))?;
        let formats = route.format.into_vec();
        check_names(&formats, &EVENT_FORMATS, "event format")
            .map_err(|reason| invalid(format!("route {name:?}: {reason}")))?;
        let mut common_attributes = Vec::new();
        for (key, pattern) in route.common_attributes {
            common_attributes.push((key, Glob::new(&pattern)));
        }
        let matcher = Match {
            path: glob(route.path, "path", &name)?,
            delivery_stream: glob(route.delivery_stream, "delivery_stream", &name)?,
            source_arn: glob(route.source_arn, "source_arn", &name)?,
            access_key: glob(route.access_key, "access_key", &name)?,
            common_attributes,
            kinds,
            formats,
            log_group: glob(route.log_group, "log_group", &name)?,
            namespace: glob(route.namespace, "namespace", &name)?,
            source: glob(route.source, "source", &name)?,
            detail_type: glob(route.detail_type, "detail_type", &name)?,
        };
        built.push(Route {
            sinks: resolve(&route.sinks, &format!("route {name:?}"))?,
            name,
            matcher,
            continue_matching: route.continue_matching,
        });
    }
    let default_names = routing
        .default_sinks
        .unwrap_or_else(|| vec![EMBEDDED_SINK.to_owned()]);
    Ok(Router {
        routes: built,
        default_sinks: resolve(&default_names, "[routing] default_sinks")?,
    })
}

/// Checks that every name is one of `valid`; the message lists them.
fn check_names(names: &[String], valid: &[&str], what: &str) -> Result<(), String> {
    match names.iter().find(|name| !valid.contains(&name.as_str())) {
        Some(name) => Err(format!(
            "unknown {what} {name:?}; expected one of {}",
            valid.join(", ")
        )),
        None => Ok(()),
    }
}
