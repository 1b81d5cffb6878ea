//! Every veth port is named by what owns its peer's namespace: the process
//! living there when no container engine answers for it.

use std::time::Duration;

use macdrop_tests::{
    lab::{BRIDGE, BridgeLab, port_name},
    macdrop::Macdrop,
    netns::Sleeper,
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
