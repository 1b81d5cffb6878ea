//! The CLI and JSON contract: field names and types, timestamps, exit codes
//! and error messages, checked on the raw output rather than through the
//! library's serde types (which would accept a missing `master`, say).

mod common;

use std::time::Duration;

use common::{SETTLE, assert_no_panic, check_one_line_error};
use macdrop_tests::{
    lab::{BRIDGE, BridgeLab, PEER_IFACE, STANDALONE_IFACE, StandaloneLab},
    macdrop::{self, Finished, Macdrop},
    sender::RawSender,
};
use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Bounds a one-shot run: a usage error must not start watching.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

const COUNTERS: [&str; 8] = [
    "total",
    "own",
    "broadcast",
    "multicast",
    "foreign_unicast",
    "host_ip_wrong_mac",
    "stale_mac",
    "runt",
];

/// `workload`: null, or an object with exactly these keys (docs/json.md).
fn check_workload(w: &Value) {
    if w.is_null() {
        return;
    }
    let object = w
        .as_object()
        .unwrap_or_else(|| panic!("workload {w} is not an object"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "compose_project",
            "compose_service",
            "id",
            "kind",
            "name",
            "namespace",
            "pid",
            "pod"
        ],
        "workload keys in {w}"
    );
    let kind = object["kind"].as_str().expect("workload.kind is a string");
    assert!(
        ["docker", "podman", "kubernetes", "process"].contains(&kind),
        "workload.kind {kind:?}"
    );
    for key in [
        "id",
        "name",
        "namespace",
        "pod",
        "compose_project",
        "compose_service",
    ] {
        assert!(
            object[key].is_null() || object[key].is_string(),
            "workload.{key} in {w}"
        );
    }
    assert!(
        object["pid"].is_null() || object["pid"].is_u64(),
        "workload.pid in {w}"
    );
}

/// Checks one report line against the contract; panics naming the field.
fn check_report(report: &Value) {
    let object = report.as_object().expect("report is an object");
    let ts = object["ts"].as_str().expect("ts is a string");
    OffsetDateTime::parse(ts, &Rfc3339)
        .unwrap_or_else(|e| panic!("ts {ts:?} is not RFC 3339: {e}"));
    let interfaces = object["interfaces"]
        .as_array()
        .expect("interfaces is an array");
    assert!(!interfaces.is_empty(), "no interfaces in {report}");
    for iface in interfaces {
        let field = |name: &str| {
            iface
                .get(name)
                .unwrap_or_else(|| panic!("field {name} missing in {iface}"))
        };
        let name = field("name").as_str().expect("name is a string");
        field("ifindex")
            .as_u64()
            .expect("ifindex is an unsigned integer");
        let netns = field("netns").as_str().expect("netns is a string");
        assert!(
            !netns.is_empty() && netns.bytes().all(|b| b.is_ascii_digit()),
            "netns {netns:?} is not a decimal inode number"
        );
        let role = field("role").as_str().expect("role is a string");
        assert!(
            ["bridge", "port", "standalone"].contains(&role),
            "role {role:?}"
        );
        let master = field("master");
        match role {
            "port" => assert!(master.is_string(), "port {name} has master {master}"),
            _ => assert!(master.is_null(), "{role} {name} has master {master}"),
        }
        let mac = field("mac").as_str().expect("mac is a string");
        assert!(
            mac.len() == 17
                && mac.split(':').count() == 6
                && mac.split(':').all(|octet| octet.len() == 2
                    && octet
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())),
            "mac {mac:?} is not lower-case aa:bb:cc:dd:ee:ff"
        );
        field("promisc").as_bool().expect("promisc is a bool");
        check_workload(field("workload"));
        let frames = field("frames").as_object().expect("frames is an object");
        let count = |key: &str| {
            frames.get(key).and_then(Value::as_u64).unwrap_or_else(|| {
                panic!("frames.{key} missing or not an unsigned integer in {iface}")
            })
        };
        let classes = ["own", "broadcast", "multicast", "foreign_unicast", "runt"];
        assert_eq!(
            count("total"),
            classes.iter().map(|c| count(c)).sum::<u64>(),
            "total is not the sum of the classes in {iface}"
        );
        assert!(count("host_ip_wrong_mac") <= count("foreign_unicast"));
        assert!(count("stale_mac") <= count("foreign_unicast"));
        for key in COUNTERS {
            count(key);
        }
        // Exactly these: a class added to the output is added to the
        // contract (docs/json.md) and here.
        let mut keys: Vec<&str> = frames.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = COUNTERS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "frames keys in {iface}");
    }
}

