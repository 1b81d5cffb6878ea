//! The suite's counts: libtest's results, less what the tests recorded as
//! not run here (`macdrop_tests::skip`).
//!
//! A test that could not run returns, and libtest counts it as passed; its
//! record in the skip log (one JSON line: test binary, test, scope, check,
//! reason) moves it to skipped. To know which test passed, the output of
//! `cargo test` is read line by line: cargo's `Running ... (PATH)` line
//! names the test binary whose `test NAME ... ok` lines follow, and
//! libtest's `test result:` line gives that binary's counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context as _, Result};

/// What libtest said of one test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Ignored,
}

/// One line of the skip log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    /// The test binary's file name (`diagnose-0123abcd`).
    binary: String,
    /// The test, as libtest names it (`module::name`).
    test: String,
    /// The whole test (`true`) or one check of it.
    whole: bool,
    check: String,
    reason: String,
}

impl Skip {
    /// Parses one line of the log.
    pub fn parse(line: &str) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("skip log line {line:?}"))?;
        let field = |name: &str| {
            v[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("skip log line without {name}: {line}"))
        };
        let whole = match field("scope")?.as_str() {
            "test" => true,
            "part" => false,
            other => anyhow::bail!("skip log line with scope {other:?}: {line}"),
        };
        Ok(Self {
            binary: field("binary")?,
            test: field("test")?,
            whole,
            check: field("check")?,
            reason: field("reason")?,
        })
    }
}

/// Test counts summed over every test binary cargo ran, and each test's
/// result, by binary.
#[derive(Debug, Default)]
pub struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// The binary whose output follows (cargo's last `Running` line).
    binary: Option<String>,
    /// A test whose result is still to come: with one test thread and
    /// `--nocapture`, libtest prints `test NAME ... ` before the test's
    /// own output and the result after it.
    pending: Option<String>,
    outcomes: HashMap<(String, String), Outcome>,
}

/// The summary line's numbers, and what to list before it.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub passed: u64,
    pub failed: u64,
    /// libtest's ignored tests, the tests that did not run here and the
    /// checks inside tests that did not.
    pub skipped: u64,
    /// One line per skipped test or check: `TEST: CHECK: REASON`.
    pub skips: Vec<String>,
    /// Records that name no test libtest reported: they cannot be counted
    /// truthfully.
    pub unmatched: Vec<String>,
}

