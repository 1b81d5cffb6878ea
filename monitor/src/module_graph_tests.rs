//! The top-level modules' import graph has no circle: data flows one way
//! (docs/design.md), and a module that both uses and is used by another
//! is two concepts knotted. Read from the sources (`crate::NAME` paths and
//! `crate::{...}` groups, outside comments and test modules), so a new
//! circle fails here with the files that make it.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Top-level module -> its files.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in fs::read_dir(src).expect("monitor/src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "bin" {
                out.entry(name).or_default().extend(rust_files(&path));
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && !["lib", "main", "module_graph_tests"].contains(&name.as_str())
        {
            out.entry(name).or_default().push(path);
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The code of a file without comment lines and without its test module.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("readable");
    let text = [
        "#[cfg(test)]\nmod tests",
        "#[cfg(test)]\npub(crate) mod tests",
    ]
    .iter()
    .filter_map(|marker| text.find(marker))
    .min()
    .map_or(text.as_str(), |at| &text[..at]);
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level names a file's `crate::` paths start with.
fn crate_names(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group's top-level items: after `{` and after each `,`
            // at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        out.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

#[test]
fn the_module_graph_has_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    // module -> (used module -> a file that uses it)
    let mut edges: BTreeMap<&str, BTreeMap<&str, PathBuf>> = BTreeMap::new();
    for (name, files) in &modules {
        for file in files {
            for used in crate_names(&code(file)) {
                if let Some((used, _)) = modules.get_key_value(&used)
                    && used != name
                {
                    edges
                        .entry(name)
                        .or_default()
                        .entry(used)
                        .or_insert_with(|| file.clone());
                }
            }
        }
    }
    // A circle exists iff some module reaches itself.
    for start in modules.keys() {
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(at).map(|e| e.keys()).into_iter().flatten() {
                if *next == start.as_str() {
                    let hops: Vec<String> = path
                        .iter()
                        .zip(path.iter().skip(1).chain([next]))
                        .map(|(a, b)| format!("{a} -> {b} ({})", edges[a][b].display()))
                        .collect();
                    panic!("import circle: {}", hops.join(", "));
                }
                if seen.insert(*next) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push((next, longer));
                }
            }
        }
    }
    // The reader works: known edges are found.
    assert!(edges["cmd"].contains_key("session") || edges["cmd"].contains_key("monitor"));
    assert!(edges["model"].contains_key("classes"));
}

#[test]
fn crate_paths_are_read_from_groups_and_paths() {
    let names = crate_names("use crate::{a::b, c, d::{e, f}};\nlet x = crate::g::h();");
    assert_eq!(
        names,
        ["a", "c", "d", "g"].map(String::from).into_iter().collect()
    );
}
