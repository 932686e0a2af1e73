//! Dependencies between Hydrant's modules point one way. A module that uses another
//! (`use crate::x::…`, `crate::x::…` in code, `super::x` from a sibling) depends on
//! it; this test reads `src/` and fails on any cycle:
//!
//! - between the crate's top-level modules, each taken with everything inside it
//!   (`server` → `decode`/`routing`/`sink` → `event` → the leaves);
//! - between the sibling modules of any folder (`sink::file::writer` and
//!   `sink::file::layout` must not use each other).
//!
//! A module using its own parent or children is not a cycle in this sense (that is
//! how a folder's `mod.rs` and its files share private items). Comments and unit
//! test modules are not read: doc links do not make a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`sink::file::writer`) to its source without comments and tests.
fn modules() -> BTreeMap<Vec<String>, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut name: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if matches!(name.last().map(String::as_str), Some("mod" | "lib")) {
                name.pop();
            }
            if name == ["main"] || name.last().is_some_and(|last| last == "tests") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            modules.insert(name, code_only(&text));
        }
    }
    modules
}

/// The text before the unit test module, without `//` comments.
fn code_only(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |start| &text[..start]);
    text.lines()
        .map(|line| line.find("//").map_or(line, |start| &line[..start]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the source names from `crate::` or `super::`, group imports
/// (`crate::a::{b, c::d}`) expanded one level, as lists of segments.
fn paths(source: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for anchor in ["crate::", "super::"] {
        let mut rest = source;
        while let Some(start) = rest.find(anchor) {
            let before = rest[..start].chars().next_back();
            rest = &rest[start..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                rest = &rest[anchor.len()..];
                continue;
            }
            let mut segments = vec![anchor.trim_end_matches(':').to_owned()];
            let mut at = anchor.len();
            loop {
                let segment: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if segment.is_empty() {
                    break;
                }
                at += segment.len();
                segments.push(segment);
                if rest[at..].starts_with("::") {
                    at += 2;
                } else {
                    break;
                }
            }
            if rest[at..].starts_with('{') {
                let group_end = rest[at..].find('}').map_or(rest.len(), |end| at + end);
                for item in rest[at + 1..group_end].split(',') {
                    let first = item.trim().split("::").next().unwrap_or("").trim();
                    let first = first.trim_start_matches('{');
                    if !first.is_empty() && first != "self" {
                        let mut path = segments.clone();
                        path.push(first.to_owned());
                        found.push(path);
                    }
                }
            }
            found.push(segments);
            rest = &rest[at.max(anchor.len())..];
        }
    }
    found
}

/// The module `path` names, as seen from `from`: the longest known module prefix.
fn resolve(from: &[String], path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut absolute: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        // `super::` from a file module is its parent folder's module.
        Some("super") => from[..from.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    absolute.extend(path[1..].iter().cloned());
    (1..=absolute.len())
        .rev()
        .map(|len| absolute[..len].to_vec())
        .find(|candidate| known.contains(candidate))
}

/// The edges between the children of `parent` (each child with all inside it).
fn sibling_edges(
    parent: &[String],
    dependencies: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let child = |module: &[String]| {
        (module.len() > parent.len() && module.starts_with(parent))
            .then(|| module[parent.len()].clone())
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in dependencies {
        let Some(from_child) = child(from) else {
            continue;
        };
        for target in targets {
            if let Some(to_child) = child(target)
                && to_child != from_child
            {
                edges
                    .entry(from_child.clone())
                    .or_default()
                    .insert(to_child);
            }
        }
    }
    edges
}

/// A cycle in `edges`, if there is one, as the modules along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let start = stack.iter().position(|n| n == node).unwrap();
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(node.to_owned(), false);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.to_owned(), true);
        None
    }
    let mut state = BTreeMap::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut state, &mut Vec::new()))
}

fn dependencies() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = modules();
    let known: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, source)| {
            let targets = paths(source)
                .iter()
                .filter_map(|path| resolve(name, path, &known))
                .filter(|target| target != name)
                .collect();
            (name.clone(), targets)
        })
        .collect()
}

#[test]
fn module_dependencies_have_no_cycles() {
    let dependencies = dependencies();
    let mut folders: BTreeSet<Vec<String>> = dependencies
        .keys()
        .filter(|name| !name.is_empty())
        .map(|name| name[..name.len() - 1].to_vec())
        .collect();
    folders.insert(Vec::new());
    let mut cycles = Vec::new();
    for folder in &folders {
        if let Some(cycle) = find_cycle(&sibling_edges(folder, &dependencies)) {
            let prefix = folder
                .iter()
                .map(|part| format!("{part}::"))
                .collect::<String>();
            cycles.push(
                cycle
                    .iter()
                    .map(|module| format!("{prefix}{module}"))
                    .collect::<Vec<_>>()
                    .join(" -> "),
            );
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

/// The checker itself finds a cycle it is shown, so a pass above means something.
#[test]
fn the_checker_finds_a_planted_cycle() {
    let mut dependencies = dependencies();
    let event = vec!["event".to_owned()];
    let server = vec!["server".to_owned(), "delivery".to_owned()];
    assert!(dependencies.contains_key(&event) && dependencies.contains_key(&server));
    dependencies.get_mut(&event).unwrap().insert(server);
    let cycle = find_cycle(&sibling_edges(&[], &dependencies)).expect("a cycle");
    assert!(cycle.contains(&"event".to_owned()) && cycle.contains(&"server".to_owned()));

    let source = code_only("use crate::{a::b, c};\n// use crate::d;\nfn f() { super::e::g(); }\n");
    let found: BTreeSet<String> = paths(&source).iter().map(|path| path.join("::")).collect();
    for expected in ["crate::a", "crate::c", "super::e::g"] {
        assert!(found.contains(expected), "{expected} in {found:?}");
    }
    assert!(!found.iter().any(|path| path.contains('d')), "{found:?}");
}

/// The layers named in `lib.rs` hold: the data model and the leaves use nothing
/// of the stages above them.
#[test]
fn the_leaves_use_nothing_above_them() {
    let dependencies = dependencies();
    // Stages from the top: a module may use those after it in this list, never
    // those before it.
    let stages = [
        "app",
        "config",
        "server",
        "ingest",
        "admission",
        "firehose",
        "decode",
        "routing",
        "sink",
        "series",
        "event",
    ];
    let leaves: &[&str] = &[
        "metrics", "limits", "logging", "clock", "glob", "units", "setting", "reload",
    ];
    let mut rules: Vec<(&str, Vec<&str>)> = Vec::new();
    for (index, module) in stages.iter().enumerate() {
        rules.push((*module, stages[..index].to_vec()));
    }
    // `decode`, `routing` and `sink` are side by side: none uses another.
    rules.push(("decode", vec!["routing", "sink"]));
    rules.push(("routing", vec!["decode", "sink"]));
    rules.push(("sink", vec!["decode", "routing"]));
    // The leaves use no stage at all.
    for leaf in leaves {
        rules.push((*leaf, stages.to_vec()));
    }
    let mut broken = Vec::new();
    for (module, forbidden) in rules {
        for (from, targets) in &dependencies {
            if from.first().map(String::as_str) != Some(module) {
                continue;
            }
            for target in targets {
                if forbidden.contains(&target[0].as_str()) {
                    broken.push(format!("{} uses {}", from.join("::"), target.join("::")));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