#[test]
fn json_reports_have_every_field_with_its_type() {
    let lab = BridgeLab::new(2).unwrap();
    let mut watch = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    watch.wait_for(|_| true, SETTLE).unwrap();
    check_report(&watch.latest_json().unwrap().unwrap());
    watch.stop().unwrap();
}

/// `watch --format json --interval 0.2 --duration 1` on the standalone
/// veth, with `extra` flags first.
fn short_watch(lab: &StandaloneLab, extra: &[&str]) -> Finished {
    let mut args = vec!["watch"];
    args.extend(extra);
    args.extend([
        "--format",
        "json",
        "--interval",
        "0.2",
        "--duration",
        "1",
        "--iface",
        STANDALONE_IFACE,
    ]);
    macdrop::run(lab.host(), &args, RUN_TIMEOUT).unwrap()
}

#[test]
fn duration_ends_the_run_with_a_final_report_and_status_0() {
    let lab = StandaloneLab::new().unwrap();
    let Finished {
        status,
        stdout,
        stderr,
    } = short_watch(&lab, &[]);
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(!lines.is_empty(), "no report printed; stderr:\n{stderr}");
    for line in lines {
        let report = macdrop_tests::schema::parse(macdrop_tests::schema::Output::Watch, line)
            .unwrap_or_else(|e| panic!("{e:#}"));
        check_report(&report);
    }
    assert_no_panic(&stderr);
}

/// The programs load and report at both ends of `--kernel-log`: `off`
/// (records' code removed at load) and `debug` (every record kept); a
/// healthy lab has no rare event to report.
#[test]
fn every_kernel_log_level_loads_and_reports() {
    let lab = StandaloneLab::new().unwrap();
    for level in ["off", "debug"] {
        let Finished {
            status,
            stdout,
            stderr,
        } = short_watch(&lab, &["--kernel-log", level]);
        assert!(status.success(), "{level}: {status}; stderr:\n{stderr}");
        let last = stdout.lines().last().expect("a report");
        check_report(
            &macdrop_tests::schema::parse(macdrop_tests::schema::Output::Watch, last).unwrap(),
        );
        assert!(!stderr.contains("kernel warn"), "{level}: {stderr}");
        assert_no_panic(&stderr);
    }
}

/// One bad input: how to run it, the exit code, words the one-line message
/// must contain.
struct BadInput {
    what: &'static str,
    /// Command run in the lab's host namespace before macdrop.
    prefix: &'static [&'static str],
    args: &'static [&'static str],
    code: i32,
    mentions: &'static [&'static str],
}

