//! The container image (`deploy/Containerfile`): hadolint accepts it, every
//! COPY source exists, and its build steps are `cargo xtask setup`'s.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

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

/// The string literals between `start` and the next `end` in `text`.
fn quoted_list(text: &str, start: &str, end: &str) -> Vec<String> {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} not found"));
    let block = &text[from + start.len()..];
    let block = &block[..block.find(end).expect("end of the list")];
    block
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .flat_map(|l| l.split('"').skip(1).step_by(2).map(str::to_owned))
        .collect()
}

/// `const NAME: &str = "VALUE";` in `text`.
fn const_str(text: &str, name: &str) -> String {
    let from = text
        .find(&format!("const {name}: &str = \""))
        .unwrap_or_else(|| panic!("const {name} not found"));
    text[from..].split('"').nth(1).unwrap().to_owned()
}

#[test]
fn containerfile_lints_and_builds_like_xtask_setup() {
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
    let root = repo();
    let args: BTreeMap<String, String> = instructions
        .iter()
        .filter(|(i, _)| i == "ARG")
        .filter_map(|(_, rest)| rest.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

    // COPY sources from the context exist, and cover the workspace.
    let mut copied = BTreeSet::new();
    for (_, rest) in instructions.iter().filter(|(i, _)| i == "COPY") {
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from=")) {
            continue;
        }
        let sources: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for source in &sources[..sources.len() - 1] {
            assert!(
                root.join(source).exists(),
                "COPY {source}: not in the repository"
            );
            copied.insert(source.trim_end_matches('/').to_owned());
        }
    }
    let cargo_toml = read(&root.join("Cargo.toml"));
    let members = quoted_list(&cargo_toml, "members = [", "]");
    assert!(members.contains(&"monitor".to_owned()), "{members:?}");
    for needed in members
        .iter()
        .map(String::as_str)
        .chain(["Cargo.toml", "Cargo.lock", ".cargo"])
    {
        assert!(copied.contains(needed), "COPY {needed} missing");
    }

    // The build steps are xtask setup's.
    let setup = read(&root.join("xtask/src/setup.rs"));
    let runs: Vec<&str> = instructions
        .iter()
        .filter(|(i, _)| i == "RUN")
        .map(|(_, r)| r.as_str())
        .collect();
    let apt: BTreeSet<String> = runs
        .iter()
        .filter_map(|r| r.split("apt-get -q install").nth(1))
        .flat_map(|r| {
            r.split("&&")
                .next()
                .unwrap()
                .split_whitespace()
                .filter(|w| !w.starts_with('-'))
                .map(str::to_owned)
        })
        .collect();
    let build_packages: BTreeSet<String> =
        quoted_list(&setup, "const APT_PACKAGES: &[&str] = &[", "];")
            .into_iter()
            // Libraries, and protoc for the CRI client's protos.
            .filter(|p| p.ends_with("-dev") || p == "protobuf-compiler")
            .collect();
    assert!(build_packages.contains("llvm-22-dev"), "{build_packages:?}");
    assert_eq!(apt, build_packages, "the build packages of xtask setup");

    let llvm_prefix = const_str(&setup, "LLVM_PREFIX");
    let linker_prefix = const_str(&setup, "BPF_LINKER_VERSION_PREFIX");
    let linker = runs
        .iter()
        .find(|r| r.contains("cargo install") && r.contains("bpf-linker"))
        .expect("a bpf-linker install");
    assert!(
        linker.contains(&format!("LLVM_PREFIX={llvm_prefix} ")),
        "{linker}"
    );
    for flag in ["--no-default-features", "--features llvm-22", "--locked"] {
        assert!(linker.contains(flag), "{flag} in {linker}");
    }
    assert!(
        setup.contains("\"--no-default-features\"") && setup.contains("\"llvm-22\""),
        "setup builds bpf-linker the same way"
    );
    assert!(
        args["BPF_LINKER_VERSION"].starts_with(&linker_prefix),
        "bpf-linker {} is not {linker_prefix}x",
        args["BPF_LINKER_VERSION"]
    );

    let nightly = runs
        .iter()
        .find(|r| r.contains("rustup toolchain install"))
        .expect("a nightly install");
    assert!(nightly.contains("--component rust-src"), "{nightly}");
    assert!(
        nightly.contains("toolchains/nightly-"),
        "reachable as `nightly`: {nightly}"
    );
    assert!(
        args["RUST_NIGHTLY"].starts_with("nightly-20"),
        "a dated nightly"
    );
    assert!(setup.contains("\"nightly\"") && setup.contains("\"rust-src\""));
    let rust_version = cargo_toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace rust-version");
    assert!(
        args["RUST_VERSION"].starts_with(rust_version),
        "base image Rust {} vs rust-version {rust_version}",
        args["RUST_VERSION"]
    );

    let build = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    for flag in [
        "--locked",
        "--release",
        "-p monitor",
        "--bin macdrop",
        "+crt-static",
    ] {
        assert!(build.contains(flag), "{flag} in {build}");
    }
    assert!(read(&root.join("monitor/Cargo.toml")).contains("name = \"macdrop\""));

    // The runtime stage: the binary alone, where the unit has it too.
    let last_from = instructions.iter().rposition(|(i, _)| i == "FROM").unwrap();
    let runtime = &instructions[last_from..];
    assert!(
        runtime.iter().any(|(i, r)| i == "COPY"
            && r.starts_with("--from=build")
            && r.ends_with(INSTALLED_BIN)),
        "{runtime:?}"
    );
    assert!(
        runtime
            .iter()
            .any(|(i, r)| i == "ENTRYPOINT" && r == &format!("[\"{INSTALLED_BIN}\"]"))
    );
    assert!(
        !runtime.iter().any(|(i, _)| i == "RUN"),
        "nothing runs in the runtime image"
    );
}
