//! systemd (`deploy/systemd`): `systemd-analyze verify` accepts the unit,
//! `systemd-analyze security` rates it, and macdrop runs in a lab the way
//! the unit runs it: `ExecStart` with `$MACDROP_ARGS` from the environment
//! file, as an unprivileged user with the unit's ambient capabilities and
//! bounding set, no new privileges; scraped with exact counts, stopped with
//! SIGTERM (exit 0), every system call it made allowed by the unit's
//! `SystemCallFilter` and every socket family by `RestrictAddressFamilies`.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    time::Duration,
};

use macdrop_tests::{
    lab::{BRIDGE, BridgeLab},
    macdrop,
};

use crate::{
    INSTALLED_BIN, POD_CAPABILITIES,
    deployed::{Deployed, cap_mask, credentials, send_frames},
    helpers::{TempPath, deploy, read, run, run_ok},
};

/// The unit's settings: key -> values (in order; a key may repeat).
fn unit() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in read(&deploy("systemd/macdrop.service")).lines() {
        let line = line.trim();
        if line.starts_with(['#', ';', '[']) || line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once('=').expect("KEY=VALUE");
        out.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    out
}

fn unit_value(key: &str) -> String {
    unit()
        .get(key)
        .unwrap_or_else(|| panic!("{key}= missing in the unit"))
        .join(" ")
}

/// `MACDROP_ARGS` from the environment file, split like systemd splits an
/// unbraced `$VAR` in ExecStart.
fn env_file_args() -> Vec<String> {
    let env = read(&deploy("systemd/macdrop.env"));
    let value = env
        .lines()
        .find_map(|l| l.trim().strip_prefix("MACDROP_ARGS="))
        .expect("MACDROP_ARGS= in macdrop.env");
    value
        .trim_matches('"')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// ExecStart with `$MACDROP_ARGS` expanded.
fn exec_start() -> Vec<String> {
    unit_value("ExecStart")
        .split_whitespace()
        .flat_map(|w| match w {
            "$MACDROP_ARGS" => env_file_args(),
            w => vec![w.to_owned()],
        })
        .collect()
}

/// `CAP_BPF CAP_NET_ADMIN` -> `+bpf,+net_admin` for setpriv.
fn setpriv_caps(caps: &str) -> String {
    caps.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let u = unit();
    let is = |k: &str, v: &str| {
        assert_eq!(u.get(k).map(|v| v.join(" ")).as_deref(), Some(v), "{k}=");
    };
    is("DynamicUser", "yes");
    is("NoNewPrivileges", "yes");
    is("ProtectSystem", "strict");
    is("ProtectHome", "yes");
    is("PrivateTmp", "yes");
    is("Restart", "on-failure");
    // READY=1 when attached (sd_notify), and no report per interval.
    is("Type", "notify");
    is("NotifyAccess", "main");
    // IP to and from loopback only: the metrics endpoint is local.
    is("IPAddressDeny", "any");
    is("IPAddressAllow", "localhost");
    is("EnvironmentFile", "/etc/macdrop/macdrop.env");
    is("ExecStart", &format!("{INSTALLED_BIN} $MACDROP_ARGS"));
    assert_eq!(
        unit_value("CapabilityBoundingSet"),
        unit_value("AmbientCapabilities")
    );
    let caps: BTreeSet<String> = unit_value("AmbientCapabilities")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_owned())
        .collect();
    assert_eq!(
        caps,
        POD_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    );
    let families = unit_value("RestrictAddressFamilies");
    assert!(
        !families.contains("AF_PACKET"),
        "macdrop opens no packet socket"
    );
    assert!(!families.starts_with('~'), "an allow list");

    // systemd-analyze verify wants the binary where ExecStart says: put the
    // built one there in a private mount namespace, and nowhere else.
    let script = format!(
        "set -e; mount -t tmpfs -o mode=0755 macdrop-bin /usr/local/bin; \
         cp \"$1\" {INSTALLED_BIN}; chmod 0755 {INSTALLED_BIN}; \
         systemd-analyze verify \"$2\"; \
         systemd-analyze security --offline=yes --no-pager \"$2\" | tail -n 1"
    );
    let ran = run(Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(macdrop::macdrop_bin())
        .arg(deploy("systemd/macdrop.service")))
    .unwrap();
    assert!(ran.ok, "{}", ran.both());
    // verify says nothing about a good unit (an unknown key would be a
    // warning on stderr, with exit 0).
    assert!(ran.stderr.trim().is_empty(), "{}", ran.stderr);
    // "→ Overall exposure level for macdrop.service: 2.5 OK 🙂"
    let exposure: f64 = ran
        .stdout
        .split("macdrop.service:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {:?}", ran.stdout));
    assert!(exposure <= 3.0, "exposure {exposure}: {}", ran.stdout);
}

/// `systemd-analyze syscall-filter`'s groups, expanded: the system calls a
/// SystemCallFilter allow list lets through.
fn allowed_syscalls(filter: &str) -> BTreeSet<String> {
    let out = run_ok(Command::new("systemd-analyze").arg("syscall-filter")).unwrap();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in out.lines() {
        if line.starts_with('@') {
            let name = line.split_whitespace().next().unwrap().to_owned();
            groups.insert(name.clone(), Vec::new());
            current = Some(name);
        } else if let Some(g) = &current {
            let item = line.trim();
            if !item.is_empty() && !item.starts_with('#') {
                groups.get_mut(g).unwrap().push(item.to_owned());
            }
        }
    }
    fn expand(name: &str, groups: &BTreeMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
        if name.starts_with('@') {
            for item in groups.get(name).into_iter().flatten() {
                expand(item, groups, out);
            }
        } else {
            out.insert(name.to_owned());
        }
    }
    let mut allowed = BTreeSet::new();
    for item in filter.split_whitespace() {
        assert!(!item.starts_with('~'), "an allow list");
        expand(item, &groups, &mut allowed);
    }
    assert!(allowed.len() > 100, "{allowed:?}");
    allowed
}

