//! `cargo xtask run [-- ARGS...]` (and `cargo xtask demo`): builds macdrop,
//! then either runs the demo (no ARGS) or `macdrop ARGS` as root.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, Result};

use crate::{
    build,
    cmd::{Cmd, is_root},
    setup,
};

pub fn run(release: bool, args: &[String]) -> Result<ExitCode> {
    setup::run(&setup::Options::default())?;
    let bin = build::run(release)?;
    if args.is_empty() {
        return demo(&bin);
    }
    // exec: macdrop gets Ctrl-C directly and its exit code is ours.
    Err(Cmd::new(&bin).args(args).privileged()?.exec())
}

/// Runs the demo against `bin`: in this process if we are root, otherwise
/// by re-executing xtask's hidden `demo-as-root` under sudo.
fn demo(bin: &Path) -> Result<ExitCode> {
    if is_root() {
        demo_as_root(bin)?;
        return Ok(ExitCode::SUCCESS);
    }
    let xtask = std::env::current_exe().context("cannot find xtask's own executable")?;
    Err(Cmd::new(xtask)
        .arg("demo-as-root")
        .arg(bin)
        .privileged()?
        .exec())
}

/// The demo proper; the caller is root.
pub fn demo_as_root(bin: &Path) -> Result<()> {
    let bin: PathBuf = bin
        .canonicalize()
        .with_context(|| format!("no macdrop binary at {}", bin.display()))?;
    println!("xtask: running the demo with {}", bin.display());
    macdrop_tests::demo::run_demo(&bin)
}
