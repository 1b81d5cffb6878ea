//! Ports named by Podman: a rootful Podman of the test's own runs a
//! container on a bridge network the test made; macdrop, pointed at its
//! service's socket (`MACDROP_PODMAN_HOST`), names the port by container
//! (kind podman, id, name, PID), and a container started during the watch
//! within a second of its port appearing. Then the service stops: the port falls
//! back to the process view (the container id still read from its
//! cgroup), said once on stderr.

use std::time::Duration;

use macdrop_tests::{
    macdrop::{Macdrop, Output, macdrop_bin},
    podman::PodmanLab,
    skip,
};

const NAMED: Duration = Duration::from_secs(20);
const LOST: &str = "cannot reach Podman's service";

#[test]
fn a_port_is_named_by_its_podman_container() {
    let mut lab = match PodmanLab::start() {
        Ok(lab) => lab,
        Err(e) => {
            skip::record("ports named by Podman", &format!("{e:#}"));
            return;
        }
    };
    lab.import_busybox().unwrap();
    let bridge = lab.create_network().unwrap();
    let (id, pid) = lab.run("web1").unwrap();
    let socket = lab.socket().display().to_string();
    let mut watch = Macdrop::spawn_with_env(
        &macdrop_bin(),
        lab.host(),
        &["--bridge", &bridge],
        Output::Json,
        &[("MACDROP_PODMAN_HOST", &socket)],
    )
    .unwrap();

    let report = watch
        .wait_for(
            |r| r.port_of(&id).is_some_and(|(_, w)| w.kind == "podman"),
            NAMED,
        )
        .unwrap();
    let (port, w) = report.port_of(&id).unwrap();
    assert!(port.starts_with("veth"), "{port}");
    assert_eq!(w.name.as_deref(), Some("web1"), "{w:?}");
    assert_eq!(w.pid, Some(pid), "{w:?}");
    assert_eq!((w.namespace.as_deref(), w.pod.as_deref()), (None, None));
    assert_eq!(report.interface(&bridge).unwrap().workload, None);

    // A second container, started during the watch: named within 1 s of
    // its port's first report (Podman's events nudge the resolver).
    let before: Vec<String> = report.interfaces.iter().map(|i| i.name.clone()).collect();
    let (id2, _) = lab.run("web2").unwrap();
    let appeared = watch
        .wait_for(
            |r| r.interfaces.iter().any(|i| !before.contains(&i.name)),
            NAMED,
        )
        .unwrap();
    let named2 = watch
        .wait_for(
            |r| {
                r.port_of(&id2)
                    .is_some_and(|(_, w)| w.kind == "podman" && w.name.as_deref() == Some("web2"))
            },
            NAMED,
        )
        .unwrap();
    let took = named2.since(&appeared);
    assert!(
        took <= Duration::from_secs(1),
        "web2 appeared at {} and was named at {} ({took:?})",
        appeared.ts,
        named2.ts
    );

    // The service goes; the container stays (conmon holds it).
    lab.stop_service();
    let report = watch
        .wait_for(
            |r| r.port_of(&id).is_some_and(|(_, w)| w.kind == "process"),
            NAMED,
        )
        .unwrap();
    let (_, w) = report.port_of(&id).unwrap();
    assert_eq!(w.name.as_deref(), Some("sleep"), "{w:?}");
    assert_eq!(w.pid, Some(pid), "{w:?}");
    let stderr = watch.stderr();
    assert_eq!(
        stderr.matches(LOST).count(),
        1,
        "one line on stderr when the service goes:\n{stderr}"
    );
    watch.stop().unwrap();
    drop(lab);
}
