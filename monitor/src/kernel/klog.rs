//! The kernel side's log: rare events the eBPF programs report through
//! aya-log (`monitor-ebpf/src/klog.rs`; today a frame on an interface with
//! no configuration, which is a bug), one line each, `kernel warn: ...`,
//! at the level `--kernel-log` sets (default `warn`; `off` removes the
//! records' code at load time).
//!
//! The level is one per process, like the `log` crate's: the loader reads
//! it for every object it loads (`AYA_LOG_LEVEL`). The session drains its
//! object's log ring on every report (`Session::collect`) into its notes,
//! which every command shows as it shows the session's other notes
//! (`macdrop: kernel warn: ...` on stderr): rare events need no reader of
//! their own, and a report interval's delay costs nothing.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU8, Ordering},
};

use anyhow::Context as _;
use aya::Ebpf;
use aya_log::EbpfLogger;
use clap::ValueEnum;
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::untrusted::escape_controls;

/// `--kernel-log`: the most verbose kernel record shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
#[repr(u8)]
pub enum KernelLog {
    /// None; the programs are loaded without the records' code.
    Off = 0,
    Error = 1,
    /// Events that lose or misplace counts (the default).
    #[default]
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl KernelLog {
    fn filter(self) -> LevelFilter {
        match self {
            KernelLog::Off => LevelFilter::Off,
            KernelLog::Error => LevelFilter::Error,
            KernelLog::Warn => LevelFilter::Warn,
            KernelLog::Info => LevelFilter::Info,
            KernelLog::Debug => LevelFilter::Debug,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(KernelLog::Warn as u8);

/// Sets the process's kernel log level (before anything is loaded).
pub fn set_level(level: KernelLog) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The process's kernel log level.
pub fn level() -> KernelLog {
    match LEVEL.load(Ordering::Relaxed) {
        0 => KernelLog::Off,
        1 => KernelLog::Error,
        2 => KernelLog::Warn,
        3 => KernelLog::Info,
        _ => KernelLog::Debug,
    }
}

/// The value of aya-log's `AYA_LOG_LEVEL` global for `level`: aya-log's
/// levels are numbered as `KernelLog`'s (error 1 ... debug 4), and a record
/// is kept when its level is at most this.
pub fn aya_level(level: KernelLog) -> u8 {
    level as u8
}

/// The log ring's name in the object: aya-log-ebpf's map, which aya-log's
/// reader finds by this name.
pub const RING: &str = "AYA_LOGS";

/// Room in the ring per possible CPU: each CPU writes at most one record a
/// second (`monitor-ebpf/src/klog.rs`), ~200 bytes, and the ring is drained
/// at every report, so this holds several seconds of every CPU logging.
const RING_BYTES_PER_CPU: usize = 1024;

/// aya-log-ebpf's own size for the ring, the most this sizes it to.
const RING_BYTES_MAX: usize = 128 * 1024;

/// The log ring's size for `level` on a machine of `cpus` possible CPUs
/// with pages of `page` bytes: one page when nothing can be written
/// (`off`), else room for every CPU's records between reports (a power of
/// two, a whole number of pages, as the kernel requires), never more than
/// aya-log-ebpf's 128 KiB. aya-log-ebpf's fixed 128 KiB was most of what a
/// session keeps resident (the ring is mapped into the process and read)
/// and of its kernel memory, once per namespace under `--all-netns`.
pub fn ring_bytes(level: KernelLog, cpus: usize, page: usize) -> u32 {
    let bytes = if level == KernelLog::Off {
        page
    } else {
        (cpus.max(1) * RING_BYTES_PER_CPU)
            .next_power_of_two()
            .clamp(page, RING_BYTES_MAX.max(page))
    };
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// [`ring_bytes`] for the process's level on this machine: what every
/// load sizes the ring to (`kernel::loader`).
pub fn ring_bytes_here() -> u32 {
    let cpus = aya::util::nr_cpus().unwrap_or(1);
    // SAFETY: a plain libc call.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    ring_bytes(level(), cpus, page)
}

/// One object's log ring, and the lines read from it not yet taken.
pub struct KernelLogReader {
    logger: EbpfLogger<Writer>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl KernelLogReader {
    /// Takes the log ring out of `ebpf` (None with `--kernel-log off`:
    /// nothing can be written there). `namespace` names the object's
    /// network namespace in each line (empty: the starting one).
    pub fn take(ebpf: &mut Ebpf, namespace: &str) -> anyhow::Result<Option<Self>> {
        let level = level();
        if level == KernelLog::Off {
            return Ok(None);
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer {
            namespace: namespace.to_owned(),
            filter: level.filter(),
            lines: lines.clone(),
        };
        let logger = EbpfLogger::init_with_logger(ebpf, writer)
            .context("cannot read the kernel programs' log")?;
        Ok(Some(Self { logger, lines }))
    }

    /// The records written since the last call, one line each.
    pub fn drain(&mut self) -> Vec<String> {
        self.logger.flush();
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Formats one record as one line, escaped: the text comes from the kernel.
struct Writer {
    namespace: String,
    filter: LevelFilter,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Log for Writer {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.filter
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let line = format!(
            "kernel {level}: {}{}",
            escape_controls(&record.args().to_string()),
            if self.namespace.is_empty() {
                String::new()
            } else {
                format!(" [{}]", escape_controls(&self.namespace))
            }
        );
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_match_aya_logs_numbering() {
        assert_eq!(aya_level(KernelLog::Off), 0);
        assert_eq!(aya_level(KernelLog::Error), aya_log::Level::Error as u8);
        assert_eq!(aya_level(KernelLog::Warn), aya_log::Level::Warn as u8);
        assert_eq!(aya_level(KernelLog::Info), aya_log::Level::Info as u8);
        assert_eq!(aya_level(KernelLog::Debug), aya_log::Level::Debug as u8);
    }

    #[test]
    fn the_ring_is_a_power_of_two_of_whole_pages_sized_by_cpus() {
        use KernelLog::*;
        assert_eq!(ring_bytes(Off, 64, 4096), 4096);
        assert_eq!(ring_bytes(Warn, 2, 4096), 4096);
        assert_eq!(ring_bytes(Warn, 6, 4096), 8192);
        assert_eq!(ring_bytes(Debug, 64, 4096), 64 * 1024);
        assert_eq!(ring_bytes(Warn, 4096, 4096), 128 * 1024);
        assert_eq!(ring_bytes(Warn, 2, 65536), 65536);
        assert_eq!(ring_bytes(Off, 2, 65536), 65536);
    }

    #[test]
    fn records_are_one_escaped_line() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let w = Writer {
            namespace: "ns\x1b[2J".into(),
            filter: LevelFilter::Warn,
            lines: lines.clone(),
        };
        w.log(
            &Record::builder()
                .level(Level::Warn)
                .args(format_args!("bad\nline"))
                .build(),
        );
        w.log(
            &Record::builder()
                .level(Level::Info)
                .args(format_args!("below the level"))
                .build(),
        );
        assert_eq!(
            *lines.lock().unwrap(),
            ["kernel warn: bad\\nline [ns\\u{1b}[2J]"]
        );
    }
}
