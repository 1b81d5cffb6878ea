//! Checks, before touching the kernel, that the process may load BPF
//! programs and attach them to interfaces, and names what is missing.

use caps::{CapSet, Capability};

use crate::error::Failure;

pub fn check() -> Result<(), Failure> {
    let has = |c| caps::has_cap(None, CapSet::Effective, c).unwrap_or(false);
    let mut missing = Vec::new();
    // CAP_BPF exists since Linux 5.8; before that CAP_SYS_ADMIN covers it.
    if !has(Capability::CAP_BPF) && !has(Capability::CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(Capability::CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Failure::environment(format!(
        "missing {}: run macdrop as root (sudo macdrop ...) or grant it {}",
        missing.join(" and "),
        missing.join(", ")
    )))
}
