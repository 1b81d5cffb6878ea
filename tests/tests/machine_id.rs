//! `bridge_mac_from_machine_id` on a bridge whose MAC the real systemd
//! programs set: systemd-networkd creating br0 from a `.netdev` without
//! `MACAddress=`, and udev's `net_setup_link` builtin (what udevd runs on a
//! new device) with `MACAddressPolicy=persistent`, each in the lab's
//! namespace with a machine ID of the test's own bind-mounted over
//! /etc/machine-id (a private mount namespace, `unshare -m`). macdrop,
//! given the same machine ID the same way, must name the cause; with this
//! host's own machine ID, or with a MAC pinned by hand, it must stay quiet.
//! udevadm is there only where the package udev is (not on CI's machine:
//! then the test is recorded as skipped, and the unit tests hold MACs udev
//! 252 applied).

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use common::{SETTLE, TempDir, diagnosis::status_ids as ids};
use macdrop_tests::{
    macdrop::{self, macdrop_bin},
    netns::NetNs,
    schema::{self, Output},
    wait::poll_until,
};
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// A machine ID of the test's own, never this host's.
const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";
/// What systemd-networkd 252 gives br0 on a host with `MACHINE_ID`
/// (recorded from a run of it, as in monitor/src/machine_id.rs).
const NETWORKD_BR0: &str = "52:9c:2f:97:80:e3";
/// What udev 252's `net_setup_link` gives br0 there (recorded the same way).
const UDEVD_BR0: &str = "2e:51:d4:17:b5:1e";
const NETWORKD: &str = "/lib/systemd/systemd-networkd";

/// A child process killed and reaped on drop, also when the test fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shell line that bind-mounts `machine_id` over /etc/machine-id in a
/// private mount namespace, then runs the rest.
fn with_machine_id(machine_id: &Path, then: &str) -> String {
    format!(
        "mount --bind '{}' /etc/machine-id && {then}",
        machine_id.display()
    )
}

/// The shell line that runs `exec` (a systemd program) seeing
/// `machine_id` and, of network configuration, only the files `config`
/// (name, contents): in a private mount namespace, a tmpfs over each
/// directory systemd reads `.link`, `.netdev` and `.network` files from and
/// over /run/systemd, so neither the host's configuration reaches the lab
/// nor anything of the lab the host.
fn systemd_script(machine_id: &Path, config: &[(&str, &str)], exec: &str) -> String {
    let mut script = String::from(
        "for d in /etc/systemd/network /usr/local/lib/systemd/network /usr/lib/systemd/network \
         /lib/systemd/network; do if [ -d \"$d\" ]; then mount -t tmpfs tmpfs \"$d\" || exit \
         1; fi; done && mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/network \
         /run/systemd/netif && chown systemd-network: /run/systemd/netif",
    );
    for (name, contents) in config {
        script.push_str(&format!(
            " && printf '{contents}' > /run/systemd/network/{name}"
        ));
    }
    script.push_str(&format!(" && exec {exec}"));
    with_machine_id(machine_id, &script)
}

