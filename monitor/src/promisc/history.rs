//! Promiscuous-mode transitions since boot, from the kernel log.
//!
//! `__dev_set_promiscuity` logs each time a device's `IFF_PROMISC` flag
//! changes (not each holder: a second holder logs nothing). The wording
//! changed over time, and both are recognised:
//!
//! - older kernels, `pr_info`: `device br0 entered promiscuous mode`;
//! - newer ones (about 6.5 on), `netdev_info`: `br0: entered promiscuous
//!   mode`. netdev_info adds the registration state while a device is being
//!   deleted (`p1 (unregistering): left promiscuous mode`, measured on
//!   6.18), and for a device with a parent (a NIC, not veth or bridge)
//!   prefixes driver and bus id and attaches the *parent's* dictionary:
//!   `virtio_net virtio2 eth0: entered promiscuous mode` with
//!   `SUBSYSTEM=virtio`, `DEVICE=+virtio:virtio2`. A `DEVICE=n<ifindex>`
//!   entry, which would name the net device itself, is used as a hint if
//!   present but did not occur for this message on 6.18.
//!
//! Renames are logged too (`eth1: renamed from eth0`, `... (while UP)`) and
//! are followed, so the logged state moves with the device.
//!
//! Records are read from `/dev/kmsg`: a fresh descriptor starts at the
//! oldest record still in the ring buffer and each `read` returns one
//! record, `PRIO,SEQ,TIMESTAMP_US,FLAGS;MESSAGE` followed by ` KEY=VALUE`
//! dictionary lines (Documentation/ABI/testing/dev-kmsg). Only facility 0
//! (the kernel) counts: userspace can write to `/dev/kmsg`, but never with
//! facility 0, so it cannot forge a transition.
//!
//! Limits, which [`IfaceHistory::verdict`] turns into `Uncertain` rather
//! than a wrong answer:
//!
//! - The log is global, names are per network namespace: every container
//!   has an `eth0`, and all their transitions land under one name.
//! - A device deleted while promiscuous through `ip link set promisc on`
//!   logs no "left" (measured on 6.18; bridge ports and tcpdump's sockets
//!   do log one, "(unregistering)"), so a later device of that name
//!   inherits an "entered".
//! - The ring buffer wraps: records older than the oldest one kept are
//!   gone ([`History::history_complete`]).

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{ErrorKind, Read as _},
    os::unix::fs::OpenOptionsExt as _,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result};

const DEV_KMSG: &str = "/dev/kmsg";
/// The kernel formats each record into a buffer of this size
/// (`CONSOLE_EXT_LOG_MAX`) and refuses reads into smaller ones.
const RECORD_MAX: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransitionKind {
    Entered,
    Left,
}

/// One logged change of a device's promiscuous flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub kind: TransitionKind,
    /// Sequence number of the log record.
    pub seq: u64,
    /// The record's timestamp: time since boot of the printk clock.
    pub since_boot: Duration,
    /// `since_boot` as wall-clock time: boot time (`CLOCK_REALTIME` minus
    /// `CLOCK_BOOTTIME` when the log was read) plus `since_boot`, as
    /// `dmesg -T` does. The printk clock does not advance in suspend, so
    /// after a suspend this comes out early by the time slept.
    pub wall: SystemTime,
    /// Logged while the device was being deleted (`(unregistering)`).
    pub unregistering: bool,
    /// `DEVICE=n<ifindex>` from the record's dictionary, if any.
    pub ifindex_hint: Option<u32>,
    /// The record's `DEVICE=` when it names another device (the NIC's
    /// parent, e.g. `+pci:0000:00:03.0`).
    pub device: Option<String>,
}

/// What the log says about the device that now has a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogState {
    Promiscuous,
    NotPromiscuous,
    /// Nothing in the retained log decides it (the buffer wrapped).
    Unknown,
}

/// Whether the log and the current flag agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Agrees,
    /// The log's last word contradicts the flag. Linux logs every flag
    /// change, so the records are most likely another interface's of the
    /// same name, or a device deleted while promiscuous (no "left" logged).
    Disagrees,
    Uncertain(Uncertainty),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uncertainty {
    /// The ring buffer wrapped before any record about this name.
    HistoryIncomplete,
    /// The records cannot be one device's: "entered" twice without "left"
    /// (or the reverse), so several devices used the name (namespaces,
    /// re-created or renamed devices).
    NameShared,
}

