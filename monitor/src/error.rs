//! The errors a user can act on, and the exit codes they map to.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success (also after SIGINT/SIGTERM) |
//! | 1 | unexpected failure (a bug, or a kernel answer macdrop did not foresee) |
//! | 2 | usage: bad flags or values, `--bridge` on a non-bridge |
//! | 3 | environment: missing privileges, unknown interface, no bridges, kernel lacks XDP, interface busy |

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Unexpected = 1,
    Usage = 2,
    Environment = 3,
}

/// An error whose message already names the problem and the fix.
#[derive(Debug)]
pub struct Failure {
    pub kind: ExitKind,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: ExitKind::Usage,
            message: message.into(),
        }
    }
    pub fn environment(message: impl Into<String>) -> Self {
        Self {
            kind: ExitKind::Environment,
            message: message.into(),
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
