//! Hostile input to a root process: names that carry terminal escapes
//! (interfaces named by anyone with CAP_NET_ADMIN in a namespace, a
//! process that names itself), interface-name arguments the kernel would
//! refuse, `--netns` paths that are no namespace, and a second macdrop in
//! a PID namespace of its own next to a running one. Each with its exit
//! code, and nothing lost: the running macdrop keeps counting.

mod common;

use std::{
    os::unix::ffi::OsStrExt as _,
    process::{Child, Stdio},
    time::Duration,
};

use common::{SETTLE, TempDir, send_foreign};
use macdrop_tests::{
    lab::{BRIDGE, BridgeLab},
    macdrop::{self, Finished, FrameCounts, Macdrop},
    netns::NetNs,
    schema::{self, Output as Schema},
    wait::poll_until,
};

/// Bounds a one-shot run: a wrong `--netns` must fail, not block.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// A bridge whose name sets the colour red and rings the bell.
const HOSTILE_BRIDGE: &str = "b\x1b[31mr\x07";
/// Its port, whose name would set the terminal's title.
const HOSTILE_PORT: &str = "p\x1b]0;x\x07";
/// The port's peer, plainly named.
const PEER: &str = "hpeer";
/// A process name (`/proc/PID/comm`) that would make the text blink.
const HOSTILE_COMM: &str = "h\x1b[5mx\x07";

/// The names as every text output must show them.
const HOSTILE_BRIDGE_SHOWN: &str = r"b\u{1b}[31mr\u{7}";
const HOSTILE_PORT_SHOWN: &str = r"p\u{1b}]0;x\u{7}";
const HOSTILE_COMM_SHOWN: &str = r"h\u{1b}[5mx\u{7}";

/// Text for a failure message, escaped so the test's own output stays sane.
fn escaped(text: &str) -> String {
    ::macdrop::untrusted::escape_controls(text)
}

/// Panics if `text` carries a control character other than a line break.
fn assert_no_raw_controls(what: &str, text: &str) {
    if let Some(c) = text.chars().find(|&c| c != '\n' && c.is_control()) {
        panic!("{what} has a raw {c:?}:\n{}", escaped(text));
    }
}

/// A namespace with `HOSTILE_BRIDGE`, its port `HOSTILE_PORT` and the
/// port's peer `PEER`, all up.
fn hostile_lab() -> NetNs {
    let ns = NetNs::with_prefix("mdt-hostile").unwrap();
    for argv in [
        &[
            "ip",
            "link",
            "add",
            "name",
            HOSTILE_BRIDGE,
            "type",
            "bridge",
        ][..],
        &[
            "ip",
            "link",
            "add",
            "name",
            HOSTILE_PORT,
            "type",
            "veth",
            "peer",
            "name",
            PEER,
        ],
        &["ip", "link", "set", HOSTILE_PORT, "master", HOSTILE_BRIDGE],
        &["ip", "link", "set", HOSTILE_BRIDGE, "up"],
        &["ip", "link", "set", HOSTILE_PORT, "up"],
        &["ip", "link", "set", PEER, "up"],
    ] {
        ns.exec(argv).unwrap();
    }
    ns
}

fn run(ns: &NetNs, args: &[&str]) -> Finished {
    macdrop::run(ns, args, RUN_TIMEOUT).unwrap()
}

/// Exit code, stdout and stderr of a run that must succeed and show both
/// hostile names escaped, never raw.
fn assert_escaped_output(what: &str, out: &Finished) {
    assert_eq!(out.status.code(), Some(0), "{what}: {out:?}");
    assert_no_raw_controls(&format!("{what} stdout"), &out.stdout);
    assert_no_raw_controls(&format!("{what} stderr"), &out.stderr);
    for shown in [HOSTILE_BRIDGE_SHOWN, HOSTILE_PORT_SHOWN] {
        assert!(
            out.stdout.contains(shown),
            "{what} does not show {shown}:\n{}",
            escaped(&out.stdout)
        );
    }
}

