//! `cargo xtask lint`: rustfmt and clippy, warnings denied. Every check runs
//! even if an earlier one fails, so one run shows all the problems.

use anyhow::{Result, bail};

use crate::cmd::Cmd;

pub fn run() -> Result<()> {
    let checks = [
        (
            "rustfmt",
            Cmd::cargo().args(["fmt", "--all", "--", "--check"]),
        ),
        (
            "clippy (host crates)",
            Cmd::cargo().args([
                "clippy",
                "--workspace",
                "--exclude",
                "monitor-ebpf",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        // The eBPF crate is linted for the target it is built for,
        // bpfel-unknown-none (core rebuilt with -Z build-std, as aya-build
        // does), so clippy sees the code exactly as the BPF build compiles it
        // (target_arch = "bpf", no std). The aya template's host form
        // (`--all-targets -- -Zpanic_abort_tests` without --target) also
        // compiles here, but only checks a host build of a crate that never
        // runs on the host. Checking does not link, so no bpf-linker is needed.
        (
            "clippy (eBPF crate, bpfel-unknown-none)",
            Cmd::cargo().args([
                "+nightly",
                "clippy",
                "--package",
                "monitor-ebpf",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
                "-C",
                "panic=abort",
            ]),
        ),
    ];
    let mut failed = Vec::new();
    for (name, cmd) in &checks {
        if let Err(error) = cmd.run() {
            eprintln!("xtask: lint: {name} failed: {error:#}");
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        bail!("lint failed: {}", failed.join("; "));
    }
    println!("xtask: lint: ok");
    Ok(())
}
