//! Checks that cannot run here are counted as skipped, never as passed.
//!
//! A test that finds a check impossible on this machine (a kernel without
//! VLAN devices, a missing tool) calls [`record`]: the check is named on
//! stderr and appended to the file `MACDROP_SKIP_LOG` names, which
//! `cargo xtask test` sets, counts into the summary line's `skipped` and
//! lists after it.

use std::io::Write as _;

/// Records that `check` did not run, and why.
pub fn record(check: &str, why: &str) {
    let line = format!("{check}: {why}");
    eprintln!("SKIPPED: {line}");
    if let Some(path) = std::env::var_os("MACDROP_SKIP_LOG") {
        // O_APPEND: test binaries and threads write whole lines at once.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path);
        match file {
            Ok(mut f) => {
                let _ = writeln!(f, "{line}");
            }
            Err(e) => eprintln!("cannot record the skip in {}: {e}", path.to_string_lossy()),
        }
    }
}