/// macdrop as macdrop.service runs it: ExecStart with the environment
/// file's MACDROP_ARGS, as a transient unprivileged user (nobody stands in
/// for DynamicUser) with the unit's ambient capabilities and bounding set
/// and no new privileges; traced, to hold every system call and socket
/// family to the unit's filters.
#[test]
fn runs_as_the_systemd_unit_runs_it() {
    let lab = BridgeLab::new(1).unwrap();
    let exec = exec_start();
    assert_eq!(exec[0], INSTALLED_BIN);
    let metrics = exec
        .windows(2)
        .find(|w| w[0] == "--metrics")
        .map(|w| w[1].clone())
        .expect("MACDROP_ARGS serves metrics");
    let ambient = setpriv_caps(&unit_value("AmbientCapabilities"));
    let bounding = setpriv_caps(&unit_value("CapabilityBoundingSet"));
    assert_eq!(unit_value("DynamicUser"), "yes");
    let trace = TempPath::new("strace");
    let mut argv: Vec<String> = ["strace", "-f", "-qq", "-o"].map(str::to_owned).to_vec();
    argv.push(trace.0.to_string_lossy().into_owned());
    argv.extend(
        [
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps",
            &format!("-all,{ambient}"),
            "--ambient-caps",
            &format!("-all,{ambient}"),
            "--bounding-set",
            &format!("-all,{bounding}"),
        ]
        .map(str::to_owned),
    );
    if unit_value("NoNewPrivileges") == "yes" {
        argv.push("--no-new-privs".to_owned());
    }
    argv.push("--".to_owned());
    argv.extend(exec);

    let mut m = Deployed::start(&lab, &argv).unwrap();
    m.wait_attached().unwrap();
    let (uid, caps) = credentials(m.macdrop_pid().unwrap());
    assert_eq!(uid, 65534, "not root");
    let unit_caps = unit_value("CapabilityBoundingSet");
    let unit_caps: Vec<&str> = unit_caps.split_whitespace().collect();
    assert_eq!(caps & !cap_mask(&unit_caps), 0, "CapEff {caps:#x}");
    send_frames(&lab).unwrap();
    let body = m
        .scrape_until_exact(lab.host(), &metrics, Duration::from_secs(40))
        .unwrap();
    assert!(
        body.contains(&format!("interface=\"{BRIDGE}\"")),
        "br0 watched too"
    );
    // The recording rules read only metrics macdrop exports.
    let rules = read(&deploy("prometheus/macdrop.recording.yml"));
    let names: BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("macdrop_"))
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        assert!(
            body.lines().any(|l| l.starts_with(&format!("{name}{{"))),
            "{name} (recording rules) not in a real scrape"
        );
    }
    let stderr = m.stderr();
    assert_eq!(
        m.terminate().unwrap(),
        Some(0),
        "SIGTERM is a clean stop:\n{stderr}"
    );

    // Every system call macdrop made (after its execve) passes the unit's
    // SystemCallFilter, every socket it opened RestrictAddressFamilies.
    let trace = read(&trace.0);
    let lines: Vec<&str> = trace.lines().collect();
    let exec_at = lines
        .iter()
        .position(|l| l.contains(&format!("execve(\"{INSTALLED_BIN}\"")) && l.ends_with("= 0"))
        .expect("macdrop's execve in the trace");
    let mut syscalls = BTreeSet::new();
    let mut families = BTreeSet::new();
    for line in &lines[exec_at..] {
        let rest = line.split_once(' ').map_or("", |(_, r)| r.trim_start());
        let rest = rest.strip_prefix("<... ").unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() || !rest[name.len()..].starts_with(['(', ' ']) {
            continue;
        }
        // The family from the call's own line (`socket(AF_...`), not from
        // strace's `<... socket resumed>` line of a call another thread
        // interrupted, whose arguments were on its `<unfinished ...>` line.
        if (name == "socket" || name == "socketpair")
            && rest[name.len()..].starts_with('(')
            && let Some(family) = rest[name.len() + 1..].split([',', ')']).next()
        {
            families.insert(family.to_owned());
        }
        syscalls.insert(name);
    }
    assert!(
        syscalls.contains("bpf") && syscalls.contains("setns"),
        "{syscalls:?}"
    );
    let allowed = allowed_syscalls(&unit_value("SystemCallFilter"));
    let refused: Vec<&String> = syscalls.difference(&allowed).collect();
    assert!(refused.is_empty(), "not in SystemCallFilter: {refused:?}");
    let allowed_families = unit_value("RestrictAddressFamilies");
    let allowed_families: BTreeSet<&str> = allowed_families.split_whitespace().collect();
    assert!(families.contains("AF_NETLINK"), "{families:?}");
    for family in &families {
        assert!(
            allowed_families.contains(family.as_str()),
            "socket family {family} not in RestrictAddressFamilies"
        );
    }
}
