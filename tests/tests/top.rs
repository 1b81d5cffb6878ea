//! `macdrop top`, driven like a person over SSH would: in a tmux pane of
//! 80x24 running a shell, frames sent into a lab, the screen read with
//! `capture-pane` until it shows the exact counts, keys pressed with
//! `send-keys`, and after `q` (or SIGTERM) the shell's own terminal
//! settings back, byte for byte (`stty -g`), and the alternate screen left.

mod common;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use common::SETTLE;
use macdrop_tests::{
    frames::{BROADCAST, ipv4_udp},
    lab::{BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, PEER_IFACE, peer_ipv4, peer_mac},
    macdrop::{READY_TIMEOUT, macdrop_bin, run},
    sender::RawSender,
};

/// A tmux server of our own (its own socket), with one 80x24 session
/// running a plain shell; killed on drop.
struct Tmux {
    socket: String,
    stty_file: PathBuf,
}

impl Tmux {
    fn new(width: u16, height: u16) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let t = Self {
            socket: format!("macdrop-test-{id}"),
            stty_file: std::env::temp_dir().join(format!("macdrop-top-stty-{id}")),
        };
        t.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "env PS1='$ ' TERM=xterm-256color bash --norc --noprofile",
        ]);
        // Typeahead sent before the shell is ready may be lost.
        t.wait("the shell's prompt", SETTLE, |s| s.starts_with('$'));
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (Debian package tmux) must be installed");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally, then Enter.
    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
        self.tmux(&["send-keys", "-t", "t", "Enter"]);
    }

    /// Presses keys by tmux name (`s`, `Escape`, `Enter`, ...).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend(keys);
        self.tmux(&args);
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// Polls the screen until `cond` holds; panics with the last screen.
    fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("{what}: not on screen within {timeout:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn alternate_screen(&self) -> bool {
        self.tmux(&["display-message", "-p", "-t", "t", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// Starts `macdrop top ARGS` from the shell in `ns`, remembering the
    /// terminal settings before; afterwards the shell prints the exit code
    /// and whether the settings are exactly the same again.
    fn start_top(&self, ns: &str, args: &str) {
        let stty = self.stty_file.display();
        self.type_line(&format!(
            "clear; stty -g > {stty}; ip netns exec {ns} {} top {args}; echo EXIT=$?; \
             stty -g | cmp -s - {stty} && echo TTY_RESTORED",
            macdrop_bin().display()
        ));
    }

    /// The pid of what the shell runs now (macdrop: `ip netns exec` execs it).
    fn foreground_pid(&self) -> u32 {
        let shell: u32 = self
            .tmux(&["display-message", "-p", "-t", "t", "#{pane_pid}"])
            .trim()
            .parse()
            .unwrap();
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
        let pid: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "macdrop");
        pid
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
        let _ = std::fs::remove_file(&self.stty_file);
    }
}

/// The interface table's row for `name`, by header: column -> cell.
fn row(screen: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let lines: Vec<&str> = screen.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("IFACE "))?;
    let columns: Vec<&str> = lines[header].split_whitespace().collect();
    let line = lines[header + 1..]
        .iter()
        .take_while(|l| !l.starts_with(" MISMATCH"))
        .find(|l| l.split_whitespace().next() == Some(name))?;
    let cells: Vec<&str> = line.split_whitespace().collect();
    (cells.len() == columns.len()).then(|| {
        columns
            .iter()
            .zip(cells)
            .map(|(c, v)| ((*c).to_owned(), v.to_owned()))
            .collect()
    })
}