/// Promiscuous-mode history of one interface name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceHistory {
    pub name: String,
    /// "entered promiscuous mode" records for this name (one per record,
    /// never more: see `counts_each_record_once`).
    pub entered: u32,
    pub left: u32,
    /// The latest of them.
    pub last: Option<Transition>,
    /// Copied from [`History::history_complete`]: whether `entered` and
    /// `left` cover everything since boot.
    pub history_complete: bool,
    /// The state of the device now named so, by the log, following renames.
    pub state: LogState,
    /// Records that contradict a single device holding the name.
    pub conflicts: u32,
    /// The name this one was last renamed from, if a rename was logged.
    pub renamed_from: Option<String>,
}

impl IfaceHistory {
    fn new(name: &str, history_complete: bool) -> Self {
        Self {
            name: name.to_owned(),
            entered: 0,
            left: 0,
            last: None,
            history_complete,
            // With the log complete since boot, a name the log never
            // mentions has never been promiscuous.
            state: if history_complete {
                LogState::NotPromiscuous
            } else {
                LogState::Unknown
            },
            conflicts: 0,
            renamed_from: None,
        }
    }

    /// Compares the log with the interface's current state. `promisc_now`
    /// must be the real flag: `IFLA_PROMISCUITY > 0` (or 0x100 in
    /// `/sys/class/net/X/flags`), *not* `IFF_PROMISC` from rtnetlink, which
    /// only shows `ip link set promisc on`.
    ///
    /// For one device with a complete log this is "entered - left > 0 iff
    /// promiscuous now". It also works after the buffer wrapped, as long as
    /// a record about the name survived: the state after the latest record
    /// does not depend on the lost ones.
    pub fn verdict(&self, promisc_now: bool) -> Verdict {
        if self.conflicts > 0 {
            return Verdict::Uncertain(Uncertainty::NameShared);
        }
        let logged = match self.state {
            LogState::Unknown => return Verdict::Uncertain(Uncertainty::HistoryIncomplete),
            LogState::Promiscuous => true,
            LogState::NotPromiscuous => false,
        };
        if logged == promisc_now {
            Verdict::Agrees
        } else {
            Verdict::Disagrees
        }
    }

    /// True only when the log and `promisc_now` certainly disagree; false
    /// when they agree or when it cannot be told (see [`Self::verdict`]).
    pub fn disagrees(&self, promisc_now: bool) -> bool {
        self.verdict(promisc_now) == Verdict::Disagrees
    }

    fn transition(&mut self, transition: Transition) {
        let (count, state) = match transition.kind {
            TransitionKind::Entered => (&mut self.entered, LogState::Promiscuous),
            TransitionKind::Left => (&mut self.left, LogState::NotPromiscuous),
        };
        *count = count.saturating_add(1);
        // Entering while already in (or leaving while out) means another
        // device's records are mixed in.
        if self.state == state {
            self.conflicts = self.conflicts.saturating_add(1);
        }
        self.state = state;
        self.last = Some(transition);
    }
}

/// Every interface name's promiscuous-mode history in the kernel log.
#[derive(Clone, Debug)]
pub struct History {
    /// The oldest retained record is from boot (seq 0) and none was lost
    /// while reading: counts are complete since boot.
    pub history_complete: bool,
    /// Sequence number of the oldest record read.
    pub oldest_seq: Option<u64>,
    /// Wall-clock time of boot, as used for [`Transition::wall`].
    pub boot_time: SystemTime,
    interfaces: BTreeMap<String, IfaceHistory>,
    last_seq: Option<u64>,
    records_lost: bool,
}

impl History {
    /// Reads the whole kernel log from `/dev/kmsg` (needs `CAP_SYSLOG`
    /// when `kernel.dmesg_restrict` is 1). Never blocks.
    pub fn read() -> Result<Self> {
        let boot_time = boot_time()?;
        let mut kmsg = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(DEV_KMSG)
            .with_context(|| {
                format!(
                    "cannot open {DEV_KMSG}: reading the kernel log needs root (CAP_SYSLOG) \
                     when kernel.dmesg_restrict is 1"
                )
            })?;
        let mut history = Self::new(boot_time);
        read_records(&mut kmsg, &mut history)?;
        Ok(history)
    }

    /// An empty history; feed it with [`History::push`].
    pub fn new(boot_time: SystemTime) -> Self {
        Self {
            history_complete: false,
            oldest_seq: None,
            boot_time,
            interfaces: BTreeMap::new(),
            last_seq: None,
            records_lost: false,
        }
    }

