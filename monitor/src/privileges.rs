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
    // Without CAP_PERFMON the verifier hardens programs against Spectre v1
    // and refuses the pointer arithmetic LLVM emits for the classifier
    // ("pointer arithmetic with it prohibited for !root", measured on
    // 6.18 for the XDP and tc programs alike); the drop tracepoint needs it
    // too. CAP_SYS_ADMIN covers it (and kernels before 5.8 have no
    // CAP_PERFMON).
    if !has(Capability::CAP_PERFMON) && !has(Capability::CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
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

/// What macdrop still needs once everything is attached:
/// - CAP_BPF and CAP_NET_ADMIN, to attach to ports that appear later;
/// - CAP_SYS_ADMIN only when it enters other namespaces (setns), and on
///   kernels before 5.8, where it stands in for CAP_BPF; with other
///   namespaces also CAP_PERFMON, for the sessions of namespaces that appear
///   later;
/// - CAP_SYS_PTRACE, to name the processes holding promiscuous mode
///   (/proc/PID/fd of other processes).
///
/// Everything else (CAP_PERFMON once the drop tracepoint is attached,
/// CAP_SYS_RESOURCE for the memlock limit, CAP_SYSLOG, CAP_DAC_OVERRIDE,
/// CAP_SETUID, ...) is dropped from the effective and permitted sets, so a
/// bug after start cannot use it. Returns the capabilities kept.
pub fn drop_after_attach(enters_namespaces: bool) -> anyhow::Result<Vec<Capability>> {
    use std::collections::HashSet;
    let permitted = caps::read(None, CapSet::Permitted)?;
    let mut keep: HashSet<Capability> = [
        Capability::CAP_BPF,
        Capability::CAP_NET_ADMIN,
        Capability::CAP_SYS_PTRACE,
    ]
    .into();
    let bpf_needs_sys_admin = !permitted.contains(&Capability::CAP_BPF);
    if enters_namespaces || bpf_needs_sys_admin {
        keep.insert(Capability::CAP_SYS_ADMIN);
    }
    // --all-netns starts sessions in namespaces that appear later, each
    // attaching its own drop tracepoint.
    if enters_namespaces {
        keep.insert(Capability::CAP_PERFMON);
    }
    keep_only(keep)
}

/// Narrows the calling thread's capabilities to those of `keep` it has
/// (effective and permitted; nothing inheritable or ambient). Capabilities
/// are per thread: threads started later inherit the result. Returns the
/// capabilities kept.
pub fn keep_only(keep: std::collections::HashSet<Capability>) -> anyhow::Result<Vec<Capability>> {
    use std::collections::HashSet;
    let permitted = caps::read(None, CapSet::Permitted)?;
    let keep: HashSet<Capability> = keep.intersection(&permitted).copied().collect();
    caps::clear(None, CapSet::Ambient)?;
    caps::set(None, CapSet::Inheritable, &HashSet::new())?;
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    let mut kept: Vec<Capability> = keep.into_iter().collect();
    kept.sort_by_key(|c| c.index());
    Ok(kept)
}
