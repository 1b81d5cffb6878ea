//! Waiting for a condition with a deadline, instead of sleeping.
//!
//! Frames sent into a veth are processed asynchronously (NAPI, softirq), so a
//! counter read right after `send` may lag. Tests poll until the value they
//! expect shows up, and on timeout get the last value back so they can
//! `assert_eq!` it and show exactly what differed.

use std::time::{Duration, Instant};

use anyhow::Result;

/// How often [`poll_until`] re-reads.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `read` until `done` holds for its value or `timeout` passes, and
/// returns the last value read either way. Errors from `read` end the wait.
pub fn poll_until<T>(
    timeout: Duration,
    mut read: impl FnMut() -> Result<T>,
    mut done: impl FnMut(&T) -> bool,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let value = read()?;
        if done(&value) || Instant::now() >= deadline {
            return Ok(value);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
