//! The SDK's module layout (DESIGN §2.2): no two top-level modules depend on each other,
//! directly or through others, so each can be read, tested and changed from the bottom up.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// The top-level modules each top-level module of `src/` names through `crate::`, test
/// modules left out.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if ["lib", "testing", "fuzzing"].contains(&top.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let deps = graph.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::.., b, c::{..}}`: the names at the group's top level.
                let mut depth = 0;
                let mut name = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            deps.insert(first_segment(&name));
                            name.clear();
                        }
                        _ if depth == 0 => name.push(c),
                        _ => {}
                    }
                }
                deps.insert(first_segment(&name));
            } else {
                deps.insert(first_segment(rest));
            }
        }
        deps.remove(&top);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

fn first_segment(path: &str) -> String {
    path.trim()
        .split("::")
        .next()
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect()
}

#[test]
fn no_two_modules_depend_on_each_other() {
    let graph = module_graph();
    assert!(graph.len() > 10, "the layout lost its modules? {graph:?}");
    assert!(graph["framework"].contains("core"), "{graph:?}");
    // A module reaches itself through its dependencies only on a circle.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = graph[start].iter().collect();
        while let Some(module) = todo.pop() {
            assert_ne!(
                module, start,
                "{start} depends on itself through other modules: {graph:#?}"
            );
            if seen.insert(module) {
                todo.extend(graph[module].iter());
            }
        }
    }
}
