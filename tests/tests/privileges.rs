//! Least privilege: macdrop runs as an unprivileged user given exactly
//! CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON as file capabilities, fails with
//! a one-line error naming what is missing without them, and once attached
//! keeps only what following new ports needs.

mod common;

use std::path::PathBuf;

use common::SETTLE;
use macdrop_tests::{
    lab::{BRIDGE, BridgeLab, STANDALONE_IFACE, StandaloneLab},
    macdrop::{self, Macdrop, Output},
};

/// The unprivileged user the tests run macdrop as.
const NOBODY: &str = "65534";

/// A copy of the binary with file capabilities `caps` (setcap syntax),
/// removed on drop. The original in target/ keeps none.
struct CapBinary(PathBuf);

impl CapBinary {
    fn new(caps: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "macdrop-caps-{}-{}",
            std::process::id(),
            caps.replace([',', '+', '='], "_")
        ));
        std::fs::copy(macdrop::macdrop_bin(), &path).unwrap();
        // World-executable so the unprivileged user can run it.
        let status = std::process::Command::new("chmod")
            .args(["755", path.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        if !caps.is_empty() {
            let out = std::process::Command::new("setcap")
                .args([caps, path.to_str().unwrap()])
                .output()
                .expect("setcap (libcap2-bin) is installed");
            assert!(
                out.status.success(),
                "setcap: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self(path)
    }
}

impl Drop for CapBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn as_nobody<'a>(bin: &'a CapBinary, args: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec![
        "setpriv",
        "--reuid",
        NOBODY,
        "--regid",
        NOBODY,
        "--clear-groups",
        "--",
        bin.0.to_str().unwrap(),
    ];
    argv.extend_from_slice(args);
    argv
}

/// Capabilities in the effective set of a process, from /proc/PID/status.
fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_SYS_PTRACE: u64 = 1 << 19;
const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_PERFMON: u64 = 1 << 38;
const CAP_BPF: u64 = 1 << 39;

#[test]
fn runs_as_nobody_with_exactly_bpf_net_admin_and_perfmon() {
    let lab = StandaloneLab::new().unwrap();
    let bin = CapBinary::new("cap_bpf,cap_net_admin,cap_perfmon+ep");
    let argv = as_nobody(
        &bin,
        &[
            "watch",
            "--iface",
            STANDALONE_IFACE,
            "--format",
            "json",
            "--duration",
            "1",
        ],
    );
    let out = macdrop::run_command(lab.host(), &argv, SETTLE).unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    let last = macdrop_tests::schema::parse(
        macdrop_tests::schema::Output::Watch,
        out.stdout.lines().last().expect("a report"),
    )
    .unwrap();
    assert_eq!(last["interfaces"][0]["name"], STANDALONE_IFACE);
    assert!(!last["interfaces"][0]["hook"].is_null(), "{last}");
    assert!(
        last["drop_source"].is_string(),
        "CAP_PERFMON is enough for the drop tracepoint: {last}"
    );
}

#[test]
fn without_capabilities_the_error_names_them() {
    let lab = StandaloneLab::new().unwrap();
    for (caps, missing) in [
        ("", &["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"][..]),
        ("cap_bpf,cap_perfmon+ep", &["CAP_NET_ADMIN"][..]),
        ("cap_net_admin,cap_perfmon+ep", &["CAP_BPF"][..]),
        // The verifier refuses the classifier without it.
        ("cap_bpf,cap_net_admin+ep", &["CAP_PERFMON"][..]),
    ] {
        let bin = CapBinary::new(caps);
        let argv = as_nobody(
            &bin,
            &["watch", "--iface", STANDALONE_IFACE, "--duration", "1"],
        );
        let out = macdrop::run_command(lab.host(), &argv, SETTLE).unwrap();
        assert_eq!(out.status.code(), Some(3), "{caps:?}: {}", out.stderr);
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "{caps:?}: {}",
            out.stderr
        );
        for cap in missing {
            assert!(out.stderr.contains(cap), "{caps:?}: {}", out.stderr);
        }
    }
}

/// Started as root, macdrop keeps CAP_BPF, CAP_NET_ADMIN and
/// CAP_SYS_PTRACE once attached (CAP_SYS_ADMIN only to enter other
/// namespaces), and still attaches a port that appears later.
#[test]
fn root_drops_what_it_no_longer_needs_after_attaching() {
    let mut lab = BridgeLab::new(1).unwrap();
    let mut m = Macdrop::spawn_bin(
        &macdrop::macdrop_bin(),
        lab.host(),
        &["--bridge", BRIDGE],
        Output::Json,
    )
    .unwrap();
    m.wait_for(|_| true, SETTLE).unwrap();
    let caps = effective_caps(m.pid());
    assert_eq!(
        caps,
        CAP_BPF | CAP_NET_ADMIN | CAP_SYS_PTRACE,
        "effective capabilities {caps:#x}"
    );
    assert_eq!(caps & (CAP_SYS_ADMIN | CAP_PERFMON), 0);
    let i = lab.add_port(macdrop_tests::netns::TEST_PREFIX).unwrap();
    let name = macdrop_tests::lab::port_name(i);
    m.wait_for_event(|e| e.kind == "attached" && e.interface == name, SETTLE)
        .unwrap();
    m.stop().unwrap();
}
