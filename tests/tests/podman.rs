//! Ports named by Podman: a rootful Podman of the test's own runs a
//! container on a bridge network the test made; macdrop, pointed at its
//! service's socket (`MACDROP_PODMAN_HOST`), names the port by container
//! (kind podman, id, name, PID). Then the service stops: the port falls
//! back to the process view (the container id still read from its
//! cgroup), said once on stderr.

use std::time::Duration;

use macdrop_tests::{
    macdrop::{Macdrop, Output, Report, WorkloadReport, macdrop_bin},
    podman::PodmanLab,
    skip,
};

const NAMED: Duration = Duration::from_secs(20);
const LOST: &str = "cannot reach Podman's service";

/// The workload of the port whose peer is container `id`, if named.
fn port_of<'a>(report: &'a Report, id: &str) -> Option<(&'a str, &'a WorkloadReport)> {
    report.interfaces.iter().find_map(|i| {
        let w = i.workload.as_ref()?;
        (w.id.as_deref() == Some(id)).then_some((i.name.as_str(), w))
    })
}

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
            |r| port_of(r, &id).is_some_and(|(_, w)| w.kind == "podman"),
            NAMED,
        )
        .unwrap();
    let (port, w) = port_of(&report, &id).unwrap();
    assert!(port.starts_with("veth"), "{port}");
    assert_eq!(w.name.as_deref(), Some("web1"), "{w:?}");
    assert_eq!(w.pid, Some(pid), "{w:?}");
    assert_eq!((w.namespace.as_deref(), w.pod.as_deref()), (None, None));
    assert_eq!(report.interface(&bridge).unwrap().workload, None);

    // The service goes; the container stays (conmon holds it).
    lab.stop_service();
    let report = watch
        .wait_for(
            |r| port_of(r, &id).is_some_and(|(_, w)| w.kind == "process"),
            NAMED,
        )
        .unwrap();
    let (_, w) = port_of(&report, &id).unwrap();
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