impl Summary {
    /// The suite's closing line, in the plain form CI reads.
    pub fn line(&self) -> String {
        format!(
            "tests: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

impl Tally {
    /// Takes one line of `cargo test`'s output (stdout and stderr).
    pub fn add_line(&mut self, line: &str) {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("Running ") {
            // `Running tests/fate.rs (target/debug/deps/fate-0123abcd)`
            self.binary = rest
                .strip_suffix(')')
                .and_then(|r| r.rsplit_once('('))
                .map(|(_, path)| path.rsplit('/').next().unwrap_or(path).trim().to_owned());
            self.pending = None;
        } else if let Some(rest) = line.strip_prefix("test result: ") {
            self.add_summary(rest);
            self.pending = None;
        } else if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, result)) = rest.split_once(" ... ")
        {
            let name = name.strip_suffix(" - should panic").unwrap_or(name);
            if !self.set(name.to_owned(), result) {
                self.pending = Some(name.to_owned());
            }
        } else if let Some(name) = self.pending.clone()
            && let Some(word) = ["ok", "FAILED", "ignored"]
                .into_iter()
                .find(|w| trimmed == *w || trimmed.ends_with(&format!(" {w}")))
        {
            self.set(name, word);
        }
    }

    /// Records `name`'s result if `result` starts with one; false if not
    /// (the test's own output came first).
    fn set(&mut self, name: String, result: &str) -> bool {
        let word = result.trim().split([' ', ',']).next().unwrap_or("");
        let outcome = match word {
            "ok" => Outcome::Ok,
            "FAILED" => Outcome::Failed,
            "ignored" => Outcome::Ignored,
            _ => return false,
        };
        let binary = self.binary.clone().unwrap_or_default();
        self.outcomes.insert((binary, name), outcome);
        self.pending = None;
        true
    }

    /// `ok. 25 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`
    fn add_summary(&mut self, rest: &str) {
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

    /// Whether any test ran to a result.
    pub fn ran_any(&self) -> bool {
        self.passed + self.failed > 0
    }

    /// The counts with `skips` applied: a test that recorded itself as not
    /// run moves from passed to skipped (a failed one stays failed: it ran
    /// and failed); each check a test skipped inside is one more skipped.
    pub fn summary(&self, skips: &[Skip]) -> Summary {
        let mut passed = self.passed;
        let mut skipped = self.ignored;
        let mut listed = Vec::new();
        let mut unmatched = Vec::new();
        // Whole tests first: their parts are not counted again.
        let mut whole: BTreeMap<(&str, &str), &Skip> = BTreeMap::new();
        for s in skips.iter().filter(|s| s.whole) {
            whole.entry((&s.binary, &s.test)).or_insert(s);
        }
        let mut parts: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
        let mut part_skips = Vec::new();
        for s in skips.iter().filter(|s| !s.whole) {
            if !whole.contains_key(&(s.binary.as_str(), s.test.as_str()))
                && parts.insert((&s.binary, &s.test, &s.check))
            {
                part_skips.push(s);
            }
        }
        let outcome = |s: &Skip| {
            self.outcomes
                .get(&(s.binary.clone(), s.test.clone()))
                .copied()
        };
        for s in whole.values() {
            match outcome(s) {
                Some(Outcome::Ok) if passed > 0 => {
                    passed -= 1;
                    skipped += 1;
                    listed.push(format!("{}: {}: {}", s.test, s.check, s.reason));
                }
                Some(Outcome::Failed) => listed.push(format!(
                    "{}: {}: {} (and the test failed: counted as failed)",
                    s.test, s.check, s.reason
                )),
                _ => unmatched.push(format!("{} in {}: {}", s.test, s.binary, s.check)),
            }
        }
        for s in part_skips {
            match outcome(s) {
                Some(Outcome::Ok | Outcome::Failed) => {
                    skipped += 1;
                    listed.push(format!("{}: {}: {}", s.test, s.check, s.reason));
                }
                _ => unmatched.push(format!("{} in {}: {}", s.test, s.binary, s.check)),
            }
        }
        Summary {
            passed,
            failed: self.failed,
            skipped,
            skips: listed,
            unmatched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(binary: &str, test: &str, whole: bool, check: &str) -> Skip {
        Skip {
            binary: binary.into(),
            test: test.into(),
            whole,
            check: check.into(),
            reason: "why".into(),
        }
    }

    fn tally(output: &str) -> Tally {
        let mut t = Tally::default();
        for line in output.lines() {
            t.add_line(line);
        }
        t
    }

    /// Two binaries with a test of the same name, as cargo and libtest
    /// print them.
    const OUTPUT: &str = "\
   Compiling macdrop-tests v0.1.0 (/src/tests)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 9.1s
     Running unittests src/lib.rs (target/debug/deps/macdrop-0a1b)

running 3 tests
test netlink::kernel_tests::vlan_devices ... ok
test netlink::kernel_tests::a_bridge ... ok
test render::slow ... ignored, takes minutes

test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.46s

     Running tests/diagnose.rs (/w/target/debug/deps/diagnose-2c3d)

running 2 tests
test the_incident ... ok
test vlan_devices ... FAILED

failures:

---- vlan_devices stdout ----
thread 'vlan_devices' panicked at tests/tests/diagnose.rs:9:5:
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 3.0s
";

    #[test]
    fn sums_libtest_summaries() {
        let s = tally(OUTPUT).summary(&[]);
        assert_eq!(
            s,
            Summary {
                passed: 3,
                failed: 1,
                skipped: 1,
                skips: vec![],
                unmatched: vec![],
            }
        );
        assert_eq!(s.line(), "tests: 3 passed, 1 failed, 1 skipped");
    }

    #[test]
    fn a_skipped_test_is_not_passed() {
        let s = tally(OUTPUT).summary(&[skip(
            "macdrop-0a1b",
            "netlink::kernel_tests::vlan_devices",
            true,
            "VLAN devices",
        )]);
        assert_eq!((s.passed, s.failed, s.skipped), (2, 1, 2));
        assert_eq!(
            s.skips,
            ["netlink::kernel_tests::vlan_devices: VLAN devices: why"]
        );
        assert!(s.unmatched.is_empty());
    }

    #[test]
    fn the_binary_tells_tests_of_the_same_name_apart() {
        // diagnose's vlan_devices failed: it stays failed, and the passed
        // count keeps the other binary's vlan_devices.
        let s = tally(OUTPUT).summary(&[skip("diagnose-2c3d", "vlan_devices", true, "c")]);
        assert_eq!((s.passed, s.failed, s.skipped), (3, 1, 1));
        assert!(s.skips[0].ends_with("counted as failed)"), "{:?}", s.skips);
    }

    #[test]
    fn a_skipped_check_inside_a_test_counts_once_beside_it() {
        let s = tally(OUTPUT).summary(&[
            skip("diagnose-2c3d", "the_incident", false, "drops"),
            // The same check twice (a retry): still one.
            skip("diagnose-2c3d", "the_incident", false, "drops"),
            skip("diagnose-2c3d", "the_incident", false, "VLAN lab"),
        ]);
        assert_eq!((s.passed, s.failed, s.skipped), (3, 1, 3));
        assert_eq!(s.skips.len(), 2);
    }

    #[test]
    fn a_whole_skip_counts_once_with_its_parts() {
        let s = tally(OUTPUT).summary(&[
            skip(
                "macdrop-0a1b",
                "netlink::kernel_tests::a_bridge",
                false,
                "p",
            ),
            skip("macdrop-0a1b", "netlink::kernel_tests::a_bridge", true, "w"),
            skip(
                "macdrop-0a1b",
                "netlink::kernel_tests::a_bridge",
                true,
                "w2",
            ),
        ]);
        assert_eq!((s.passed, s.failed, s.skipped), (2, 1, 2));
    }

    #[test]
    fn a_record_without_a_result_is_unmatched() {
        let s = tally(OUTPUT).summary(&[
            skip("diagnose-2c3d", "no_such_test", true, "c"),
            skip("other-9999", "the_incident", false, "c"),
        ]);
        assert_eq!((s.passed, s.failed, s.skipped), (3, 1, 1));
        assert_eq!(s.unmatched.len(), 2, "{:?}", s.unmatched);
    }

    #[test]
    fn results_after_the_tests_own_output() {
        // One test thread and --nocapture: the result comes lines later.
        let t = tally(
            "     Running tests/fate.rs (target/debug/deps/fate-77)\n\
             running 1 test\n\
             test agrees ... MACDROP-SKIPPED: agrees: lab Vlan: no 8021q\n\
             fate oracle: seed 1\n\
             ok\n\
             test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n",
        );
        // The first line holds the test's output after " ... ", which is
        // no result: the later "ok" is.
        let s = t.summary(&[skip("fate-77", "agrees", true, "lab Vlan")]);
        assert_eq!((s.passed, s.skipped), (0, 1), "{s:?}");
    }

    #[test]
    fn log_lines_parse() {
        let s = Skip::parse(
            r#"{"binary":"fate-77","test":"agrees","scope":"part","check":"lab","reason":"no 8021q"}"#,
        )
        .unwrap();
        assert_eq!(s, {
            let mut want = skip("fate-77", "agrees", false, "lab");
            want.reason = "no 8021q".into();
            want
        });
        assert!(
            Skip::parse(r#"{"binary":"b","test":"t","scope":"all","check":"c","reason":"r"}"#)
                .is_err()
        );
        assert!(Skip::parse("SKIPPED: old format").is_err());
    }
}
