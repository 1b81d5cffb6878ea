//! `cargo xtask test`: the whole suite, what `.ci/run` runs. Setup, lint,
//! build macdrop, the four-kernel matrix, then `cargo test` over the
//! workspace with MACDROP_BIN pointing at the binary the privileged
//! integration tests start.

use std::time::Instant;

use anyhow::{Result, bail};

use crate::{build, cmd::Cmd, cmd::is_root, lint, setup, ui};

/// `extra` goes to `cargo test` as is (a test name filter, `-- --nocapture`).
pub fn run(kernel_matrix: bool, extra: &[String]) -> Result<()> {
    if !is_root() {
        bail!(
            "`cargo xtask test` needs root (the tests create network namespaces and attach XDP programs); run it with sudo"
        );
    }
    let start = Instant::now();
    let skip_log = crate::cmd::target_dir()?.join("test-skipped.log");
    let mut phases = Vec::new();
    let mut totals = Totals::default();
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
        if kernel_matrix {
            // The same checks on Debian's 5.10, 6.1 and 6.12 kernels under
            // QEMU and on this one (its own command, so it can run alone).
            timed("kernel-matrix", &mut || {
                Cmd::cargo().args(["xtask", "kernel-matrix"]).run()
            })?;
        }
        timed("tests", &mut || {
            // A fresh log for the checks the tests could not run here.
            let _ = std::fs::remove_file(&skip_log);
            let result = Cmd::cargo()
                .env("MACDROP_BIN", &bin)
                .env("MACDROP_SKIP_LOG", &skip_log)
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
                .run_watching_stdout(|line| totals.add_summary_line(line));
            if result.is_ok() && totals.passed == 0 {
                bail!("cargo test ran no test");
            }
            result
        })
    })();
    let elapsed = ui::duration(start.elapsed());
    let phases = phases.join(", ");
    // Checks a test found impossible here are skipped, never passed.
    let skipped: Vec<String> = std::fs::read_to_string(&skip_log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    totals.skipped = skipped.len() as u64;
    for line in &skipped {
        println!("xtask: test: skipped: {line}");
    }
    match result {
        Ok(()) => {
            println!("xtask: test: PASSED in {elapsed} ({phases})");
            // The suite's closing line, in the plain form CI reads.
            println!(
                "tests: {} passed, {} failed, {} skipped",
                totals.passed,
                totals.failed,
                totals.ignored + totals.skipped
            );
            Ok(())
        }
        Err(error) => {
            println!(
                "tests: {} passed, {} failed, {} skipped",
                totals.passed,
                totals.failed,
                totals.ignored + totals.skipped
            );
            Err(error.context(format!("test: FAILED after {elapsed} ({phases})")))
        }
    }
}

/// Test counts summed over every test binary cargo ran.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// Checks the tests recorded as not run here (`macdrop_tests::skip`).
    skipped: u64,
}

impl Totals {
    /// Adds the counts of a libtest summary line
    /// (`test result: ok. 25 passed; 0 failed; 1 ignored; ...`); other lines
    /// are ignored.
    fn add_summary_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn sums_libtest_summaries() {
        let mut t = Totals::default();
        t.add_summary_line("test result: ok. 25 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.46s");
        t.add_summary_line("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.0s");
        t.add_summary_line("running 5 tests");
        t.add_summary_line("test foo ... ok");
        assert_eq!(
            t,
            Totals {
                passed: 28,
                failed: 2,
                ignored: 1,
                skipped: 0,
            }
        );
    }
}
