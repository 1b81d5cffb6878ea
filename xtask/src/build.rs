//! `cargo xtask build`: builds the `macdrop` binary. monitor/build.rs compiles
//! the eBPF crate for bpfel-unknown-none (nightly + bpf-linker) and embeds the
//! object, so one `cargo build -p monitor` builds everything.

use std::path::PathBuf;

use anyhow::{Context as _, Result, ensure};

use crate::cmd::{Cmd, probe};

/// Builds monitor and returns the absolute path of the `macdrop` binary.
pub fn run(release: bool) -> Result<PathBuf> {
    Cmd::cargo()
        .args(["build", "--package", "monitor"])
        .args(release.then_some("--release"))
        .run()?;
    let bin = target_dir()?
        .join(if release { "release" } else { "debug" })
        .join("macdrop");
    ensure!(
        bin.is_file(),
        "cargo build succeeded but {} does not exist",
        bin.display()
    );
    Ok(bin)
}

/// The workspace's target directory, as cargo resolves it (CARGO_TARGET_DIR,
/// `build.target-dir` in a config file, or `<root>/target`).
fn target_dir() -> Result<PathBuf> {
    let metadata = probe("cargo", &["metadata", "--format-version", "1", "--no-deps"])
        .context("`cargo metadata` failed")?;
    let metadata: serde_json::Value =
        serde_json::from_str(&metadata).context("`cargo metadata` printed invalid JSON")?;
    let dir = metadata["target_directory"]
        .as_str()
        .context("`cargo metadata` printed no target_directory")?;
    Ok(PathBuf::from(dir))
}