#[test]
fn hostile_interface_names_are_escaped_in_every_text_output() {
    let ns = hostile_lab();

    assert_escaped_output("status", &run(&ns, &["status"]));
    let watch = run(
        &ns,
        &[
            "watch",
            "--format",
            "table",
            "--interval",
            "0.2",
            "--duration",
            "1",
        ],
    );
    assert_escaped_output("watch table", &watch);
    // Its stderr names what it watches: escaped too.
    assert!(
        watch.stderr.contains(HOSTILE_PORT_SHOWN),
        "{}",
        escaped(&watch.stderr)
    );
    assert_escaped_output("diagnose", &run(&ns, &["diagnose", "--duration", "1"]));

    // An unknown name lists the candidates on stderr: escaped, exit 3.
    let unknown = run(&ns, &["status", "a\x1b[31mb"]);
    assert_eq!(unknown.status.code(), Some(3), "{unknown:?}");
    assert_no_raw_controls("unknown interface error", &unknown.stderr);
    assert!(
        unknown.stderr.contains(HOSTILE_BRIDGE_SHOWN),
        "{}",
        escaped(&unknown.stderr)
    );

    // JSON keeps the exact names (serde writes the controls as \u escapes).
    for (output, args) in [
        (Schema::Status, &["status", "--format", "json"][..]),
        (
            Schema::Watch,
            &[
                "watch",
                "--format",
                "json",
                "--interval",
                "0.2",
                "--duration",
                "0.5",
            ],
        ),
    ] {
        let out = run(&ns, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert_no_raw_controls("json", &out.stdout);
        let first = schema::parse(output, out.stdout.lines().next().unwrap()).unwrap();
        let names: Vec<&str> = first["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["name"].as_str())
            .collect();
        for name in [HOSTILE_BRIDGE, HOSTILE_PORT] {
            assert!(names.contains(&name), "{args:?}: {names:?}");
        }
    }
}

/// tcpdump started through a symlink named `HOSTILE_COMM`: the kernel
/// names the process after the file it executed, so this is what any
/// process can do to its own name. Killed on drop.
struct RenamedTcpdump {
    child: Child,
    _dir: TempDir,
}

impl Drop for RenamedTcpdump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_promiscuity_holder_named_with_escapes_is_shown_escaped() {
    let ns = hostile_lab();
    let dir = TempDir::new("hostile-comm");
    let link = dir.0.join(HOSTILE_COMM);
    let tcpdump = which("tcpdump");
    std::os::unix::fs::symlink(&tcpdump, &link).unwrap();
    let child = ns
        .command(&[
            link.as_os_str(),
            "-i".as_ref(),
            PEER.as_ref(),
            "-w".as_ref(),
            "/dev/null".as_ref(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let holder = RenamedTcpdump { child, _dir: dir };
    let pid = holder.child.id();
    // The kernel named it after the symlink: the premise of the test.
    let comm = poll_until(
        SETTLE,
        || Ok(std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default()),
        |c| c.starts_with(HOSTILE_COMM.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        comm,
        [HOSTILE_COMM.as_bytes(), b"\n"].concat(),
        "{}",
        escaped(&String::from_utf8_lossy(&comm))
    );

    // Wait until tcpdump holds the peer promiscuous, then read the table.
    let status = poll_until(
        SETTLE,
        || Ok(run(&ns, &["status"])),
        |out| out.stdout.contains(&format!("{PEER}: promiscuity 1")),
    )
    .unwrap();
    assert_no_raw_controls("status stdout", &status.stdout);
    assert!(
        status.stdout.contains(&format!(
            "{PEER}: promiscuity 1: {HOSTILE_COMM_SHOWN} (pid {pid})"
        )),
        "{}",
        escaped(&status.stdout)
    );
    // JSON: exact.
    let json = run(&ns, &["status", "--format", "json", PEER]);
    let report = schema::parse(Schema::Status, &json.stdout).unwrap();
    let holders = report["interfaces"][0]["promisc_holders"].as_str().unwrap();
    assert!(holders.contains(HOSTILE_COMM), "{holders:?}");
    drop(holder);
}

fn which(tool: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} not found in PATH"))
}

#[test]
fn interface_names_the_kernel_refuses_are_usage_errors() {
    let ns = NetNs::with_prefix("mdt-hostile").unwrap();
    // A few of each kind (the rule itself is unit-tested in
    // monitor/src/ifname.rs): empty, a reserved name, each forbidden
    // character, too long, and a control character beside one.
    for bad in [
        "",
        "..",
        "a/b",
        "eth0:1",
        "a\tb",
        "sixteen-bytes-xx",
        "x\x1b:",
    ] {
        for args in [
            &["status", bad][..],
            &["watch", "--bridge", bad],
            &["diagnose", "--iface", bad],
        ] {
            let out = run(&ns, args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
            assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
            assert!(out.stderr.starts_with("macdrop: "), "{}", out.stderr);
            assert_no_raw_controls("usage error", &out.stderr);
        }
    }
}

#[test]
fn a_netns_path_that_is_no_namespace_fails_fast() {
    let ns = NetNs::with_prefix("mdt-hostile").unwrap();
    let dir = TempDir::new("hostile-netns");
    // A FIFO nobody writes to: a plain open would block for ever.
    let fifo = dir.0.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let regular = dir.0.join("regular");
    std::fs::write(&regular, b"not a namespace").unwrap();
    for (path, what) in [
        (fifo.to_str().unwrap(), "is a FIFO"),
        ("/dev/null", "is a device"),
        (regular.to_str().unwrap(), "is a regular file"),
        ("/proc/self/ns/pid", "a namespace of another type"),
    ] {
        for command in ["watch", "diagnose"] {
            let out = run(&ns, &[command, "--netns", path]);
            assert_eq!(
                out.status.code(),
                Some(3),
                "{command} --netns {path}: {out:?}"
            );
            assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
            assert!(
                out.stderr.contains(what) && out.stderr.contains("not a network namespace"),
                "{command} --netns {path}: {}",
                out.stderr
            );
        }
    }
}

/// A second macdrop in a PID namespace of its own (a container without
/// the host's PID namespace), started while a first one watches a bridge:
/// it cannot see the first one's processes, and must not take the first
/// one's hooks for leftovers. The first one keeps all its hooks and keeps
/// counting. (On kernels with TCX the hooks are links, which nobody else
/// can remove; on older ones clsact filters, the case this guards.
/// `tc_attach.rs` checks the clsact path on every kernel.)
#[test]
fn a_macdrop_in_another_pid_namespace_leaves_a_running_one_alone() {
    const WATCHED: [&str; 3] = ["p1", "p2", BRIDGE];
    let lab = BridgeLab::new(2).unwrap();
    let mut first = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let attached = first.settle(
        |r| {
            WATCHED
                .iter()
                .all(|i| r.interface(i).is_some_and(|i| i.hook.is_some()))
        },
        SETTLE,
    );
    let hooks = |r: &macdrop::Report| WATCHED.map(|i| r.interface(i).and_then(|i| i.hook.clone()));
    let before = hooks(&attached);

    send_foreign(&lab, 5).unwrap();
    let foreign = |n: u64| {
        FrameCounts {
            foreign_unicast: n,
            ..FrameCounts::default()
        }
        .with_total()
    };
    let p1 = |r: &macdrop::Report| r.frames("p1");
    first.settle(|r| p1(r) == Some(foreign(5)), SETTLE);

    let second = macdrop::run_in_own_pid_namespace(
        lab.host(),
        &["watch", "--bridge", BRIDGE, "--duration", "0.5"],
        RUN_TIMEOUT,
    )
    .unwrap();
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    assert!(
        !second.stderr.contains("removed leftover"),
        "{}",
        second.stderr
    );

    // Counting goes on, through the same hooks.
    send_foreign(&lab, 5).unwrap();
    let after = first.settle(|r| p1(r) == Some(foreign(10)), SETTLE);
    assert_eq!(p1(&after), Some(foreign(10)), "{after:?}");
    assert_eq!(hooks(&after), before);
    first.stop().unwrap();
}
