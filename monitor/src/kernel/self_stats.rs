//! `--self-stats`: macdrop's own cost, measured by the kernel. BPF run-time
//! statistics are enabled through BPF_ENABLE_STATS, which keeps them on
//! only while the returned file descriptor is open: closing it (exit, crash)
//! restores the previous setting by itself, with no sysctl to put back.

use std::{collections::BTreeMap, os::fd::OwnedFd};

use aya::{Ebpf, sys::Stats};

use crate::error::Failure;

/// Holds BPF run-time statistics enabled.
pub struct StatsEnabled {
    _fd: OwnedFd,
}

impl StatsEnabled {
    pub fn enable() -> Result<Self, Failure> {
        aya::sys::enable_stats(Stats::RunTime)
            .map(|fd| Self { _fd: fd })
            .map_err(|e| {
                Failure::environment(format!(
                    "cannot enable BPF run-time statistics ({e}); --self-stats needs Linux >= \
                     5.8 and CAP_SYS_ADMIN or CAP_BPF"
                ))
            })
    }
}

/// Runs and time of one of macdrop's programs, summed over every loaded
/// instance (one per namespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    pub runs: u64,
    pub run_time_ns: u64,
}

impl ProgramStats {
    pub fn avg_ns(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.run_time_ns as f64 / self.runs as f64
        }
    }
}

/// Adds the statistics of every loaded program of `ebpf` into `into`, by
/// program name. Programs not loaded (the unused XDP twin, say) are skipped.
pub fn add_program_stats(ebpf: &Ebpf, into: &mut BTreeMap<String, ProgramStats>) {
    for (name, program) in ebpf.programs() {
        let Ok(info) = program.info() else {
            continue;
        };
        let s = into.entry(name.to_owned()).or_default();
        s.runs += info.run_count();
        s.run_time_ns += u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
    }
}