/// systemd-networkd in `ns`, seeing `machine_id` and a `.netdev` for br0
/// without `MACAddress=`.
fn start_networkd(ns: &NetNs, machine_id: &Path) -> Killed {
    let script = systemd_script(
        machine_id,
        &[("br0.netdev", "[NetDev]\\nName=br0\\nKind=bridge\\n")],
        NETWORKD,
    );
    let child = ns
        .command(&["unshare", "-m", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start systemd-networkd");
    Killed(child)
}

/// udev's `net_setup_link` builtin, as udevd runs it when a device is
/// added, on br0 in `ns`, seeing `machine_id` and only a `.link` file with
/// the policy of Debian's 99-default.link.
fn run_udev_net_setup_link(ns: &NetNs, machine_id: &Path, udevadm: &Path) {
    let script = systemd_script(
        machine_id,
        &[(
            "99-default.link",
            "[Match]\\nOriginalName=*\\n[Link]\\nMACAddressPolicy=persistent\\n",
        )],
        &format!(
            "'{}' test-builtin --action=add net_setup_link /sys/class/net/br0",
            udevadm.display()
        ),
    );
    let out =
        macdrop::run_command(ns, &["unshare", "-m", "sh", "-c", &script], RUN_TIMEOUT).unwrap();
    assert!(out.status.success(), "udevadm: {}", out.stderr);
}

/// `macdrop ARGS`, seeing `machine_id` as /etc/machine-id when given.
fn macdrop_json(ns: &NetNs, machine_id: Option<&Path>, args: &str, output: Output) -> Value {
    let bin = macdrop_bin();
    let run = format!("exec '{}' {args} --format json", bin.display());
    let out = match machine_id {
        Some(id) => macdrop::run_command(
            ns,
            &["unshare", "-m", "sh", "-c", &with_machine_id(id, &run)],
            RUN_TIMEOUT,
        ),
        None => macdrop::run_command(ns, &["sh", "-c", &run], RUN_TIMEOUT),
    }
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{args}: {}", out.stderr);
    schema::parse(output, &out.stdout).unwrap_or_else(|e| panic!("{args}: {e:#}"))
}

fn sysfs(ns: &NetNs, iface: &str, file: &str) -> String {
    let out = ns
        .exec(&["cat", &format!("/sys/class/net/{iface}/{file}")])
        .unwrap();
    String::from_utf8_lossy(&out).trim().to_owned()
}

/// A machine-ID file of the test's own, in `dir`.
fn test_machine_id(dir: &TempDir) -> PathBuf {
    let path = dir.0.join("machine-id");
    std::fs::write(&path, format!("{MACHINE_ID}\n")).unwrap();
    path
}

/// br0 in `ns` has the MAC `program` set (`mac`, recorded from the real
/// program before): with a port added, `status` and `diagnose`, seeing the
/// test's machine ID, name exactly `bridge_mac_from_machine_id` with
/// `remedy` first; with this host's own machine ID, or once br0's MAC is
/// pinned by hand to another, nothing.
fn check_named(ns: &NetNs, machine_id: &Path, program: &str, mac: &str, remedy: &str) {
    assert_eq!(
        sysfs(ns, "br0", "addr_assign_type"),
        "3",
        "{program} set it"
    );
    assert_eq!(sysfs(ns, "br0", "address"), mac, "{program}'s MAC");
    // A port, whose MAC is not the bridge's.
    ns.exec(&[
        "ip", "link", "add", "p1", "type", "veth", "peer", "name", "p1peer",
    ])
    .unwrap();
    ns.exec(&["ip", "link", "set", "p1", "master", "br0"])
        .unwrap();

    let status = macdrop_json(ns, Some(machine_id), "status", Output::Status);
    assert_eq!(
        ids(&status),
        [("bridge_mac_from_machine_id".to_owned(), "br0".to_owned())],
        "{status}"
    );
    let f = &status["findings"][0];
    assert_eq!(f["severity"], "warning");
    assert_eq!(
        f["message"],
        format!(
            "br0's MAC {mac} is the one {program} derives from this host's machine ID and the \
             name br0: every host cloned with the same /etc/machine-id gives its bridge br0 the \
             same MAC, and their neighbours see it move between hosts (the fleet alert \
             MacdropBridgeMacOnSeveralNodes confirms it across nodes)"
        )
    );
    assert_eq!(
        f["remedy"],
        format!(
            "{remedy}; on hosts cloned from one image, give each its own machine ID: `rm \
             /etc/machine-id && systemd-machine-id-setup` (and empty /etc/machine-id in the \
             image), then reboot"
        )
    );
    let br0 = status["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "br0")
        .unwrap();
    assert_eq!(br0["addr_assign_type"], "set");
    assert_eq!(br0["bridge"]["mac_pinned"], true);

    // diagnose names it with its evidence and facts.
    let diagnosis = macdrop_json(
        ns,
        Some(machine_id),
        "diagnose --bridge br0 --duration 1",
        Output::Diagnose,
    );
    let found: Vec<&Value> = diagnosis["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "bridge_mac_from_machine_id")
        .collect();
    assert_eq!(found.len(), 1, "{diagnosis}");
    assert_eq!(found[0]["facts"]["mac"], mac);
    assert_eq!(found[0]["facts"]["derived_by"], program);
    assert_eq!(found[0]["facts"]["machine_id_source"], "/etc/machine-id");
    assert_eq!(
        found[0]["evidence"][0],
        format!(
            "br0: MAC {mac}, addr_assign_type set (set by userspace), and none of its 1 port(s) \
             has it"
        )
    );

    // This host's own machine ID is not the test's: nothing to say.
    let own = macdrop_json(ns, None, "status", Output::Status);
    assert!(ids(&own).is_empty(), "{own}");
    // A MAC pinned by hand, not derived: nothing to say either.
    ns.exec(&["ip", "link", "set", "br0", "address", "02:00:00:00:0b:01"])
        .unwrap();
    let pinned = macdrop_json(ns, Some(machine_id), "status", Output::Status);
    assert!(ids(&pinned).is_empty(), "{pinned}");
}

#[test]
fn a_bridge_mac_networkd_derived_from_the_machine_id_is_named() {
    const TEST: &str = "bridge_mac_from_machine_id on a networkd bridge";
    if !Path::new(NETWORKD).exists() {
        macdrop_tests::skip::record(TEST, &format!("no {NETWORKD} (package systemd)"));
        return;
    }
    let dir = TempDir::new("machine-id-networkd");
    let machine_id = test_machine_id(&dir);
    let ns = NetNs::new().unwrap();
    let networkd = start_networkd(&ns, &machine_id);
    let made = poll_until(
        SETTLE,
        || {
            Ok::<_, anyhow::Error>(
                ns.exec(&["cat", "/sys/class/net/br0/addr_assign_type"])
                    .map(|o| String::from_utf8_lossy(&o).trim().to_owned())
                    .unwrap_or_default(),
            )
        },
        |t| t == "3",
    )
    .unwrap();
    assert_eq!(made, "3", "networkd created br0 with the MAC it chose");
    drop(networkd);
    check_named(
        &ns,
        &machine_id,
        "systemd-networkd",
        NETWORKD_BR0,
        "give br0 a MAC of its own, unique in the fleet: MACAddress=<MAC> in the [NetDev] \
         section of its .netdev, then recreate br0",
    );
}

/// udevadm on PATH or in the usual directories (package udev).
fn find_udevadm() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("udevadm"))
        .find(|p| p.is_file())
}

#[test]
fn a_bridge_mac_udev_derived_from_the_machine_id_is_named() {
    const TEST: &str = "bridge_mac_from_machine_id on a udev bridge";
    let Some(udevadm) = find_udevadm() else {
        macdrop_tests::skip::record(
            TEST,
            "no udevadm (package udev, which setup does not install: its udevd would \
             configure every device of the host); the unit tests hold MACs udev 252 applied",
        );
        return;
    };
    let dir = TempDir::new("machine-id-udev");
    let machine_id = test_machine_id(&dir);
    let ns = NetNs::new().unwrap();
    ns.exec(&["ip", "link", "add", "br0", "type", "bridge"])
        .unwrap();
    assert_eq!(
        sysfs(&ns, "br0", "addr_assign_type"),
        "1",
        "the kernel's random MAC"
    );
    run_udev_net_setup_link(&ns, &machine_id, &udevadm);
    check_named(
        &ns,
        &machine_id,
        "systemd-udevd",
        UDEVD_BR0,
        "give br0 a MAC of its own, unique in the fleet: a .link file that sorts before \
         99-default.link, e.g. /etc/systemd/network/10-br0.link with [Match] OriginalName=br0 \
         and [Link] MACAddress=<MAC> (or MACAddressPolicy=none to keep the kernel's random \
         one), then recreate br0",
    );
}
