//! `cargo xtask test`: the whole suite, what `.ci/run` runs. Setup, lint,
//! build macdrop, the four-kernel matrix, then `cargo test` over the
//! workspace with MACDROP_BIN pointing at the binary the privileged
//! integration tests start. Its last line is the summary CI reads, `tests:
//! N passed, N failed, N skipped`, where a test or check that could not run
//! here is skipped, never passed (`tally`).

use std::time::Instant;

use anyhow::{Result, bail};

use crate::{build, cmd::Cmd, cmd::is_root, lint, setup, ui};

mod tally;

use tally::{Skip, Tally};

/// Which optional phases run.
pub struct Options {
    /// The four-kernel matrix.
    pub kernel_matrix: bool,
    /// `cargo xtask dist` before the tests, so the artifact tests run.
    pub dist: bool,
}

/// `extra` goes to `cargo test` as is (a test name filter, `-- --nocapture`).
pub fn run(options: &Options, extra: &[String]) -> Result<()> {
    if !is_root() {
        bail!(
            "`cargo xtask test` needs root (the tests create network namespaces and attach XDP programs); run it with sudo"
        );
    }
    let start = Instant::now();
    let skip_log = crate::cmd::target_dir()?.join("test-skipped.log");
    // A log of an earlier run must not count in this one's summary, even
    // when this one stops before its tests.
    let _ = std::fs::remove_file(&skip_log);
    let mut phases = Vec::new();
    let mut tally = Tally::default();
    let result = (|| {
        let mut timed = |name: &'static str, step: &mut dyn FnMut() -> Result<()>| {
            ui::phase(name);
            let t = Instant::now();
            let result = step();
            phases.push(format!("{name} {}", ui::duration(t.elapsed())));
            result
        };
        timed("setup", &mut || setup::run(&setup::Options::default()))?;
        timed("lint", &mut lint::run)?;
        let mut bin = None;
        timed("build", &mut || {
            bin = Some(build::run(false)?);
            Ok(())
        })?;
        let bin = bin.expect("build set the binary path");
        // The benchmark's smoke run: every part briefly, no thresholds (the
        // numbers are the product of the full run, `cargo xtask bench`).
        timed("bench --quick", &mut || {
            Cmd::cargo()
                .args(["xtask", "bench", "--quick", "--no-build"])
                .run()
        })?;
        if options.dist {
            // Its own command, like the matrix: `cargo xtask dist` alone
            // makes the same artifacts the tests then install and run.
            timed("dist", &mut || Cmd::cargo().args(["xtask", "dist"]).run())?;
            // The static binary on the oldest kernel of the matrix, under
            // QEMU, instead of the debug build: every scenario the matrix
            // runs (the lab bridge watched with exact counts among them).
            let oldest = crate::kernel_matrix::oldest_kernel();
            timed("dist: static binary on the oldest kernel", &mut || {
                Cmd::cargo()
                    .args(["xtask", "kernel-matrix", "--kernels", oldest, "--macdrop"])
                    .arg(crate::dist::built_binary()?)
                    .run()
            })?;
        }
        if options.kernel_matrix {
            // The same checks on Debian's 5.10, 6.1 and 6.12 kernels under
            // QEMU and on this one (its own command, so it can run alone).
            timed("kernel-matrix", &mut || {
                Cmd::cargo().args(["xtask", "kernel-matrix"]).run()
            })?;
        }
        timed("tests", &mut || {
            let result = Cmd::cargo()
                .env("MACDROP_BIN", &bin)
                .env(macdrop_tests::skip::LOG_VAR, &skip_log)
                .args([
                    "test",
                    // Every member: the privileged tests crate is not a
                    // default member, so plain `cargo test` leaves it out.
                    "--workspace",
                    // Built only for the BPF target by monitor/build.rs.
                    "--exclude",
                    "monitor-ebpf",
                    // Report every failing test binary, not just the first.
                    "--no-fail-fast",
                    // No doc-tests (there are none): the last summary line
                    // is then a real test binary's.
                    "--all-targets",
                ])
                .args(extra)
                .run_watching_output(|line| tally.add_line(line));
            if result.is_ok() && !tally.ran_any() {
                bail!("cargo test ran no test");
            }
            result
        })
    })();
    let elapsed = ui::duration(start.elapsed());
    let phases = phases.join(", ");
    // Checks a test found impossible here are skipped, never passed.
    let skips = read_skip_log(&skip_log);
    let summary = match &skips {
        Ok(skips) => tally.summary(skips),
        Err(_) => tally.summary(&[]),
    };
    for line in &summary.skips {
        println!("xtask: test: skipped: {line}");
    }
    // A record xtask cannot tie to a test's result, or a log it cannot
    // read, would make the counts a guess: the suite fails instead.
    let problem = match (&skips, summary.unmatched.is_empty()) {
        (Err(e), _) => Some(format!("{e:#}")),
        (Ok(_), false) => Some(format!(
            "skip records name tests with no result line in the output of `cargo test` \
             (run it without --quiet or --format): {}",
            summary.unmatched.join("; ")
        )),
        (Ok(_), true) => None,
    };
    let result = match (result, problem) {
        (Ok(()), Some(problem)) => Err(anyhow::anyhow!(problem)),
        (result, _) => result,
    };
    match result {
        Ok(()) => {
            println!("xtask: test: PASSED in {elapsed} ({phases})");
            // The suite's closing line, in the plain form CI reads.
            println!("{}", summary.line());
            Ok(())
        }
        Err(error) => {
            println!("{}", summary.line());
            Err(error.context(format!("test: FAILED after {elapsed} ({phases})")))
        }
    }
}

/// The records of `macdrop_tests::skip`, one JSON object a line; no file
/// is no record.
fn read_skip_log(path: &std::path::Path) -> Result<Vec<Skip>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(Skip::parse)
        .collect()
}