    /// Adds one raw `/dev/kmsg` record, in log order. Records that are not
    /// the kernel's, not about promiscuous mode or renames, malformed, or
    /// not newer than the last one pushed (a record read twice) are ignored.
    pub fn push(&mut self, raw: &str) {
        let Some(record) = Record::parse(raw) else {
            return;
        };
        if self.last_seq.is_some_and(|last| record.seq <= last) {
            return;
        }
        if self.last_seq.is_none() {
            self.oldest_seq = Some(record.seq);
        }
        self.last_seq = Some(record.seq);
        self.history_complete = self.oldest_seq == Some(0) && !self.records_lost;
        // Kernel messages only: userspace writes to /dev/kmsg get a
        // non-zero facility (LOG_USER by default) and cannot forge these.
        if record.facility != 0 {
            return;
        }
        let complete = self.history_complete;
        match parse_message(record.message) {
            Some(Message::Promisc {
                name,
                kind,
                unregistering,
            }) => {
                let transition = Transition {
                    kind,
                    seq: record.seq,
                    since_boot: record.since_boot,
                    wall: self.boot_time + record.since_boot,
                    unregistering,
                    ifindex_hint: record.ifindex_hint(),
                    device: record.device().map(str::to_owned),
                };
                self.entry(&name, complete).transition(transition);
            }
            Some(Message::Renamed { from, to }) => {
                // The device keeps its state under the new name; the old
                // name is free, and whatever takes it next starts out of
                // promiscuous mode.
                let moved = self.entry(&from, complete).state;
                self.entry(&from, complete).state = LogState::NotPromiscuous;
                let target = self.entry(&to, complete);
                if target.state == LogState::Promiscuous {
                    // The name's previous device vanished while promiscuous.
                    target.conflicts = target.conflicts.saturating_add(1);
                }
                target.state = moved;
                target.renamed_from = Some(from);
            }
            None => {}
        }
    }

    /// Notes that records were lost while reading (`EPIPE`: overwritten
    /// between two reads). Any name may have changed in the gap, so what
    /// the log said about each is unknown until its next record.
    pub fn mark_records_lost(&mut self) {
        self.records_lost = true;
        self.history_complete = false;
        for history in self.interfaces.values_mut() {
            history.history_complete = false;
            history.state = LogState::Unknown;
        }
    }

    /// The history of `name`; a name the log never mentions gets an empty
    /// one (which is "not promiscuous" only if the log is complete).
    pub fn interface(&self, name: &str) -> IfaceHistory {
        let mut history = self
            .interfaces
            .get(name)
            .cloned()
            .unwrap_or_else(|| IfaceHistory::new(name, self.history_complete));
        history.history_complete = self.history_complete;
        history
    }

    /// Every name with a logged transition, or promiscuous by the log
    /// through a rename, in name order.
    pub fn interfaces(&self) -> impl Iterator<Item = IfaceHistory> + '_ {
        self.interfaces
            .values()
            .filter(|h| h.entered + h.left > 0 || h.state == LogState::Promiscuous)
            .map(|h| self.interface(&h.name))
    }

    fn entry(&mut self, name: &str, complete: bool) -> &mut IfaceHistory {
        self.interfaces
            .entry(name.to_owned())
            .or_insert_with(|| IfaceHistory::new(name, complete))
    }
}

/// Reads records into `history` until the log is drained (`EAGAIN`). On
/// `EPIPE` (records overwritten since the last read) the kernel has moved
/// the descriptor to the oldest record left; reading goes on from there.
fn read_records(kmsg: &mut File, history: &mut History) -> Result<()> {
    let mut buf = vec![0u8; RECORD_MAX];
    loop {
        match kmsg.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => history.push(&String::from_utf8_lossy(&buf[..n])),
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if err.raw_os_error() == Some(libc::EPIPE) => history.mark_records_lost(),
            Err(err) => return Err(err).with_context(|| format!("cannot read {DEV_KMSG}")),
        }
    }
}

/// Wall-clock time of boot: now minus `CLOCK_BOOTTIME`.
fn boot_time() -> Result<SystemTime> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime(CLOCK_BOOTTIME)");
    }
    let now = SystemTime::now();
    let since_boot = Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    );
    now.checked_sub(since_boot)
        .context("the wall clock is set before the machine booted")
}

