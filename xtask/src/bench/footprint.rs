//! What a running macdrop holds, read from /proc: its memory (peak and
//! current RSS), its file descriptors by kind, and the kernel memory of
//! the BPF maps and programs it holds (the `memlock` the kernel reports
//! in each one's fdinfo, counted once per map or program id).

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

/// One reading of a process.
#[derive(Clone, Debug, Default)]
pub struct Footprint {
    /// VmHWM: the peak resident size so far, start-up included.
    pub peak_rss_mib: f64,
    /// VmRSS.
    pub rss_mib: f64,
    /// Every open file descriptor.
    pub fds: usize,
    pub bpf_maps: usize,
    pub bpf_progs: usize,
    pub bpf_links: usize,
    /// The sum of `memlock` over the distinct maps and programs.
    pub kernel_mib: f64,
}

impl Footprint {
    /// Reads `pid`'s status and every fd's link and fdinfo.
    pub fn of(pid: u32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("the process (pid {pid}) is gone"))?;
        let mib = |field: &str| -> Result<f64> {
            status_kib(&status, field)
                .map(|kib| kib / 1024.0)
                .with_context(|| format!("no {field} in /proc/{pid}/status"))
        };
        let mut out = Self {
            peak_rss_mib: mib("VmHWM:")?,
            rss_mib: mib("VmRSS:")?,
            ..Self::default()
        };
        let mut seen = BTreeSet::new();
        let mut memlock = 0u64;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .with_context(|| format!("cannot list /proc/{pid}/fd"))?;
        for fd in fds.flatten() {
            out.fds += 1;
            // An fd closed meanwhile is simply not counted further.
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let kind = match target.to_string_lossy().as_ref() {
                "anon_inode:bpf-map" => "map_id:",
                "anon_inode:bpf-prog" => "prog_id:",
                "anon_inode:bpf_link" => {
                    out.bpf_links += 1;
                    continue;
                }
                _ => continue,
            };
            let path = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
            let Ok(info) = std::fs::read_to_string(path) else {
                continue;
            };
            let (Some(id), Some(bytes)) = (field(&info, kind), field(&info, "memlock:")) else {
                continue;
            };
            if seen.insert((kind, id)) {
                if kind == "map_id:" {
                    out.bpf_maps += 1;
                } else {
                    out.bpf_progs += 1;
                }
                memlock += bytes;
            }
        }
        out.kernel_mib = memlock as f64 / (1024.0 * 1024.0);
        Ok(out)
    }

    pub fn json(&self) -> Value {
        json!({
            "peak_rss_mib": self.peak_rss_mib,
            "rss_mib": self.rss_mib,
            "fds": self.fds,
            "bpf_maps": self.bpf_maps,
            "bpf_progs": self.bpf_progs,
            "bpf_links": self.bpf_links,
            "kernel_memlock_mib": self.kernel_mib,
        })
    }
}

/// The value in kB of a `Field:   1234 kB` line of /proc/PID/status.
fn status_kib(status: &str, field: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The number after `key` on its line of an fdinfo file.
fn field(info: &str, key: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_and_fdinfo_fields() {
        let status = "Name:\tmacdrop\nVmHWM:\t   34304 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(34304.0));
        assert_eq!(status_kib(status, "VmRSS:"), Some(20480.0));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\nmap_type:\t1\n\
                    memlock:\t1073152\nmap_id:\t42\nfrozen:\t0\n";
        assert_eq!(field(info, "memlock:"), Some(1_073_152));
        assert_eq!(field(info, "map_id:"), Some(42));
        assert_eq!(field(info, "prog_id:"), None);
    }

    #[test]
    fn reads_this_process() {
        let f = Footprint::of(std::process::id()).unwrap();
        assert!(f.peak_rss_mib >= f.rss_mib && f.rss_mib > 0.0, "{f:?}");
        assert!(f.fds >= 3, "stdin, stdout, stderr at least: {f:?}");
    }
}
