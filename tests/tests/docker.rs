//! Ports named by the Docker Engine: a daemon of the test's own runs two
//! containers on its bridge; macdrop, pointed at its socket
//! (`MACDROP_DOCKER_HOST`), names both ports by container name and id in
//! JSON and on `macdrop_interface_info`. Then the daemon stops: counting
//! goes on, and the ports fall back to the process view, said once on
//! stderr.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use macdrop_tests::{
    docker::{DOCKER_BRIDGE, DockerLab},
    macdrop::{Macdrop, Output, Report, WorkloadReport, macdrop_bin},
    netns::NetNs,
    skip,
};

const NAMED: Duration = Duration::from_secs(20);
const METRICS: &str = "127.0.0.1:9815";
const LOST: &str = "cannot reach the Docker Engine";

/// The workload of the port whose peer is container `id`, if named.
fn port_of<'a>(report: &'a Report, id: &str) -> Option<(&'a str, &'a WorkloadReport)> {
    report.interfaces.iter().find_map(|i| {
        let w = i.workload.as_ref()?;
        (w.id.as_deref() == Some(id)).then_some((i.name.as_str(), w))
    })
}

/// `GET /metrics` from inside the lab namespace.
fn scrape(ns: &NetNs) -> String {
    let mut stream = ns
        .enter_thread(|| TcpStream::connect(METRICS))
        .unwrap()
        .expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {METRICS}\r\n\r\n").as_bytes())
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn ports_are_named_by_container_and_fall_back_when_the_engine_stops() {
    let mut lab = match DockerLab::start() {
        Ok(lab) => lab,
        Err(e) => {
            skip::record("ports named by the Docker Engine", &format!("{e:#}"));
            return;
        }
    };
    lab.import_busybox().unwrap();
    let (id1, _) = lab.run("web1").unwrap();
    let (id2, pid2) = lab.run("web2").unwrap();
    let socket = lab.socket().display().to_string();
    let mut watch = Macdrop::spawn_with_env(
        &macdrop_bin(),
        lab.host(),
        &["--bridge", DOCKER_BRIDGE, "--metrics", METRICS],
        Output::Json,
        &[("MACDROP_DOCKER_HOST", &socket)],
    )
    .unwrap();

    let report = watch
        .wait_for(
            |r| {
                [&id1, &id2]
                    .iter()
                    .all(|id| port_of(r, id).is_some_and(|(_, w)| w.kind == "docker"))
            },
            NAMED,
        )
        .unwrap();
    let (port1, w1) = port_of(&report, &id1).unwrap();
    let (port2, w2) = port_of(&report, &id2).unwrap();
    assert_eq!(w1.name.as_deref(), Some("web1"), "{w1:?}");
    assert_eq!(w2.name.as_deref(), Some("web2"), "{w2:?}");
    assert_eq!(w2.pid, Some(pid2));
    let (port1, port2) = (port1.to_owned(), port2.to_owned());

    let metrics = scrape(lab.host());
    for (port, name, id) in [(&port1, "web1", &id1), (&port2, "web2", &id2)] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("macdrop_interface_info{")
                    && l.contains(&format!("interface=\"{port}\""))
            })
            .unwrap_or_else(|| panic!("no interface_info for {port} in\n{metrics}"));
        assert!(line.contains("workload_kind=\"docker\""), "{line}");
        assert!(
            line.contains(&format!("workload_name=\"{name}\"")),
            "{line}"
        );
        assert!(line.contains(&format!("workload_id=\"{id}\"")), "{line}");
    }
    // Never on a counter.
    assert!(
        metrics
            .lines()
            .filter(|l| l.starts_with("macdrop_frames_total{"))
            .all(|l| !l.contains("workload")),
        "{metrics}"
    );

    // The Engine goes; its containers stay (--live-restore).
    lab.stop_daemon().unwrap();
    let total = |r: &Report| -> u64 {
        [&port1, &port2]
            .iter()
            .filter_map(|p| r.frames(p))
            .map(|f| f.total)
            .sum()
    };
    let before = watch.latest().map_or(0, total);
    let report = watch
        .wait_for(
            |r| {
                [&id1, &id2]
                    .iter()
                    .all(|id| port_of(r, id).is_some_and(|(_, w)| w.kind == "process"))
            },
            NAMED,
        )
        .unwrap();
    let (_, w2) = port_of(&report, &id2).unwrap();
    assert_eq!(w2.name.as_deref(), Some("sleep"), "{w2:?}");
    assert_eq!(w2.pid, Some(pid2), "{w2:?}");
    // Counting goes on: the containers answer ARP for their addresses.
    let ping = lab
        .host()
        .command(&["ping", "-c", "2", "-W", "1", "-i", "0.2", "198.51.100.2"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{ping:?}");
    watch.wait_for(|r| total(r) > before, NAMED).unwrap();
    let stderr = watch.stderr();
    assert_eq!(
        stderr.matches(LOST).count(),
        1,
        "one line on stderr when the Engine goes:\n{stderr}"
    );
    watch.stop().unwrap();
    drop(lab);
}
