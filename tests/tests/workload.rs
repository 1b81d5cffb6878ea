//! Every veth port is named by what owns its peer's namespace: the process
//! living there when no container engine answers for it; a tap by the
//! process holding it open.

use std::{fs::File, os::fd::AsRawFd as _, time::Duration};

use macdrop_tests::{
    lab::{BRIDGE, BridgeLab, port_name},
    macdrop::Macdrop,
    netns::{NetNs, Sleeper},
};

/// The workload thread answers within a second of the port appearing;
/// the margin is for a loaded machine.
const NAMED: Duration = Duration::from_secs(15);

#[test]
fn a_port_is_named_by_the_process_in_its_peer_namespace() {
    let lab = BridgeLab::new(2).unwrap();
    let sleeper = Sleeper::start(lab.peer(1)).unwrap();
    let mut watch = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let p1 = port_name(1);
    let report = watch
        .wait_for(
            |r| r.interface(&p1).is_some_and(|i| i.workload.is_some()),
            NAMED,
        )
        .unwrap();
    let w = report.interface(&p1).unwrap().workload.clone().unwrap();
    assert_eq!(w.kind, "process", "{w:?}");
    assert_eq!(w.pid, Some(sleeper.pid()), "{w:?}");
    assert_eq!(w.name.as_deref(), Some("sleep"), "{w:?}");
    assert_eq!(w.id, None, "a sleep outside containers has no container id");
    // Nothing lives in peer 2's namespace, and a bridge has no peer.
    assert_eq!(report.interface(&port_name(2)).unwrap().workload, None);
    assert_eq!(report.interface(BRIDGE).unwrap().workload, None);
    // The raw line carries the object, with every key.
    let raw = watch.latest_json().unwrap().unwrap();
    let raw_p1 = raw["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == p1.as_str())
        .unwrap()
        .clone();
    assert_eq!(raw_p1["workload"]["kind"], "process", "{raw_p1}");
    watch.stop().unwrap();
    drop(sleeper);
}

/// A tap device called `name` in the calling thread's namespace, alive as
/// long as the returned file is open (TUNSETIFF on /dev/net/tun, as qemu
/// does for a VM's NIC).
fn open_tap(name: &str) -> std::io::Result<File> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // struct ifreq: the name, then the flags in the union.
    let mut ifreq = [0u8; 40];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    ifreq[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes the 40-byte ifreq we own.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

#[test]
fn a_tap_is_named_by_the_process_holding_it() {
    const TAP: &str = "vm0";
    let ns = NetNs::with_prefix("macdrop-t-tap").unwrap();
    let tap = ns.enter_thread(|| open_tap(TAP)).unwrap().unwrap();
    ns.exec(&["ip", "link", "set", TAP, "up"]).unwrap();
    let mut watch = Macdrop::spawn(&ns, &["--iface", TAP]).unwrap();
    let report = watch
        .wait_for(
            |r| r.interface(TAP).is_some_and(|i| i.workload.is_some()),
            NAMED,
        )
        .unwrap();
    let w = report.interface(TAP).unwrap().workload.clone().unwrap();
    assert_eq!(w.kind, "process", "{w:?}");
    // This test's own process holds the device.
    assert_eq!(w.pid, Some(std::process::id()), "{w:?}");
    watch.stop().unwrap();
    drop(tap);
}
