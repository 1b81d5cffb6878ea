//! Reads a range of a per-CPU array in BPF_MAP_LOOKUP_BATCH calls, which
//! aya 0.14 lacks: one syscall for many entries instead of one per entry,
//! so a report's reads cost a bounded few syscalls whatever the number of
//! interfaces or flows. Kernels without batch operations on arrays
//! (before 5.6) refuse them; the readers then fall back to one lookup per
//! entry ([`unsupported`]).

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

/// The kernel's ENOTSUPP (524), which libc does not name.
const ENOTSUPP: i32 = 524;
/// BPF_MAP_LOOKUP_BATCH (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The possible CPUs: the number of copies of each entry of a per-CPU map.
pub fn possible_cpus() -> anyhow::Result<usize> {
    aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))
}

/// Whether a map takes batch lookups: learnt from the first one, so that
/// only a first failure of the kinds old kernels give (`unsupported`)
/// turns them off, and a later one is a failed read.
#[derive(Default)]
pub struct Support(Option<bool>);

impl Support {
    /// Entry by entry from now on (tests check that path this way).
    pub fn off(&mut self) {
        self.0 = Some(false);
    }

    /// Runs the batch read `read` unless batch lookups are known to be
    /// missing: Ok(true) if it read, Ok(false) if the caller must read
    /// entry by entry.
    pub fn read(&mut self, read: impl FnOnce() -> io::Result<()>) -> io::Result<bool> {
        if self.0 == Some(false) {
            return Ok(false);
        }
        match read() {
            Ok(()) => {
                self.0 = Some(true);
                Ok(true)
            }
            Err(e) if self.0.is_none() && unsupported(&e) => {
                self.0 = Some(false);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether `e`, from a first batch lookup, means the kernel has no batch
/// lookups on this map (rather than a failed read).
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
    )
}

/// Entries `first .. first + count` of the per-CPU array `fd` into `out`,
/// entry `first + i`'s copy of CPU `c` at `out[i * cpus + c]` (`cpus`:
/// `out.len() / count`, the possible CPUs). `T` must be the map's value
/// type, whose size the kernel rounds up to 8: asserted equal.
pub fn lookup_per_cpu<T: Copy>(
    fd: BorrowedFd<'_>,
    first: u32,
    count: u32,
    out: &mut [T],
) -> io::Result<()> {
    const { assert!(size_of::<T>().is_multiple_of(8)) };
    let total = count as usize;
    if total == 0 {
        return Ok(());
    }
    assert!(
        out.len().is_multiple_of(total),
        "room for every CPU's copy of each entry"
    );
    let per_entry = out.len() / total;
    let mut keys = vec![0u32; total];
    let mut done = 0;
    // The kernel's cursor is the last key read (for arrays, an index): a
    // call reads from the entry after `in_batch`, or from 0 without one.
    let (mut cursor, mut next) = (first.wrapping_sub(1), 0u32);
    while done < total {
        let mut attr = BatchAttr {
            in_batch: if cursor == u32::MAX {
                0
            } else {
                &raw mut cursor as u64
            },
            out_batch: &raw mut next as u64,
            keys: keys[done..].as_mut_ptr() as u64,
            values: out[done * per_entry..].as_mut_ptr() as u64,
            count: (total - done) as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: `attr` is a valid bpf_attr prefix for
        // BPF_MAP_LOOKUP_BATCH; its pointers are to buffers with room for
        // `count` keys and `count` per-CPU values (`per_entry` copies of
        // `T`, the map's value size), which outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        done += attr.count as usize;
        match err {
            None => {}
            // The end of the array: everything there was copied.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Some(e) => return Err(e),
        }
        if attr.count == 0 {
            break;
        }
        cursor = next;
    }
    if done < total {
        return Err(io::Error::other(format!(
            "the kernel returned {done} of {total} entries from {first} on"
        )));
    }
    Ok(())
}
