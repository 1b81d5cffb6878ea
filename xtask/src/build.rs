//! `cargo xtask build`: builds the `macdrop` binary. monitor/build.rs compiles
//! the eBPF crate for bpfel-unknown-none (nightly + bpf-linker) and embeds the
//! object, so one `cargo build -p monitor` builds everything.

use std::path::PathBuf;

use anyhow::{Result, ensure};

use crate::cmd::Cmd;

/// Builds monitor and returns the absolute path of the `macdrop` binary.
pub fn run(release: bool) -> Result<PathBuf> {
    Cmd::cargo()
        .args(["build", "--package", "monitor"])
        .args(release.then_some("--release"))
        .run()?;
    let bin = crate::cmd::target_dir()?
        .join(if release { "release" } else { "debug" })
        .join("macdrop");
    ensure!(
        bin.is_file(),
        "cargo build succeeded but {} does not exist",
        bin.display()
    );
    Ok(bin)
}