fn cells(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Data rows of the table, in screen order.
fn row_names(screen: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let Some(header) = lines.iter().position(|l| l.starts_with("IFACE ")) else {
        return Vec::new();
    };
    lines[header + 1..]
        .iter()
        .take_while(|l| !l.starts_with(" MISMATCH"))
        .filter(|l| !l.starts_with("  /s") && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// A whole line of the screen, not text inside the typed command.
fn has_line(screen: &str, line: &str) -> bool {
    screen.lines().any(|l| l.trim_end() == line)
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The README's incident in an 80x24 pane: exact counts per interface,
/// the sparkline, sorting, filtering, and `q` giving the shell back as it
/// was.
#[test]
fn top_shows_the_incident_sorts_filters_and_quits_cleanly() {
    let lab = BridgeLab::new(2).unwrap();
    lab.remove_bridge_mac_from_fdb().unwrap();
    let tmux = Tmux::new(80, 24);
    tmux.start_top(
        lab.host().name(),
        &format!("--bridge {BRIDGE} --interval 0.3"),
    );
    let screen = tmux.wait("the table", READY_TIMEOUT, |s| {
        s.contains("macdrop top │ 3 iface") && row(s, "p2").is_some()
    });
    assert!(tmux.alternate_screen(), "top runs on the alternate screen");
    assert!(
        screen.contains("p1 is watched through"),
        "attach events at the bottom:\n{screen}"
    );

    // Peer 1 sends 7 frames for br0's IP to br0's MAC (missing from the
    // FDB: this host's IP with a MAC the bridge will not deliver) and 2
    // broadcasts.
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    tx.send(
        &ipv4_udp(BRIDGE_MAC, peer_mac(1), peer_ipv4(1), BRIDGE_IPV4),
        7,
    )
    .unwrap();
    tx.send(
        &ipv4_udp(BROADCAST, peer_mac(1), peer_ipv4(1), BRIDGE_IPV4),
        2,
    )
    .unwrap();
    let want_p1 = cells(&[
        ("IFACE", "p1"),
        ("MASTER", "br0"),
        ("PROMISC", "yes(1)"),
        ("TOTAL", "9"),
        ("OWN", "0"),
        ("BCAST", "2"),
        ("MCAST", "0"),
        ("FOREIGN", "7"),
        ("WRONG_MAC", "7"),
        ("STALE", "0"),
    ]);
    let screen = tmux.wait("p1's exact counts", SETTLE, |s| {
        row(s, "p1").is_some_and(|r| {
            want_p1
                .iter()
                .all(|(k, v)| r.get(k).map(String::as_str) == Some(v.as_str()))
        })
    });
    let p1 = row(&screen, "p1").unwrap();
    assert!(
        p1["DROPS"] == "n/a" || p1["DROPS"].parse::<u64>().is_ok(),
        "{screen}"
    );
    // The bridge passes the broadcasts up; the 7 go nowhere else here.
    let br0 = row(&screen, "br0").unwrap();
    assert_eq!(
        (
            br0["TOTAL"].as_str(),
            br0["BCAST"].as_str(),
            br0["WRONG_MAC"].as_str()
        ),
        ("2", "2", "0"),
        "{screen}"
    );
    for line in screen.lines() {
        assert!(line.chars().count() <= 80, "wider than 80: {line:?}");
    }
    // p1's mismatch rate (WRONG_MAC on a port) drew a bar.
    let spark = tmux.wait("p1's sparkline", SETTLE, |s| {
        s.lines()
            .skip_while(|l| !l.starts_with(" MISMATCH/s"))
            .any(|l| l.starts_with("p1 ") && l.contains(BARS))
    });
    assert!(spark.contains(" EVENTS (newest last)"));

    // `s` cycles the sort: IFACE -> TOTAL -> FOREIGN -> WRONG_MAC.
    tmux.keys(&["s", "s", "s"]);
    let screen = tmux.wait("sorted by WRONG_MAC", SETTLE, |s| {
        s.contains("sort WRONG_MAC↓")
    });
    assert_eq!(row_names(&screen)[0], "p1", "{screen}");
    tmux.keys(&["r"]);
    let screen = tmux.wait("reversed", SETTLE, |s| s.contains("sort WRONG_MAC↑"));
    assert_eq!(row_names(&screen).last().map(String::as_str), Some("p1"));

    // `/` filters as it is typed; Enter keeps it; Esc clears it.
    tmux.keys(&["/", "p", "2"]);
    let screen = tmux.wait("filter being typed", SETTLE, |s| s.contains("filter: p2"));
    assert_eq!(row_names(&screen), ["p2"], "{screen}");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait("filter applied", SETTLE, |s| {
        s.contains("1/3 iface") && s.contains("filter p2") && !s.contains("filter: p2")
    });
    assert_eq!(row_names(&screen), ["p2"], "{screen}");
    tmux.keys(&["Escape"]);
    let screen = tmux.wait("filter cleared", SETTLE, |s| s.contains("│ 3 iface"));
    assert_eq!(row_names(&screen).len(), 3, "{screen}");

    // `q`: back to the shell, exit 0, the terminal exactly as before.
    tmux.keys(&["q"]);
    let screen = tmux.wait("the shell again", SETTLE, |s| has_line(s, "TTY_RESTORED"));
    assert!(has_line(&screen, "EXIT=0"), "{screen}");
    assert!(!screen.contains("macdrop top │"), "{screen}");
    assert!(!tmux.alternate_screen(), "alternate screen left");
    // The shell echoes and takes lines again (raw mode would not).
    tmux.type_line("echo still-$((40 + 2))");
    tmux.wait("a working shell", SETTLE, |s| s.contains("still-42"));
}

/// SIGTERM (and SIGINT/SIGHUP, handled alike) ends top with exit 0 and the
/// terminal restored; a narrow terminal keeps the alarm columns.
#[test]
fn sigterm_restores_the_terminal_and_narrow_panes_degrade() {
    let lab = BridgeLab::new(1).unwrap();
    let tmux = Tmux::new(80, 24);
    tmux.start_top(lab.host().name(), "--interval 0.3");
    tmux.wait("the table", READY_TIMEOUT, |s| row(s, "p1").is_some());

    tmux.tmux(&["resize-window", "-t", "t", "-x", "50", "-y", "16"]);
    let screen = tmux.wait("a 50-column table", SETTLE, |s| {
        s.lines().any(|l| l.starts_with("IFACE "))
            && s.lines().all(|l| l.chars().count() <= 50)
            && s.contains("WRONG_MAC")
    });
    let header: Vec<&str> = screen
        .lines()
        .find(|l| l.starts_with("IFACE "))
        .unwrap()
        .split_whitespace()
        .collect();
    for col in ["IFACE", "FOREIGN", "WRONG_MAC", "DROPS"] {
        assert!(
            header.contains(&col),
            "{col} kept at 50 columns: {header:?}"
        );
    }
    assert!(!header.contains(&"MCAST"), "{header:?}");

    let pid = tmux.foreground_pid();
    // SAFETY: plain syscall on the pid of a process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let screen = tmux.wait("the shell again", SETTLE, |s| has_line(s, "TTY_RESTORED"));
    assert!(has_line(&screen, "EXIT=0"), "{screen}");
    assert!(!tmux.alternate_screen());
}

/// Errors come before the screen is taken: printed plainly with their exit
/// code; and top refuses to run without a terminal.
#[test]
fn errors_leave_the_terminal_alone() {
    let lab = BridgeLab::new(1).unwrap();
    let tmux = Tmux::new(80, 24);
    tmux.start_top(lab.host().name(), "--bridge nosuchbr");
    let screen = tmux.wait("the error", SETTLE, |s| has_line(s, "TTY_RESTORED"));
    assert!(has_line(&screen, "EXIT=3"), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("macdrop: no interface named nosuchbr")),
        "{screen}"
    );

    let done = run(lab.host(), &["top"], SETTLE).unwrap();
    assert_eq!(done.status.code(), Some(3), "{}", done.stderr);
    assert!(done.stderr.contains("needs a terminal"), "{}", done.stderr);
}
