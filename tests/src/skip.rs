//! Checks that cannot run here are counted as skipped, never as passed.
//!
//! libtest knows only passed, failed and ignored, and a test that finds
//! nothing to check here and returns has "passed". So a test says so:
//!
//! - [`record`]: the whole test cannot run on this machine (a kernel
//!   without VLAN devices, say). Call it, then return at once.
//!   `cargo xtask test` counts the test as skipped instead of passed.
//! - [`part`]: one check inside a test cannot run, and the rest of the test
//!   did run. `cargo xtask test` counts that check as skipped, one more
//!   beside the test, which still passes or fails by what it ran.
//!
//! Each call prints `MACDROP-SKIPPED: <test>: <check>: <reason>` on stderr
//! (shown with `--nocapture` or when the test fails) and, when
//! `MACDROP_SKIP_LOG` names a file (`cargo xtask test` sets it), appends one
//! JSON line naming the test binary, the test, the scope, the check and the
//! reason. The test is the name libtest gives the thread it runs the test
//! on, so the call must come from that thread; xtask pairs it with that
//! test's `test NAME ... ok` line from the same binary.

use std::io::Write as _;

/// The variable `cargo xtask test` sets to the file the records go to.
pub const LOG_VAR: &str = "MACDROP_SKIP_LOG";

/// The stderr prefix of a record.
pub const MARKER: &str = "MACDROP-SKIPPED:";

/// The whole test did not run here, for `why`: call, then return. `check`
/// names what the test would have checked.
pub fn record(check: &str, why: &str) {
    write(Scope::Test, check, why);
}

/// One check inside a test did not run here, for `why`; the test goes on
/// with the rest.
pub fn part(check: &str, why: &str) {
    write(Scope::Part, check, why);
}

/// How much of the test a record covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole test: it counts as skipped, not passed.
    Test,
    /// One check of it: one more skipped check.
    Part,
}

impl Scope {
    /// The word in the log (`"test"`, `"part"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Test => "test",
            Scope::Part => "part",
        }
    }
}

/// The calling test: (the test binary's file name, the test's name).
///
/// # Panics
///
/// Outside a test's own thread (libtest names that thread after the test;
/// other threads have another name or none): a skip that cannot be tied to
/// its test could not be subtracted from the passed ones.
pub fn current_test() -> (String, String) {
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name.to_owned(),
        other => panic!(
            "macdrop_tests::skip called from thread {other:?}, not a test's own thread: \
             the skip could not be counted for its test"
        ),
    };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "?".to_owned());
    (binary, test)
}

/// One line of the log, as JSON.
pub fn log_line(binary: &str, test: &str, scope: Scope, check: &str, why: &str) -> String {
    serde_json::json!({
        "binary": binary,
        "test": test,
        "scope": scope.as_str(),
        "check": check,
        "reason": why,
    })
    .to_string()
}

fn write(scope: Scope, check: &str, why: &str) {
    let (binary, test) = current_test();
    eprintln!("{MARKER} {test}: {check}: {why}");
    let Some(path) = std::env::var_os(LOG_VAR) else {
        return;
    };
    let line = log_line(&binary, &test, scope, check, why);
    // O_APPEND and one write per line: test binaries and threads append
    // whole lines.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        // Unrecorded, the test would count as passed: fail it instead.
        panic!("cannot record the skip in {}: {e}", path.to_string_lossy());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libtest runs each test on a thread named after it, which is what
    /// ties a record to the test's `test NAME ... ok` line.
    #[test]
    fn the_test_is_named_after_its_thread() {
        let (binary, test) = current_test();
        assert_eq!(test, "skip::tests::the_test_is_named_after_its_thread");
        assert!(binary.starts_with("macdrop_tests-"), "{binary}");
    }

    #[test]
    #[should_panic(expected = "not a test's own thread")]
    fn a_record_from_another_thread_is_refused() {
        let joined = std::thread::spawn(current_test).join();
        if let Err(panic) = joined {
            std::panic::resume_unwind(panic);
        }
    }

    #[test]
    fn log_lines_are_json() {
        let line = log_line("fate-0123", "t", Scope::Part, "lab \"Vlan\"", "no 8021q");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["binary"], "fate-0123");
        assert_eq!(v["test"], "t");
        assert_eq!(v["scope"], "part");
        assert_eq!(v["check"], "lab \"Vlan\"");
        assert_eq!(v["reason"], "no 8021q");
        assert!(!line.contains('\n'));
    }
}
