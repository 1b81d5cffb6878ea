//! Reads a range of a per-CPU array in BPF_MAP_LOOKUP_BATCH calls, which
//! aya 0.14 lacks: one syscall for many entries instead of one per entry,
//! so a report's reads cost a bounded few syscalls whatever the number of
//! interfaces or flows. Kernels without batch operations on arrays
//! (before 5.6) refuse them; the readers then fall back to one lookup per
//! entry ([`unsupported`]).

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
};

use anyhow::Context as _;
use aya::{
    Ebpf, Pod,
    maps::{IterableMap as _, MapData, PerCpuArray, PerCpuValues},
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

/// Per-CPU copies read per batch call by [`SlotArray::read_each`]: a
/// bounded scratch buffer whatever the number of slots, a few calls per
/// report.
const BATCH_COPIES: usize = 256;

/// A per-CPU array indexed by counter slot (one entry per watched
/// interface), read whole in batch calls, entry by entry on kernels
/// without them.
pub struct SlotArray<T: Pod + Default> {
    map: PerCpuArray<MapData, T>,
    /// Possible CPUs: the copies of each slot.
    cpus: usize,
    support: Support,
}

impl<T: Pod + Default> SlotArray<T> {
    /// Takes the array `name` out of the object.
    pub fn take(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<Self> {
        let map = ebpf
            .take_map(name)
            .with_context(|| format!("map {name} missing from the eBPF object"))?;
        Ok(Self {
            map: PerCpuArray::try_from(map)
                .with_context(|| format!("map {name} has the wrong type"))?,
            cpus: possible_cpus()?,
            support: Support::default(),
        })
    }

    /// Reads entry by entry from now on, as on kernels without batch
    /// lookups on arrays (before 5.6): a switch for tests, so that path
    /// is checked against the batch one on a kernel that has both.
    pub fn without_batch(&mut self) {
        self.support.off();
    }

    /// Every CPU's copy of `slot`.
    pub fn read(&self, slot: u32) -> anyhow::Result<PerCpuValues<T>> {
        self.map
            .get(&slot, 0)
            .with_context(|| format!("cannot read slot {slot} of a per-interface map"))
    }

    /// Calls `each` with every slot below `end` and its CPUs' copies, in
    /// slot order.
    pub fn read_each(&mut self, end: u32, mut each: impl FnMut(u32, &[T])) -> anyhow::Result<()> {
        let chunk = (BATCH_COPIES / self.cpus).max(1) as u32;
        let mut copies = Vec::new();
        let mut first = 0;
        while first < end {
            let n = chunk.min(end - first);
            copies.resize(n as usize * self.cpus, T::default());
            let fd = self.map.map().fd().as_fd();
            let read = self
                .support
                .read(|| lookup_per_cpu(fd, first, n, &mut copies))
                .context("cannot read a per-interface map")?;
            if !read {
                break;
            }
            for (i, per_cpu) in copies.chunks(self.cpus).enumerate() {
                each(first + i as u32, per_cpu);
            }
            first += n;
        }
        // Without batch lookups: the rest slot by slot.
        for slot in first..end {
            each(slot, &self.read(slot)?);
        }
        Ok(())
    }

    /// Zeroes a slot before it is given to a new interface.
    pub fn clear(&mut self, slot: u32) -> anyhow::Result<()> {
        let zeros = PerCpuValues::try_from(vec![T::default(); self.cpus])
            .context("building zeroed per-CPU values")?;
        self.map
            .set(slot, zeros, 0)
            .with_context(|| format!("cannot clear slot {slot} of a per-interface map"))
    }
}
