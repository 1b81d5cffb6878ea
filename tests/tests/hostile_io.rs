//! Hostile files and outputs (issue 15): a `--pcap` path someone prepared
//! (a symbolic link to a victim, an existing file), runs that fail
//! validation, stdout as the capture, and outputs that go away (a reader
//! that closes, a full disk, a closed stderr). Each with its exit code and
//! one line, nothing written where it must not be, nothing left attached.

mod common;

use std::{
    ffi::OsStr,
    io::{BufRead as _, BufReader, Read as _},
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::fs::{PermissionsExt as _, symlink},
    },
    path::Path,
    process::{Child, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{SETTLE, TempPcap, assert_no_panic, check_one_line_error};
use macdrop_tests::{
    bpf,
    frames::ipv4_udp,
    lab::{
        FOREIGN_MAC, PEER_IFACE, STANDALONE_IFACE, STANDALONE_IPV4, STANDALONE_PEER_IPV4,
        STANDALONE_PEER_MAC, StandaloneLab,
    },
    macdrop::{self, EXIT_TIMEOUT, Finished, READY_PREFIX, READY_TIMEOUT, Report},
    pcap::{parse_raw, read_raw},
    sender::RawSender,
    wait::poll_until,
};

/// Bounds a run expected to end on its own.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// How soon a closed reader must end `watch`: a few report intervals.
const CLOSED_READER_EXIT: Duration = Duration::from_secs(5);

const VICTIM: &[u8] = b"precious, mode 0600\n";

/// `macdrop watch --iface v0 --duration 1 ARGS` in the lab, to its end.
fn watch(lab: &StandaloneLab, args: &[&str]) -> Finished {
    let mut argv = vec!["watch", "--iface", STANDALONE_IFACE, "--duration", "1"];
    argv.extend(args);
    macdrop::run(lab.host(), &argv, RUN_TIMEOUT).unwrap()
}

/// A 0600 file holding [`VICTIM`] next to the capture path.
fn victim(pcap: &TempPcap) -> std::path::PathBuf {
    let victim = pcap.path().with_file_name("victim");
    std::fs::write(&victim, VICTIM).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    victim
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `--pcap LINK` where LINK points at a root-only file: never truncated
/// nor written, with or without `--pcap-overwrite`, also by a run that
/// fails afterwards (a namespace that does not exist).
#[test]
fn a_symlink_to_a_victim_is_never_written_even_by_a_failing_run() {
    let lab = StandaloneLab::new().unwrap();
    let pcap = TempPcap::new("symlink");
    let victim = victim(&pcap);
    symlink(&victim, pcap.path()).unwrap();
    let link = pcap.arg();
    let cases: [(&str, Vec<&str>); 3] = [
        ("a symlink", vec!["--pcap", &link]),
        (
            "a symlink with --pcap-overwrite",
            vec!["--pcap", &link, "--pcap-overwrite"],
        ),
        (
            "a symlink and a namespace that does not exist",
            vec!["--pcap", &link, "--netns", "macdrop-t-no-such-ns"],
        ),
    ];
    for (what, args) in cases {
        let out = watch(&lab, &args);
        check_one_line_error(what, &out, 3, &[&link, "symbolic link"]);
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            VICTIM,
            "{what}: victim written"
        );
        assert_eq!(mode(&victim), 0o600, "{what}");
    }
}

/// A run that fails validation creates no file (and so truncates none).
#[test]
fn a_run_that_fails_validation_leaves_no_file() {
    let lab = StandaloneLab::new().unwrap();
    let pcap = TempPcap::new("invalid");
    let file = pcap.arg();
    let cases: [(&str, Vec<&str>, i32); 3] = [
        (
            "a namespace that does not exist",
            vec!["--netns", "macdrop-t-no-such-ns"],
            3,
        ),
        ("an unknown interface", vec!["--iface", "nope0"], 3),
        (
            "--bridge on a non-bridge",
            vec!["--bridge", STANDALONE_IFACE],
            2,
        ),
    ];
    for (what, args, code) in cases {
        let mut argv = args.clone();
        argv.extend(["--pcap", &file]);
        let out = watch(&lab, &argv);
        assert_eq!(out.status.code(), Some(code), "{what}: {}", out.stderr);
        assert_no_panic(&out.stderr);
        assert!(!pcap.path().exists(), "{what}: the run left {file} behind");
    }
}

/// A new capture file is readable by its owner only; an existing file is
/// kept unless `--pcap-overwrite`, which replaces it (0600 again).
#[test]
fn a_capture_file_is_new_and_0600_and_replaced_only_when_asked() {
    let lab = StandaloneLab::new().unwrap();
    let pcap = TempPcap::new("mode");
    let file = pcap.arg();
    let out = watch(&lab, &["--pcap", &file]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(mode(&pcap.path()), 0o600, "a new capture file");
    assert_eq!(read_raw(&pcap.path()).unwrap(), [], "valid and empty");

    let older = b"an older capture".as_slice();
    std::fs::write(pcap.path(), older).unwrap();
    std::fs::set_permissions(pcap.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = watch(&lab, &["--pcap", &file]);
    check_one_line_error(
        "an existing file",
        &out,
        3,
        &[&file, "already exists", "--pcap-overwrite"],
    );
    assert_eq!(std::fs::read(pcap.path()).unwrap(), older, "kept");

    let out = watch(&lab, &["--pcap", &file, "--pcap-overwrite"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(mode(&pcap.path()), 0o600, "a replaced capture file");
    assert_eq!(read_raw(&pcap.path()).unwrap(), [], "replaced, valid");
}

/// `macdrop ARGS` in the lab, stdin from /dev/null.
fn command(lab: &StandaloneLab, args: &[&str]) -> std::process::Command {
    let bin = macdrop::macdrop_bin();
    let mut argv: Vec<&OsStr> = vec![bin.as_os_str()];
    argv.extend(args.iter().map(OsStr::new));
    let mut cmd = lab.host().command(&argv);
    cmd.stdin(Stdio::null());
    cmd
}

/// A running macdrop with piped stdout and stderr, killed on drop.
struct Piped {
    child: Child,
    /// stderr, line by line.
    stderr: Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Piped {
    /// `macdrop watch --format json --interval 0.2 --iface v0 ARGS` in the
    /// lab, once it printed that it is watching.
    fn watch(lab: &StandaloneLab, args: &[&str]) -> Self {
        let mut argv = vec![
            "watch",
            "--format",
            "json",
            "--interval",
            "0.2",
            "--iface",
            STANDALONE_IFACE,
        ];
        argv.extend(args);
        let mut child = command(lab, &argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut piped = Self {
            child,
            stderr,
            reader: Some(reader),
        };
        piped.wait_line(READY_TIMEOUT, |l| l.starts_with(READY_PREFIX));
        piped
    }

    /// The first stderr line that `want` accepts; panics with what came
    /// before after `timeout`.
    fn wait_line(&mut self, timeout: Duration, mut want: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen += &format!("{line}\n"),
                Err(e) => panic!("no such line on stderr ({e}); got:\n{seen}"),
            }
        }
    }

    /// Waits at most `timeout` for the exit.
    fn exit_within(&mut self, timeout: Duration) -> ExitStatus {
        macdrop::wait_child(&mut self.child, timeout).unwrap()
    }

    /// The rest of stderr, once the process ended.
    fn rest_of_stderr(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `watch --format json | head -1`: once the reader closes the pipe,
/// macdrop detaches and exits 0 within a few intervals, like `ip` and
/// `bpftool`, instead of running on with its programs attached.
#[test]
fn watch_into_a_reader_that_closes_exits_0_and_detaches() {
    let lab = StandaloneLab::new().unwrap();
    let mut watch = Piped::watch(&lab, &[]);
    let held = bpf::held_by(watch.child.id()).unwrap();
    assert!(!held.programs.is_empty(), "nothing attached: {held:?}");
    // What `head -1` does: read one line, close the pipe.
    let mut stdout = BufReader::new(watch.child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    macdrop_tests::schema::parse(macdrop_tests::schema::Output::Watch, &line)
        .unwrap_or_else(|e| panic!("{e:#}"));
    drop(stdout);
    let status = watch.exit_within(CLOSED_READER_EXIT);
    let stderr = watch.rest_of_stderr();
    assert_eq!(status.code(), Some(0), "{status}; stderr:\n{stderr}");
    assert_no_panic(&stderr);
    let left = poll_until(
        SETTLE,
        || bpf::still_existing(&held),
        |left| left.programs.is_empty() && left.links.is_empty(),
    )
    .unwrap();
    assert_eq!(left, bpf::Held::default(), "left attached after exit");
}

/// `--pcap -`: the capture is a valid pcapng on stdout (what `tcpdump -w
/// -` does) and the reports go to stderr.
#[test]
fn pcap_dash_writes_the_capture_to_stdout_and_the_reports_to_stderr() {
    const N: u64 = 3;
    let lab = StandaloneLab::new().unwrap();
    let mut watch = Piped::watch(&lab, &["--pcap", "-", "--pcap-count", &N.to_string()]);
    let mut stdout = watch.child.stdout.take().unwrap();
    let capture = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    });
    let frame = ipv4_udp(
        FOREIGN_MAC,
        STANDALONE_PEER_MAC,
        STANDALONE_PEER_IPV4,
        STANDALONE_IPV4,
    );
    RawSender::new(lab.peer(), PEER_IFACE)
        .unwrap()
        .send(&frame, N as usize + 2)
        .unwrap();
    let report = watch.wait_line(SETTLE, |l| {
        serde_json::from_str::<Report>(l)
            .is_ok_and(|r| r.pcap.is_some_and(|p| p.frames_written == N))
    });
    let report: Report = serde_json::from_str(&report).unwrap();
    assert_eq!(report.pcap.unwrap().file, "-");
    // SAFETY: a signal to our own child, not yet reaped.
    let sent = unsafe { libc::kill(watch.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill(macdrop)");
    let status = watch.exit_within(EXIT_TIMEOUT);
    assert!(status.success(), "{status}: {}", watch.rest_of_stderr());
    let bytes = capture.join().unwrap().unwrap();
    // The section header block's type, then only blocks: no report text.
    assert_eq!(bytes.get(..4), Some(&[0x0a, 0x0d, 0x0d, 0x0a][..]));
    let frames = parse_raw(&bytes).unwrap();
    assert_eq!(frames.len() as u64, N, "{frames:#?}");
    for f in &frames {
        assert_eq!(f.interface, STANDALONE_IFACE);
        assert_eq!(
            f.comment,
            format!("host_ip_wrong_mac + foreign_unicast on {STANDALONE_IFACE} (standalone)")
        );
        assert_eq!(f.data, frame);
    }
}

/// A pipe whose reading end is already closed.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds from pipe2, each owned once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

fn dev_full() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

/// `macdrop ARGS` in the lab with the given stdout and stderr; its exit.
fn run_into(lab: &StandaloneLab, args: &[&str], stdout: Stdio, stderr: Stdio) -> ExitStatus {
    let mut child = command(lab, args)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    macdrop::wait_child(&mut child, RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("macdrop {args:?}: {e:#}"))
}

/// Outputs that cannot be written end with the documented code, never a
/// panic (101) or an abort (a panic while printing the panic): a full
/// disk is exit 1, a closed reader exit 0, an error whose line cannot be
/// printed still has its own code.
#[test]
fn unwritable_outputs_end_with_their_exit_code() {
    let lab = StandaloneLab::new().unwrap();
    for case in [
        Unwritable {
            what: "status > /dev/full 2> /dev/full",
            args: &["status"],
            stdout: dev_full,
            stderr: dev_full,
            code: 1,
        },
        Unwritable {
            what: "status into closed pipes",
            args: &["status"],
            stdout: closed_pipe,
            stderr: closed_pipe,
            code: 0,
        },
        Unwritable {
            what: "an unknown interface, stderr a closed pipe",
            args: &["status", "nope0"],
            stdout: Stdio::null,
            stderr: closed_pipe,
            code: 3,
        },
        Unwritable {
            what: "an unknown interface, stderr /dev/full",
            args: &["status", "nope0"],
            stdout: Stdio::null,
            stderr: dev_full,
            code: 3,
        },
    ] {
        let status = run_into(&lab, case.args, (case.stdout)(), (case.stderr)());
        assert_eq!(status.code(), Some(case.code), "{}: {status}", case.what);
    }
}

/// A run with outputs that cannot be written, and the code it must end with.
struct Unwritable {
    what: &'static str,
    args: &'static [&'static str],
    stdout: fn() -> Stdio,
    stderr: fn() -> Stdio,
    code: i32,
}

/// `watch > /dev/full`: one line and exit 1 at the first report, not a
/// run that goes on writing nowhere.
#[test]
fn watch_into_a_full_disk_is_one_line_and_exit_1() {
    let lab = StandaloneLab::new().unwrap();
    let bin = macdrop::macdrop_bin();
    let script = format!(
        "exec {} watch --format json --interval 0.2 --iface {STANDALONE_IFACE} > /dev/full",
        bin.display()
    );
    let out = macdrop::run_command(lab.host(), &["sh", "-c", &script], RUN_TIMEOUT).unwrap();
    let last = out.stderr.trim_end().lines().last().unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
    assert_eq!(
        last,
        "macdrop: cannot write the report: no space left on device; free some space, or send \
         it elsewhere"
    );
    assert_no_panic(&out.stderr);
}