/// Every error a user can make gets one line naming the problem and the
/// fix, and its documented exit code (2 usage, 3 environment).
#[test]
fn bad_input_gets_one_line_and_its_exit_code() {
    let cases = [
        BadInput {
            what: "--bridge on a port",
            prefix: &[],
            args: &["--bridge", "p1"],
            code: 2,
            mentions: &["p1", "not a bridge", "--iface p1"],
        },
        BadInput {
            what: "unknown interface",
            prefix: &[],
            args: &["--iface", "nosuch0"],
            code: 3,
            mentions: &["nosuch0", "candidates", "br0"],
        },
        BadInput {
            what: "unknown flag",
            prefix: &[],
            args: &["--no-such-flag"],
            code: 2,
            mentions: &["--no-such-flag"],
        },
        BadInput {
            what: "unknown kernel log level",
            prefix: &[],
            args: &["--kernel-log", "loud"],
            code: 2,
            mentions: &["--kernel-log", "loud"],
        },
        BadInput {
            what: "zero interval",
            prefix: &[],
            args: &["--interval", "0"],
            code: 2,
            mentions: &["--interval", "0.1"],
        },
        BadInput {
            what: "negative interval",
            prefix: &[],
            args: &["--interval=-1"],
            code: 2,
            mentions: &["--interval"],
        },
        BadInput {
            what: "zero duration",
            prefix: &[],
            args: &["--duration", "0"],
            code: 2,
            mentions: &["--duration"],
        },
        BadInput {
            what: "interface name over 15 bytes",
            prefix: &[],
            args: &["--iface", "a-name-of-16-byt"],
            code: 2,
            mentions: &["15"],
        },
        BadInput {
            what: "empty interface name",
            prefix: &[],
            args: &["--bridge", ""],
            code: 2,
            mentions: &["empty"],
        },
        BadInput {
            what: "unknown network namespace",
            prefix: &[],
            args: &["--netns", "nosuch-ns"],
            code: 3,
            mentions: &["nosuch-ns", "ip netns list"],
        },
        BadInput {
            what: "--netns with --all-netns",
            prefix: &[],
            args: &["--netns", "x", "--all-netns"],
            code: 2,
            mentions: &["--all-netns"],
        },
        BadInput {
            what: "unknown attach mode",
            prefix: &[],
            args: &["--attach", "ebpf"],
            code: 2,
            mentions: &["ebpf"],
        },
        BadInput {
            what: "unknown format",
            prefix: &[],
            args: &["--format", "xml"],
            code: 2,
            mentions: &["xml"],
        },
        BadInput {
            what: "--pcap in a missing directory",
            prefix: &[],
            args: &["--pcap", "/nonexistent-macdrop-dir/evidence.pcapng"],
            code: 3,
            mentions: &[
                "/nonexistent-macdrop-dir/evidence.pcapng",
                "no such file or directory",
                "create the directory",
            ],
        },
        BadInput {
            what: "--pcap naming a directory",
            prefix: &[],
            args: &["--pcap", "/tmp"],
            code: 3,
            mentions: &["/tmp", "is a directory", "name a file"],
        },
        BadInput {
            what: "--pcap-count without --pcap",
            prefix: &[],
            args: &["--pcap-count", "5"],
            code: 2,
            mentions: &["--pcap-count", "--pcap FILE"],
        },
        BadInput {
            what: "--pcap-count 0",
            prefix: &[],
            args: &[
                "--pcap",
                "/tmp/macdrop-never-written.pcapng",
                "--pcap-count",
                "0",
            ],
            code: 2,
            mentions: &["--pcap-count"],
        },
        BadInput {
            what: "missing capabilities",
            prefix: &[
                "setpriv",
                "--bounding-set",
                "-bpf,-net_admin,-sys_admin",
                "--",
            ],
            args: &[],
            code: 3,
            mentions: &["CAP_BPF", "CAP_NET_ADMIN", "root"],
        },
    ];
    let lab = BridgeLab::new(1).unwrap();
    lab.host()
        .exec(&["ip", "tuntap", "add", "tun0", "mode", "tun"])
        .unwrap();
    let tun = BadInput {
        what: "interface without an Ethernet header",
        prefix: &[],
        args: &["--iface", "tun0"],
        code: 2,
        mentions: &["tun0", "Ethernet"],
    };
    for case in cases.iter().chain([&tun]) {
        let mut argv: Vec<&str> = case.prefix.to_vec();
        let bin = macdrop::macdrop_bin();
        let bin = bin.to_str().unwrap();
        argv.extend([bin, "watch", "--duration", "2"]);
        argv.extend(case.args);
        let out = macdrop::run_command(lab.host(), &argv, RUN_TIMEOUT).unwrap();
        check_one_line_error(case.what, &out, case.code, case.mentions);
    }
}

/// Without bridges there is nothing to watch by default: say so, exit 3.
#[test]
fn no_bridges_is_an_environment_error() {
    let lab = StandaloneLab::new().unwrap();
    let out = macdrop::run(lab.host(), &["watch", "--duration", "2"], RUN_TIMEOUT).unwrap();
    check_one_line_error("no bridges", &out, 3, &["no bridges", "--iface"]);
}

/// An output that cannot be written (a full disk) is a one-line error
/// with exit code 1, never a panic.
#[test]
fn an_unwritable_output_is_a_one_line_error() {
    let lab = StandaloneLab::new().unwrap();
    let bin = macdrop::macdrop_bin();
    let script = format!("exec {} status > /dev/full", bin.display());
    let out = macdrop::run_command(lab.host(), &["sh", "-c", &script], RUN_TIMEOUT).unwrap();
    check_one_line_error("status > /dev/full", &out, 1, &["cannot write the output"]);
}

