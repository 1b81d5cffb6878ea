//! The container image (`deploy/Containerfile`): hadolint accepts it, and it
//! is the static binary of `cargo xtask dist` alone, on `scratch` (the
//! image itself is built and run in `dist`).

use std::process::Command;

use crate::{
    INSTALLED_BIN,
    helpers::{deploy, read, repo, run, venv},
};

/// The Containerfile's instructions, continuation lines joined, comments
/// dropped: (INSTRUCTION, rest).
fn containerfile() -> Vec<(String, String)> {
    let text = read(&deploy("Containerfile"));
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current += part;
                current += " ";
            }
            None => {
                current += trimmed;
                let (instr, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((instr.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn containerfile_lints_and_holds_the_static_binary_alone() {
    let ran = run(Command::new(venv().join("bin/hadolint"))
        .args(["--no-color"])
        .arg(deploy("Containerfile")))
    .unwrap();
    assert!(
        ran.ok && ran.both().trim().is_empty(),
        "hadolint:\n{}",
        ran.both()
    );

    let instructions = containerfile();
    let of = |name: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    // Nothing to pull, nothing to run: built offline.
    assert_eq!(of("FROM"), ["scratch"]);
    assert!(of("RUN").is_empty(), "nothing runs in the image");
    assert!(
        of("ARG").is_empty() && of("LABEL").is_empty(),
        "labels are dist's options"
    );
    // The one file: what `cargo xtask dist` puts in the build context.
    let copy = of("COPY");
    assert_eq!(copy, [format!("macdrop {INSTALLED_BIN}")]);
    let dist = read(&repo().join("xtask/src/dist.rs"));
    assert!(
        dist.contains("context.join(\"macdrop\")"),
        "xtask/src/dist.rs names the binary `macdrop` in the context"
    );
    assert_eq!(of("ENTRYPOINT"), [format!("[\"{INSTALLED_BIN}\"]")]);
    assert_eq!(of("USER"), ["0:0"]);
}