/// One `/dev/kmsg` record, split into its parts.
#[derive(Debug)]
struct Record<'a> {
    facility: u8,
    seq: u64,
    since_boot: Duration,
    /// First line of the text, still escaped (`\xNN`) as the kernel sent it.
    message: &'a str,
    /// ` KEY=VALUE` continuation lines.
    dict: Vec<(&'a str, &'a str)>,
}

impl<'a> Record<'a> {
    /// `PRIO,SEQ,TIMESTAMP_US,FLAGS[,more];MESSAGE\n( KEY=VALUE\n)*`
    fn parse(raw: &'a str) -> Option<Self> {
        let (prefix, text) = raw.split_once(';')?;
        let mut fields = prefix.split(',');
        let prio: u32 = fields.next()?.parse().ok()?;
        let seq = fields.next()?.parse().ok()?;
        let micros = fields.next()?.parse().ok()?;
        let mut lines = text.split('\n');
        let message = lines.next()?;
        let dict = lines
            .filter_map(|line| line.strip_prefix(' ')?.split_once('='))
            .collect();
        Some(Self {
            facility: u8::try_from(prio >> 3).ok()?,
            seq,
            since_boot: Duration::from_micros(micros),
            message,
            dict,
        })
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.dict.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// `DEVICE=n<ifindex>`: the record is about that net device.
    fn ifindex_hint(&self) -> Option<u32> {
        self.get("DEVICE")?.strip_prefix('n')?.parse().ok()
    }

    /// Any other `DEVICE=` (`+subsystem:name`, `b`/`c` major:minor).
    fn device(&self) -> Option<&'a str> {
        self.get("DEVICE").filter(|d| !d.starts_with('n'))
    }
}

/// The log messages this module understands.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    Promisc {
        name: String,
        kind: TransitionKind,
        unregistering: bool,
    },
    Renamed {
        from: String,
        to: String,
    },
}

/// Recognises a promiscuous-mode transition or a rename in one message;
/// anything else (allmulticast mode, bridge port states, audit records of
/// the same change) is None, so each transition is counted exactly once.
fn parse_message(message: &str) -> Option<Message> {
    for (kind, word) in [
        (TransitionKind::Entered, "entered"),
        (TransitionKind::Left, "left"),
    ] {
        // Older kernels: "device %s %s promiscuous mode".
        if let Some(name) = message
            .strip_prefix("device ")
            .and_then(|rest| rest.strip_suffix(&format!(" {word} promiscuous mode")))
        {
            return Some(Message::Promisc {
                name: ifname(name)?,
                kind,
                unregistering: false,
            });
        }
        // netdev_info: "[driver busid ]NAME[ (state)]: entered promiscuous mode".
        if let Some(head) = message.strip_suffix(&format!(": {word} promiscuous mode")) {
            let (name, state) = netdev_prefix(head)?;
            return Some(Message::Promisc {
                name,
                kind,
                unregistering: state == Some("unregistering"),
            });
        }
    }
    // netdev_info(dev, "renamed from %s%s", oldname, " (while UP)" or "").
    let (head, rest) = message.split_once(": renamed from ")?;
    let from = rest.strip_suffix(" (while UP)").unwrap_or(rest);
    let (to, _) = netdev_prefix(head)?;
    Some(Message::Renamed {
        from: ifname(from)?,
        to,
    })
}

/// The device name and registration state in what netdev_printk puts
/// before ": ": `NAME`, `NAME (unregistering)`, or either after a driver
/// and bus id. Names cannot contain spaces, so the name is the last word
/// before an optional ` (state)`.
fn netdev_prefix(head: &str) -> Option<(String, Option<&str>)> {
    let (head, state) = match head.strip_suffix(')').and_then(|h| h.rsplit_once(" (")) {
        Some((head, state)) => (head, Some(state)),
        None => (head, None),
    };
    let name = head.rsplit(' ').next()?;
    Some((ifname(name)?, state))
}

