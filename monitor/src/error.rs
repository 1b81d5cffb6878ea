//! The errors a user can act on, and the exit codes they map to.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success (also after SIGINT/SIGTERM, and when the reader of stdout goes away) |
//! | 1 | unexpected failure (a bug, a panic, or a kernel answer macdrop did not foresee), output that cannot be written (a full disk) |
//! | 2 | usage: bad flags or values, `--bridge` on a non-bridge |
//! | 3 | environment: missing privileges, unknown interface, no bridges, kernel lacks XDP, interface busy |
//! | 4 | `diagnose --fail-on SEVERITY`: a finding of that severity or worse |

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Unexpected = 1,
    Usage = 2,
    Environment = 3,
    Findings = 4,
}

/// How a command that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// `diagnose --fail-on`: a finding reached the threshold.
    FindingsFound,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::FindingsFound => ExitKind::Findings as u8,
        }
    }
}

/// What kind of environment failure, where callers decide by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Other,
    /// The namespace has no bridge, or none of the named interfaces: with
    /// `--all-netns` such a namespace is skipped, not an error.
    NothingToWatch,
    /// The reader of stdout went away (`| head`): the command ends
    /// quietly, exit 0 (`crate::output`).
    OutputClosed,
}

/// An error whose message already names the problem and the fix.
#[derive(Debug)]
pub struct Failure {
    pub kind: ExitKind,
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: ExitKind::Usage,
            reason: Reason::Other,
            message: message.into(),
        }
    }
    pub fn environment(message: impl Into<String>) -> Self {
        Self {
            kind: ExitKind::Environment,
            reason: Reason::Other,
            message: message.into(),
        }
    }
    pub fn nothing_to_watch(message: impl Into<String>) -> Self {
        Self {
            reason: Reason::NothingToWatch,
            ..Self::environment(message)
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Maps any error to its exit code and its one-line message.
pub fn classify(err: &anyhow::Error) -> (ExitKind, String) {
    match err.downcast_ref::<Failure>() {
        Some(f) => (f.kind, f.message.clone()),
        // `{:#}` joins the context chain on one line.
        None => (
            ExitKind::Unexpected,
            format!("unexpected error: {err:#}").replace('\n', " "),
        ),
    }
}