/// What a service manager sees (docs/deploy.md, systemd): `--format none`
/// prints no report, READY=1 reaches NOTIFY_SOCKET once macdrop is
/// attached, and with stderr on the journal stream (`JOURNAL_STREAM`
/// names its device and inode) every line carries its priority: `<3>` for
/// the error that ends a command, `<6>` for notes. `--format none` is for
/// watch only.
#[test]
fn under_systemd_it_notifies_and_logs_with_priorities() {
    use std::os::unix::{fs::MetadataExt as _, net::UnixDatagram};

    let lab = StandaloneLab::new().unwrap();
    let dir = std::env::temp_dir().join(format!("macdrop-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("notify");
    let listener = UnixDatagram::bind(&socket).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let stderr_path = dir.join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let journal = format!("{}:{}", meta.dev(), meta.ino());

    let bin = macdrop::macdrop_bin();
    let mut child = lab
        .host()
        .command(&[
            bin.to_str().unwrap(),
            "watch",
            "--format",
            "none",
            "--interval",
            "0.2",
            "--duration",
            "1",
            "--iface",
            STANDALONE_IFACE,
        ])
        .env("NOTIFY_SOCKET", &socket)
        .env("JOURNAL_STREAM", &journal)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).expect("READY=1 within 30 s");
    // sd_notify(3): newline-separated assignments.
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]).trim_end(),
        "READY=1",
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let status = macdrop::wait_child(&mut child, RUN_TIMEOUT).unwrap();
    assert!(status.success(), "{status}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(stdout, "", "--format none prints no report");
    let logged = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!logged.is_empty());
    for line in logged.lines() {
        assert!(line.starts_with("<6>macdrop: "), "{line:?} in\n{logged}");
    }

    // The error that ends a command is an error in the journal, and not
    // marked when stderr is not the journal's stream.
    let run_with_journal = |journal: Option<&str>| {
        let path = dir.join("stderr-error");
        let file = std::fs::File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let stream = format!("{}:{}", meta.dev(), meta.ino());
        let status = lab
            .host()
            .command(&[bin.to_str().unwrap(), "status", "nosuch0"])
            .env("JOURNAL_STREAM", journal.unwrap_or(&stream))
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        std::fs::read_to_string(&path).unwrap()
    };
    let on_journal = run_with_journal(None);
    assert!(
        on_journal.starts_with("<3>macdrop: no interface named nosuch0"),
        "{on_journal}"
    );
    let elsewhere = run_with_journal(Some("1:1"));
    assert!(
        elsewhere.starts_with("macdrop: no interface named nosuch0"),
        "{elsewhere}"
    );

    for command in ["status", "diagnose"] {
        let out = macdrop::run(lab.host(), &[command, "--format", "none"], RUN_TIMEOUT).unwrap();
        check_one_line_error(command, &out, 2, &["--format none prints nothing"]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--human` (like `ip -h`) on a real count: 1234 frames the kernel threw
/// away as not for this host (`rx_otherhost_dropped`), shown by `status`
/// as 1234 by default and as 1.2K with `--human`; its JSON stays exact.
#[test]
fn human_shows_a_real_count_readably_and_exact_by_default() {
    const SENT: u64 = 1234;
    if !macdrop_tests::kernel::has_otherhost_counter().unwrap() {
        macdrop_tests::skip::record(
            "status --human on rx_otherhost_dropped",
            "this kernel has no rx_otherhost_dropped in its IFLA_STATS64",
        );
        return;
    }
    let lab = StandaloneLab::new().unwrap();
    let tx = RawSender::new(lab.peer(), PEER_IFACE).unwrap();
    let foreign = common::standalone_foreign();
    let counted = || {
        macdrop_tests::kernel::link_stats(lab.host(), STANDALONE_IFACE)
            .map(|s| s.rx_otherhost_dropped)
    };
    // In bursts the receiving backlog holds (it drops beyond 1000 queued
    // frames), each counted before the next.
    let mut sent = 0;
    while sent < SENT {
        let burst = (SENT - sent).min(200);
        tx.send(&foreign, burst as usize).unwrap();
        sent += burst;
        let now = macdrop_tests::wait::poll_until(SETTLE, counted, |n| *n == sent).unwrap();
        assert_eq!(now, sent, "rx_otherhost_dropped after {sent} frames");
    }

    let row = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["status", STANDALONE_IFACE];
        args.extend(extra);
        let out = macdrop::run(lab.host(), &args, RUN_TIMEOUT).unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", out.stderr);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert!(lines[0].ends_with("RX_OTHERHOST_DROPPED"), "{}", out.stdout);
        lines[1].split_whitespace().map(str::to_owned).collect()
    };
    let exact = row(&[]);
    let human = row(&["--human"]);
    assert_eq!(exact[0], STANDALONE_IFACE);
    assert_eq!(exact.last().map(String::as_str), Some("1234"), "{exact:?}");
    assert_eq!(human.last().map(String::as_str), Some("1.2K"), "{human:?}");
    // Nothing else in the row changes.
    assert_eq!(exact[..exact.len() - 1], human[..human.len() - 1]);

    let json = macdrop::run(
        lab.host(),
        &["status", STANDALONE_IFACE, "--human", "--format", "json"],
        RUN_TIMEOUT,
    )
    .unwrap();
    let doc = macdrop_tests::schema::parse(macdrop_tests::schema::Output::Status, &json.stdout)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(doc["interfaces"][0]["rx_otherhost_dropped"], SENT);
}