/// An interface name as logged: `\xNN` escapes undone (the kernel escapes
/// bytes outside printable ASCII), then checked against what
/// `dev_valid_name` allows, so a stray match cannot invent an interface.
fn ifname(logged: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(logged.len());
    let mut rest = logged.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'\\'
            && let Some(hex) = tail.get(1..3).filter(|_| tail.first() == Some(&b'x'))
            && let Ok(value) = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16)
        {
            bytes.push(value);
            rest = &tail[3..];
            continue;
        }
        bytes.push(byte);
        rest = tail;
    }
    let valid = (1..=15).contains(&bytes.len())
        && bytes != b"."
        && bytes != b".."
        && !bytes
            .iter()
            .any(|b| *b == b'/' || *b == b':' || *b == 0 || b.is_ascii_whitespace());
    valid.then(|| String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as read from /dev/kmsg on this machine (Linux 6.18): a
    /// dictionary-carrying record, bridge and veth transitions, a deletion,
    /// and neighbours that must not count.
    const CAPTURED: &[&str] = &[
        "5,0,0,-;Linux version 6.18.44-fc-v595 (builder@sandboxing) (gcc (GCC) 15.3.0, GNU ld (GNU Binutils) 2.46) #1 SMP PREEMPT_DYNAMIC @0\n",
        "6,193,294095,-;acpi PNP0A08:00: _OSC: OS supports [ExtendedConfig ASPM ClockPM Segments MSI HPX-Type3]\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A08:00\n",
        "6,2130,1184469913,-;br9: port 1(q1) entered blocking state\n",
        "6,2131,1184469941,-;q1: entered allmulticast mode\n",
        "6,2132,1184470034,-;q1: entered promiscuous mode\n",
        "6,2133,1190791287,-;br9: entered promiscuous mode\n",
        "6,2134,1191092748,-;br9: left promiscuous mode\n",
        "6,2135,1218512177,-;q1: left allmulticast mode\n",
        "6,2136,1218512187,-;q1 (unregistering): left promiscuous mode\n",
        "6,2137,1218512215,-;br9: port 1(q1) entered disabled state\n",
        "6,2138,1280509343,-;rn1: entered promiscuous mode\n",
        "6,2139,1280521903,-;rn2: renamed from rn1\n",
        "6,2140,1280537913,-;rn3: renamed from rn2 (while UP)\n",
        "6,2141,1280543060,-;rn3: left promiscuous mode\n",
    ];

    fn boot() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn history(records: &[&str]) -> History {
        let mut history = History::new(boot());
        for record in records {
            history.push(record);
        }
        history
    }

    fn counts(history: &History, name: &str) -> (u32, u32) {
        let h = history.interface(name);
        (h.entered, h.left)
    }

    #[test]
    fn reads_a_real_capture() {
        let h = history(CAPTURED);
        assert!(h.history_complete);
        assert_eq!(h.oldest_seq, Some(0));
        assert_eq!(counts(&h, "q1"), (1, 1));
        assert_eq!(counts(&h, "br9"), (1, 1));
        let q1 = h.interface("q1");
        let last = q1.last.clone().unwrap();
        assert_eq!(last.kind, TransitionKind::Left);
        assert!(last.unregistering);
        assert_eq!(last.seq, 2136);
        assert_eq!(last.since_boot, Duration::from_micros(1_218_512_187));
        assert_eq!(last.wall, boot() + Duration::from_micros(1_218_512_187));
        assert_eq!((last.ifindex_hint, last.device), (None, None));
        assert_eq!(q1.verdict(false), Verdict::Agrees);
        assert_eq!(q1.verdict(true), Verdict::Disagrees);
        assert!(q1.disagrees(true) && !q1.disagrees(false));
        // Names with transitions; neighbours and rename-only names excluded.
        let names: Vec<String> = h.interfaces().map(|i| i.name).collect();
        assert_eq!(names, ["br9", "q1", "rn1", "rn3"]);
    }

    #[test]
    fn renames_carry_the_state_to_the_new_name() {
        let h = history(&CAPTURED[..13]); // up to "rn3: renamed from rn2"
        let rn3 = h.interface("rn3");
        assert_eq!(counts(&h, "rn3"), (0, 0));
        assert_eq!(rn3.renamed_from.as_deref(), Some("rn2"));
        assert_eq!(rn3.state, LogState::Promiscuous);
        assert_eq!(rn3.verdict(true), Verdict::Agrees);
        // The old names are free and no longer promiscuous.
        assert_eq!(counts(&h, "rn1"), (1, 0));
        assert_eq!(h.interface("rn1").verdict(false), Verdict::Agrees);
        assert_eq!(h.interface("rn2").verdict(false), Verdict::Agrees);
        let h = history(CAPTURED);
        assert_eq!(h.interface("rn3").verdict(false), Verdict::Agrees);
    }

    #[test]
    fn both_kernel_formats_and_the_nic_form() {
        for (message, name, kind, unregistering) in [
            (
                "device br0 entered promiscuous mode",
                "br0",
                TransitionKind::Entered,
                false,
            ),
            (
                "device br0 left promiscuous mode",
                "br0",
                TransitionKind::Left,
                false,
            ),
            (
                "br0: entered promiscuous mode",
                "br0",
                TransitionKind::Entered,
                false,
            ),
            (
                "br0: left promiscuous mode",
                "br0",
                TransitionKind::Left,
                false,
            ),
            (
                "p1 (unregistering): left promiscuous mode",
                "p1",
                TransitionKind::Left,
                true,
            ),
            (
                "virtio_net virtio2 eth0: entered promiscuous mode",
                "eth0",
                TransitionKind::Entered,
                false,
            ),
            (
                "e1000e 0000:00:19.0 enp0s25 (unregistered): left promiscuous mode",
                "enp0s25",
                TransitionKind::Left,
                false,
            ),
            // Names may hold odd bytes; the kernel escapes them.
            (
                "we\\x20ird: entered promiscuous mode",
                "we ird",
                TransitionKind::Entered,
                false,
            ),
            (
                "a(b): entered promiscuous mode",
                "a(b)",
                TransitionKind::Entered,
                false,
            ),
        ] {
            let expected = if name == "we ird" {
                None // whitespace is not a valid interface name
            } else {
                Some(Message::Promisc {
                    name: name.into(),
                    kind,
                    unregistering,
                })
            };
            assert_eq!(parse_message(message), expected, "{message}");
        }
        assert_eq!(
            parse_message("caf\\xc3\\xa9: entered promiscuous mode"),
            Some(Message::Promisc {
                name: "café".into(),
                kind: TransitionKind::Entered,
                unregistering: false,
            })
        );
    }

    #[test]
    fn other_messages_are_not_transitions() {
        for message in [
            "q1: entered allmulticast mode",
            "br9: port 1(q1) entered blocking state",
            "br9: port 1(q1) entered forwarding state",
            // Audit's record of the same change (printed to the log when
            // auditd is not running): counting it too would count twice.
            "audit: type=1700 audit(1700000000.123:42): dev=br0 prom=256 old_prom=0 auid=0 uid=0 gid=0 ses=1",
            "device br0 entered promiscuous mode now",
            "device br 0 entered promiscuous mode",
            ": entered promiscuous mode",
            "a/b: entered promiscuous mode",
            "averyveryverylongname: entered promiscuous mode",
            "entered promiscuous mode",
            "",
        ] {
            assert_eq!(parse_message(message), None, "{message:?}");
        }
    }

    /// A count of "enter" for both columns would count one record twice;
    /// here each record counts once, in its own column, and a record read twice (same
    /// sequence number) does not count again.
    #[test]
    fn counts_each_record_once() {
        let h = history(&[
            "0,0,0,-;Linux version\n",
            "6,1,10,-;v1: entered promiscuous mode\n",
            "6,1,10,-;v1: entered promiscuous mode\n",
            "6,2,20,-;v1: entered allmulticast mode\n",
            "6,3,30,-;v1: left promiscuous mode\n",
            "6,4,40,-;v1: entered promiscuous mode\n",
            "6,3,30,-;v1: left promiscuous mode\n",
        ]);
        assert_eq!(counts(&h, "v1"), (2, 1));
        assert_eq!(h.interface("v1").verdict(true), Verdict::Agrees);
        assert_eq!(h.interface("v1").conflicts, 0);
    }

    #[test]
    fn userspace_cannot_forge_transitions() {
        // `echo "v1: entered promiscuous mode" > /dev/kmsg` arrives as
        // LOG_USER (facility 1): prio 14, not 6.
        let h = history(&[
            "0,0,0,-;Linux version\n",
            "14,1,10,-;v1: entered promiscuous mode\n",
            "30,2,20,-;v1: left promiscuous mode\n",
        ]);
        assert_eq!(counts(&h, "v1"), (0, 0));
    }

    #[test]
    fn dictionary_hints_are_kept() {
        let h = history(&[
            "0,0,0,-;Linux version\n",
            "6,1,10,-;virtio_net virtio2 eth0: entered promiscuous mode\n SUBSYSTEM=virtio\n DEVICE=+virtio:virtio2\n",
            "6,2,20,-;eth0: left promiscuous mode\n SUBSYSTEM=net\n DEVICE=n7\n",
            "6,3,30,-;eth0: entered promiscuous mode\n",
        ]);
        let eth0 = h.interface("eth0");
        assert_eq!(counts(&h, "eth0"), (2, 1));
        assert_eq!(eth0.last.as_ref().unwrap().ifindex_hint, None);
        let mut all = History::new(boot());
        all.push("0,0,0,-;Linux version\n");
        all.push("6,1,10,-;virtio_net virtio2 eth0: entered promiscuous mode\n SUBSYSTEM=virtio\n DEVICE=+virtio:virtio2\n");
        let last = all.interface("eth0").last.unwrap();
        assert_eq!(last.device.as_deref(), Some("+virtio:virtio2"));
        assert_eq!(last.ifindex_hint, None);
        all.push("6,2,20,-;eth0: left promiscuous mode\n SUBSYSTEM=net\n DEVICE=n7\n");
        let last = all.interface("eth0").last.unwrap();
        assert_eq!((last.ifindex_hint, last.device), (Some(7), None));
    }

    #[test]
    fn a_wrapped_log_is_uncertain_until_a_record_decides() {
        // Oldest record 500: whatever happened before is gone.
        let h = history(&[
            "6,500,10,-;v1: left promiscuous mode\n",
            "6,501,20,-;v2: entered promiscuous mode\n",
        ]);
        assert!(!h.history_complete);
        assert_eq!(h.oldest_seq, Some(500));
        let never = h.interface("v9");
        assert!(!never.history_complete);
        assert_eq!(
            never.verdict(true),
            Verdict::Uncertain(Uncertainty::HistoryIncomplete)
        );
        assert!(!never.disagrees(true));
        // The latest record still tells the current state.
        assert_eq!(h.interface("v1").verdict(false), Verdict::Agrees);
        assert_eq!(h.interface("v2").verdict(false), Verdict::Disagrees);
        // A complete log: a name it never mentions was never promiscuous.
        let complete = history(&["0,0,0,-;Linux version\n"]);
        assert_eq!(complete.interface("v9").verdict(false), Verdict::Agrees);
        assert_eq!(complete.interface("v9").verdict(true), Verdict::Disagrees);
    }

    #[test]
    fn lost_records_make_every_name_unknown() {
        let mut h = history(&[
            "0,0,0,-;Linux version\n",
            "6,1,10,-;v1: entered promiscuous mode\n",
        ]);
        h.mark_records_lost();
        h.push("6,9,90,-;v2: entered promiscuous mode\n");
        assert!(!h.history_complete);
        assert_eq!(
            h.interface("v1").verdict(true),
            Verdict::Uncertain(Uncertainty::HistoryIncomplete)
        );
        assert_eq!(h.interface("v2").verdict(true), Verdict::Agrees);
    }

    #[test]
    fn a_shared_name_is_uncertain() {
        // Two namespaces' eth0, or a device deleted while promiscuous (no
        // "left") and a new one of the same name.
        let h = history(&[
            "0,0,0,-;Linux version\n",
            "6,1,10,-;eth0: entered promiscuous mode\n",
            "6,2,20,-;eth0: entered promiscuous mode\n",
            "6,3,30,-;eth0: left promiscuous mode\n",
        ]);
        let eth0 = h.interface("eth0");
        assert_eq!((eth0.entered, eth0.left, eth0.conflicts), (2, 1, 1));
        for now in [false, true] {
            assert_eq!(
                eth0.verdict(now),
                Verdict::Uncertain(Uncertainty::NameShared)
            );
        }
        // Renaming onto a name whose device was promiscuous: same doubt.
        let h = history(&[
            "0,0,0,-;Linux version\n",
            "6,1,10,-;v1: entered promiscuous mode\n",
            "6,2,20,-;v1: renamed from v2\n",
        ]);
        assert_eq!(h.interface("v1").conflicts, 1);
    }

    #[test]
    fn malformed_records_are_ignored() {
        let h = history(&[
            "0,0,0,-;Linux version\n",
            "garbage\n",
            "6,x,10,-;v1: entered promiscuous mode\n",
            "6,5;v1: entered promiscuous mode\n",
            "6,6,10,-,caller=T1;v1: entered promiscuous mode\n",
        ]);
        // The last one has an extra prefix field (CONFIG_PRINTK_CALLER): valid.
        assert_eq!(counts(&h, "v1"), (1, 0));
    }
}
