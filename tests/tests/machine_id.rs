//! `bridge_mac_from_machine_id` on a bridge the real systemd-networkd
//! created: networkd runs in the lab's namespace with a machine ID of the
//! test's own bind-mounted over /etc/machine-id (a private mount namespace,
//! `unshare -m`), creates br0 from a `.netdev` without `MACAddress=`, and
//! macdrop, given the same machine ID the same way, must name the cause.
//! With this host's own machine ID, or with a MAC the lab pinned, it must
//! stay quiet. (udev's derivation is checked by the unit tests against
//! MACs udev 252 applied: this machine has no udev.)

mod common;

use std::{
    path::Path,
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

/// systemd-networkd in `ns`, seeing `machine_id` and a `.netdev` for br0
/// (in a tmpfs over /run/systemd, so nothing of the host's is touched).
fn start_networkd(ns: &NetNs, machine_id: &Path) -> Killed {
    let script = with_machine_id(
        machine_id,
        &format!(
            "mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/network \
             /run/systemd/netif && chown systemd-network: /run/systemd/netif && printf \
             '[NetDev]\\nName=br0\\nKind=bridge\\n' > /run/systemd/network/br0.netdev && exec \
             {NETWORKD}"
        ),
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

#[test]
fn a_bridge_mac_networkd_derived_from_the_machine_id_is_named() {
    const TEST: &str = "bridge_mac_from_machine_id on a networkd bridge";
    if !Path::new(NETWORKD).exists() {
        macdrop_tests::skip::record(TEST, &format!("no {NETWORKD} (package systemd)"));
        return;
    }
    let dir = TempDir::new("machine-id");
    let machine_id = dir.0.join("machine-id");
    std::fs::write(&machine_id, format!("{MACHINE_ID}\n")).unwrap();
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
    // The real program's MAC, and the recorded one.
    assert_eq!(sysfs(&ns, "br0", "address"), NETWORKD_BR0);
    // A port, whose MAC is not the bridge's.
    ns.exec(&[
        "ip", "link", "add", "p1", "type", "veth", "peer", "name", "p1peer",
    ])
    .unwrap();
    ns.exec(&["ip", "link", "set", "p1", "master", "br0"])
        .unwrap();

    let status = macdrop_json(&ns, Some(&machine_id), "status", Output::Status);
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
            "br0's MAC {NETWORKD_BR0} is the one systemd-networkd derives from this host's \
             machine ID and the name br0: every host cloned with the same /etc/machine-id \
             gives its bridge br0 the same MAC, and their neighbours see it move between \
             hosts (the fleet alert MacdropBridgeMacOnSeveralNodes confirms it across nodes)"
        )
    );
    assert_eq!(
        f["remedy"],
        "give br0 a MAC of its own, unique in the fleet: MACAddress=<MAC> in the [NetDev] \
         section of its .netdev, then recreate br0; on hosts cloned from one image, give each \
         its own machine ID: `rm /etc/machine-id && systemd-machine-id-setup` (and empty \
         /etc/machine-id in the image), then reboot"
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
        &ns,
        Some(&machine_id),
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
    assert_eq!(found[0]["facts"]["mac"], NETWORKD_BR0);
    assert_eq!(found[0]["facts"]["derived_by"], "systemd-networkd");
    assert_eq!(found[0]["facts"]["machine_id_source"], "/etc/machine-id");
    assert_eq!(
        found[0]["evidence"][0],
        format!(
            "br0: MAC {NETWORKD_BR0}, addr_assign_type set (set by userspace), and none of its \
             1 port(s) has it"
        )
    );

    // This host's own machine ID is not the test's: nothing to say.
    let own = macdrop_json(&ns, None, "status", Output::Status);
    assert!(ids(&own).is_empty(), "{own}");
    // A MAC pinned by hand, not derived: nothing to say either.
    ns.exec(&["ip", "link", "set", "br0", "address", "02:00:00:00:0b:01"])
        .unwrap();
    let pinned = macdrop_json(&ns, Some(&machine_id), "status", Output::Status);
    assert!(ids(&pinned).is_empty(), "{pinned}");
}
