//! The CLI and JSON contract: field names and types, timestamps, exit codes
//! and error messages, checked on the raw output rather than through the
//! library's serde types (which would accept a missing `master`, say).

mod common;

use std::time::Duration;

use common::SETTLE;
use macdrop_tests::{
    lab::{BRIDGE, BridgeLab, STANDALONE_IFACE, StandaloneLab},
    macdrop::{self, Finished, Macdrop},
};
use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Bounds a one-shot run: a usage error must not start watching.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

const COUNTERS: [&str; 7] = [
    "total",
    "own",
    "broadcast",
    "multicast",
    "foreign_unicast",
    "host_ip_wrong_mac",
    "runt",
];

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
        for key in COUNTERS {
            count(key);
        }
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

#[test]
fn duration_ends_the_run_with_a_final_report_and_status_0() {
    let lab = StandaloneLab::new().unwrap();
    let Finished {
        status,
        stdout,
        stderr,
    } = macdrop::run(
        lab.host(),
        &[
            "watch",
            "--format",
            "json",
            "--interval",
            "0.2",
            "--duration",
            "1",
            "--iface",
            STANDALONE_IFACE,
        ],
        RUN_TIMEOUT,
    )
    .unwrap();
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(!lines.is_empty(), "no report printed; stderr:\n{stderr}");
    for line in lines {
        let report: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        check_report(&report);
    }
    assert_no_panic(&stderr);
}

#[test]
fn bridge_flag_on_a_port_is_a_usage_error() {
    let lab = BridgeLab::new(1).unwrap();
    let out = run_watch(&lab, &["--bridge", "p1"]);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "want a one-line message, got:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("p1"),
        "message does not name p1: {}",
        out.stderr
    );
    assert_no_panic(&out.stderr);
}

#[test]
fn unknown_interface_is_an_environment_error_naming_it() {
    let lab = BridgeLab::new(1).unwrap();
    let out = run_watch(&lab, &["--iface", "nosuch0"]);
    assert_eq!(out.status.code(), Some(3), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("nosuch0"),
        "message does not name the interface: {}",
        out.stderr
    );
    assert_no_panic(&out.stderr);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let lab = BridgeLab::new(1).unwrap();
    let out = run_watch(&lab, &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", out.stderr);
    assert_no_panic(&out.stderr);
}

/// `macdrop watch ARGS --duration 2` in the lab's host namespace; the
/// duration bounds a wrong implementation that starts watching anyway.
fn run_watch(lab: &BridgeLab, args: &[&str]) -> Finished {
    let mut argv = vec!["watch", "--duration", "2"];
    argv.extend_from_slice(args);
    macdrop::run(lab.host(), &argv, RUN_TIMEOUT).unwrap()
}

fn assert_no_panic(stderr: &str) {
    for marker in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(marker), "{marker:?} in stderr:\n{stderr}");
    }
}
