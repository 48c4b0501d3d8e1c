//! tenancy-core's layout stays as its crate docs describe it: no module
//! imports another that (directly or round a loop) imports it back, and no
//! source file outgrows 450 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `pool/mod.rs` → `pool`, `pool/checkout.rs` → `pool::checkout`, `lib.rs` → ``.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).filter(|p| *p != "mod" && *p != "lib").collect();
    parts.join("::")
}

/// The modules each module names in code (comments left out), by `crate::`
/// or `super::` paths, resolved to the longest path that is a module.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let texts: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let code: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
            (module_of(src, f), code.join("\n"))
        })
        .collect();
    let mut graph = BTreeMap::new();
    for (module, code) in &texts {
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let mut targets = BTreeSet::new();
        for (base, start) in [("crate::", ""), ("super::", parent)] {
            for (at, _) in code.match_indices(base) {
                let preceded =
                    code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
                if preceded {
                    continue;
                }
                let rest = &code[at + base.len()..];
                let path: Vec<&str> = rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .collect();
                let full: Vec<&str> = start.split("::").filter(|s| !s.is_empty()).chain(path).collect();
                let target = (1..=full.len())
                    .rev()
                    .map(|k| full[..k].join("::"))
                    .find(|candidate| texts.contains_key(candidate));
                if let Some(target) = target {
                    let related = target == *module
                        || module.starts_with(&format!("{target}::"))
                        || target.starts_with(&format!("{module}::"));
                    if !related {
                        targets.insert(target);
                    }
                }
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

#[test]
fn tenancy_core_has_no_module_circle_and_no_file_over_450_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tenancy-core/src");
    let graph = imports(&src);
    assert!(graph.len() > 20, "read tenancy-core's modules: {:?}", graph.keys());
    // A module is on a circle when it can reach itself.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = graph[start].iter().collect();
        while let Some(next) = stack.pop() {
            assert_ne!(next, start, "{start} imports a module that leads back to it: {graph:#?}");
            if seen.insert(next.clone()) {
                stack.extend(graph.get(next).into_iter().flatten());
            }
        }
    }
    let mut files = Vec::new();
    sources(&src, &mut files);
    for file in files {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines <= 450, "{} has {lines} lines", file.display());
    }
}
