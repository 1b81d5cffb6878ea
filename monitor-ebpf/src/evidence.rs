//! Evidence of mismatched frames for `--pcap`: the first bytes of each
//! frame the classifier called mismatched, through a ring buffer, within a
//! budget userspace sets and a per-CPU rate bound.
//!
//! The programs call [`admitted`] only when a frame's mismatch bits are
//! non-zero, so the common paths never come here, and with capture off
//! (budget 0, a watch without `--pcap`) the mismatch path costs one array
//! load. The copy itself is behind a call ([`inline(never)`]), made only
//! for the frames the budget and the rate bound admit, so its registers
//! and code stay out of the classifier's path.
//!
//! Helpers by hook, for the kernels the matrix loads the object on:
//! `bpf_skb_load_bytes` at tc (any kernel); `bpf_xdp_load_bytes` in the
//! multi-buffer XDP program, which only loads on >= 5.18 where the helper
//! exists. The legacy XDP program (kernels < 5.18) has neither helper: it
//! copies from the packet pointers itself ([`capture_xdp_legacy`]), in at
//! most eight fixed-size copies chosen by a binary decomposition of the
//! length, so the verifier sees constant offsets on every path and no loop
//! (a byte loop whose exits each were a path of their own, with the length
//! searched by pointer comparisons, had exceeded its 1,000,000-instruction
//! limit).

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    },
    macros::map,
    maps::{Array, PerCpuArray, RingBuf, ring_buf::RingBufEntry},
    programs::{TcContext, XdpContext},
};
use monitor_common::{
    EVIDENCE_BURST, EVIDENCE_COST_NS, EVIDENCE_HOOK_TC, EVIDENCE_HOOK_XDP, EVIDENCE_RING_BYTES,
    EVIDENCE_SKIP, EVIDENCE_SNAPLEN, EvidenceCpu, EvidenceCtl, EvidenceRecord,
};

use crate::maps::netns_ino;

/// Records for userspace. Created at `EVIDENCE_RING_BYTES`; userspace
/// shrinks it to a page at load time when capture is off.
#[map(name = "MACDROP_EVIDENCE_RING")]
static RING: RingBuf = RingBuf::with_byte_size(EVIDENCE_RING_BYTES, 0);

/// The budget (`EvidenceCtl`), one entry.
#[map(name = "MACDROP_EVIDENCE_CTL")]
static CTL: Array<EvidenceCtl> = Array::with_max_entries(1, 0);

/// Rate bound and counts, per CPU (no atomics needed).
#[map(name = "MACDROP_EVIDENCE_CPU")]
static CPU: PerCpuArray<EvidenceCpu> = PerCpuArray::with_max_entries(1, 0);

/// Bytes of the 802.1Q/802.1ad tag tc re-inserts.
const VLAN_HLEN: usize = 4;
/// Offset of the tag: after the two MAC addresses.
const VLAN_AT: usize = 12;

/// Whether this mismatched frame may be captured: capture on (budget
/// set, the whole cost of a mismatched frame without `--pcap` is this one
/// array load), within the budget, then within the rate bound (counted
/// when not). Returns the control block and the time for the capture
/// call. Inlined into the programs, so a frame the bound turns away (the
/// frames of a flood) never pays for the call; the clock is read only for
/// frames the bound may admit: after turning one away, the next
/// `EVIDENCE_SKIP` are turned away unread.
///
/// `weight`: how many frames this one stands for. Under a flood the
/// programs come here only with the frames the flow sampler picks (one in
/// `weight`, `flows::sample`), so the other frames of a flood cost nothing
/// here either; they count as turned away by the bound, with the frame
/// that stands for them (captured or not). `captured + rate_limited +
/// ring_full` then equals the mismatched frames within the budget up to
/// the sampler's unfinished group on each CPU (exactly without sampling).
#[inline(always)]
pub fn admitted(weight: u64) -> Option<(*mut EvidenceCtl, u64)> {
    let ctl = CTL.get_ptr_mut(0)?;
    // SAFETY: valid map values for the whole run (userspace writes the
    // control block whole); `cpu` is this CPU's own.
    let (budget, taken) = unsafe { ((*ctl).budget, (*ctl).taken) };
    if taken >= budget {
        return None;
    }
    // SAFETY: this CPU's slot of a per-CPU array, touched by nothing else during the program run.
    let cpu = unsafe { &mut *CPU.get_ptr_mut(0)? };
    if cpu.skip > 0 {
        cpu.skip -= 1;
        cpu.rate_limited += weight;
        return None;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // Token bucket in ns of credit: refill by the time elapsed, capped at
    // the burst; a frame costs EVIDENCE_COST_NS.
    let cap = EVIDENCE_BURST * EVIDENCE_COST_NS;
    let credit = cpu.credit_ns.saturating_add(now.wrapping_sub(cpu.last_ns));
    let credit = if credit > cap { cap } else { credit };
    cpu.last_ns = now;
    if credit < EVIDENCE_COST_NS {
        cpu.credit_ns = credit;
        cpu.rate_limited += weight;
        cpu.skip = EVIDENCE_SKIP;
        return None;
    }
    cpu.credit_ns = credit - EVIDENCE_COST_NS;
    cpu.rate_limited += weight - 1;
    Some((ctl, now))
}

/// Counts a captured frame in the budget: an atomic add whose result is
/// unused, which LLVM emits as `BPF_XADD`, the one atomic every supported
/// kernel has (fetching atomics need 5.12; the BPF target has no
/// `AtomicU64::fetch_add`, hence the intrinsic).
#[inline(always)]
fn take(ctl: *mut EvidenceCtl, cpu: &mut EvidenceCpu) {
    cpu.captured += 1;
    // SAFETY: a valid, 8-byte aligned map value shared between CPUs.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            &raw mut (*ctl).taken,
            1,
        );
    }
}

/// The start of every capture of an admitted frame: this CPU's state and
/// a record reserved in the ring (a full ring counted).
#[inline(always)]
fn begin() -> Option<(&'static mut EvidenceCpu, RingBufEntry<EvidenceRecord>)> {
    // SAFETY: this CPU's slot of a per-CPU array, touched by nothing else during the program run.
    let cpu = unsafe { &mut *CPU.get_ptr_mut(0)? };
    let Some(entry) = RING.reserve::<EvidenceRecord>(0) else {
        cpu.ring_full += 1;
        return None;
    };
    Some((cpu, entry))
}

/// Fills the record's header.
#[inline(always)]
fn header(rec: *mut EvidenceRecord, now: u64, ifindex: u32, orig_len: u32, mismatch: u8, hook: u8) {
    // SAFETY: `rec` points to a reserved record of the right size.
    unsafe {
        (*rec).ktime_ns = now;
        (*rec).netns = netns_ino();
        (*rec).ifindex = ifindex;
        (*rec).orig_len = orig_len;
        (*rec).mismatch = mismatch;
        (*rec).hook = hook;
    }
}

/// `min(len, EVIDENCE_SNAPLEN)` for a helper's length argument, in a form
/// whose bounds the verifier of every supported kernel sees: 1..=128, or
/// None for an empty frame. The value goes through the stack with a
/// volatile read, so LLVM cannot fold the mask that gives the verifier its
/// bounds (it would otherwise compare one register and pass another, which
/// old verifiers do not connect).
#[inline(always)]
fn copy_len(len: u64, max: u64) -> Option<u32> {
    if len == 0 {
        return None;
    }
    let n = if len > max { max } else { len };
    // SAFETY: a local; volatile only so the compiler keeps the bound the verifier needs.
    let n = unsafe { core::ptr::read_volatile(&n) };
    Some((((n - 1) & (EVIDENCE_SNAPLEN as u64 - 1)) + 1) as u32)
}

/// tc: the frame from the skb (linear or not) with `bpf_skb_load_bytes`,
/// the VLAN tag the receive path moved to `skb->vlan_tci` put back after
/// the MAC addresses, as libpcap shows it, so the evidence carries the tag
/// the frame had on the wire.
#[inline(never)]
pub fn capture_tc(ctx: &TcContext, ctl: *mut EvidenceCtl, now: u64, ifindex: u32, mismatch: u8) {
    let Some((cpu, mut entry)) = begin() else {
        return;
    };
    let skb = ctx.skb.skb;
    // SAFETY: context field reads the verifier rewrites.
    let (len, vlan_present, vlan_proto, vlan_tci) = unsafe {
        (
            (*skb).len,
            (*skb).vlan_present,
            (*skb).vlan_proto,
            (*skb).vlan_tci,
        )
    };
    let tag = if vlan_present != 0 { VLAN_HLEN } else { 0 };
    let rec = entry.as_mut_ptr();
    header(
        rec,
        now,
        ifindex,
        len + tag as u32,
        mismatch,
        EVIDENCE_HOOK_TC,
    );
    // With a tag: the frame goes 4 bytes further into `data` (which has
    // room for that), then the MAC addresses move back to the start and
    // the tag goes between them and the rest.
    let copied = match copy_len(len as u64, (EVIDENCE_SNAPLEN - tag) as u64) {
        // SAFETY: `rec` is the reserved record; `tag + n` <= its `data`
        // (`n` <= 128 as the verifier sees it, `data` is 132 long).
        Some(n) => unsafe {
            let data = (*rec).data.as_mut_ptr();
            (*rec).cap_len = n as u16 + tag as u16;
            let ok = bpf_skb_load_bytes(skb.cast(), 0, data.add(tag).cast(), n) == 0;
            if ok && tag != 0 && n as usize >= VLAN_AT {
                for i in 0..VLAN_AT {
                    *data.add(i) = *data.add(i + VLAN_HLEN);
                }
                // vlan_proto is kept in network order, the TCI in host order.
                let proto = (vlan_proto as u16).to_ne_bytes();
                let tci = (vlan_tci as u16).to_be_bytes();
                *data.add(VLAN_AT) = proto[0];
                *data.add(VLAN_AT + 1) = proto[1];
                *data.add(VLAN_AT + 2) = tci[0];
                *data.add(VLAN_AT + 3) = tci[1];
            }
            ok
        },
        None => false,
    };
    finish(entry, copied, ctl, cpu);
}

/// Multi-buffer XDP (>= 5.18): `bpf_xdp_load_bytes` over the frame,
/// fragments included, and its whole length for `orig_len`.
#[inline(never)]
pub fn capture_xdp_frags(
    ctx: &XdpContext,
    ctl: *mut EvidenceCtl,
    now: u64,
    ifindex: u32,
    mismatch: u8,
) {
    let Some((cpu, mut entry)) = begin() else {
        return;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: the program's own context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    header(rec, now, ifindex, len as u32, mismatch, EVIDENCE_HOOK_XDP);
    let copied = match copy_len(len, EVIDENCE_SNAPLEN as u64) {
        // SAFETY: `rec` is the reserved ring buffer record, and `n` <= its
        // data size, so the helper writes inside it.
        Some(n) => unsafe {
            (*rec).cap_len = n as u16;
            bpf_xdp_load_bytes(ctx.ctx, 0, (*rec).data.as_mut_ptr().cast(), n) == 0
        },
        None => false,
    };
    finish(entry, copied, ctl, cpu);
}

/// Legacy XDP (< 5.18, no `xdp.frags`): a frame is one buffer,
/// `data..data_end`, and there is no helper to copy it, so the bytes are
/// copied from the packet pointers (`copy_from_packet`). The original
/// length is the buffer's, as the flows count it: generic XDP hands the
/// program a linearized skb, and native XDP without multi-buffer support
/// only receives frames that fit in one buffer. (`data_end - data`
/// subtracts packet pointers, which the verifier accepts only from a
/// loader with CAP_PERFMON; the flow record already does the same, and on
/// 6.18 none of the object's programs loads without it: its map-value and
/// stack arithmetic is refused too.)
#[inline(never)]
pub fn capture_xdp_legacy(
    ctx: &XdpContext,
    ctl: *mut EvidenceCtl,
    now: u64,
    ifindex: u32,
    mismatch: u8,
) {
    let Some((cpu, mut entry)) = begin() else {
        return;
    };
    let rec = entry.as_mut_ptr();
    let (data, data_end) = (ctx.data(), ctx.data_end());
    header(
        rec,
        now,
        ifindex,
        (data_end - data) as u32,
        mismatch,
        EVIDENCE_HOOK_XDP,
    );
    // SAFETY: `rec` is the reserved record, its `data` longer than the
    // snap length.
    let n = unsafe { copy_from_packet(data, data_end, (*rec).data.as_mut_ptr()) };
    // SAFETY: as above.
    unsafe { (*rec).cap_len = n as u16 };
    finish(entry, n != 0, ctl, cpu);
}

/// Copies `min(data_end - data, EVIDENCE_SNAPLEN)` bytes of the frame to
/// `dst` and returns how many: the whole snap length when the frame has
/// it, else a binary decomposition of the frame's length, 64, 32, .., 1
/// bytes, each copied only if it is inside the frame. Every check compares
/// `data` plus a constant (on each path the verifier explores) with
/// `data_end`, and every copy has a constant size: at most 7 copies on
/// 128 paths of straight-line code, against the verifier's 1M-instruction
/// budget a few tens of thousands.
///
/// SAFETY: `dst` must have room for `EVIDENCE_SNAPLEN` bytes.
#[inline(always)]
unsafe fn copy_from_packet(data: usize, data_end: usize, dst: *mut u8) -> usize {
    const _: () = assert!(EVIDENCE_SNAPLEN == 128);
    // SAFETY: `dst` holds EVIDENCE_SNAPLEN bytes (the caller's contract),
    // and each chunk checks its source range against `data_end`.
    unsafe {
        if chunk::<EVIDENCE_SNAPLEN>(data, data_end, dst, 0) {
            return EVIDENCE_SNAPLEN;
        }
        let mut off = 0;
        off += chunk_len::<64>(data, data_end, dst, off);
        off += chunk_len::<32>(data, data_end, dst, off);
        off += chunk_len::<16>(data, data_end, dst, off);
        off += chunk_len::<8>(data, data_end, dst, off);
        off += chunk_len::<4>(data, data_end, dst, off);
        off += chunk_len::<2>(data, data_end, dst, off);
        off += chunk_len::<1>(data, data_end, dst, off);
        off
    }
}

/// `chunk`, returning the bytes copied (N or 0).
#[inline(always)]
unsafe fn chunk_len<const N: usize>(
    data: usize,
    data_end: usize,
    dst: *mut u8,
    off: usize,
) -> usize {
    // SAFETY: the caller's contract (`dst` holds `off + N` bytes) is this function's.
    if unsafe { chunk::<N>(data, data_end, dst, off) } {
        N
    } else {
        0
    }
}

/// Copies the frame's bytes `off..off + N` to `dst + off` if they are all
/// inside the frame (the check the verifier needs); returns whether.
#[inline(always)]
unsafe fn chunk<const N: usize>(data: usize, data_end: usize, dst: *mut u8, off: usize) -> bool {
    let start = data + off;
    // For one byte LLVM would turn `start + 1 > data_end` into `start >=
    // data_end`, from which verifiers before 6.x conclude one byte less
    // (`pkt' < pkt_end` gives a range of `off - 1` there): the volatile
    // reload keeps the addition.
    let start = if N == 1 {
        // SAFETY: a local.
        unsafe { core::ptr::read_volatile(&start) }
    } else {
        start
    };
    if start + N > data_end {
        return false;
    }
    // SAFETY: `start..start + N` is inside the frame (checked above), and
    // the caller's `dst` has room for `off + N` <= EVIDENCE_SNAPLEN bytes.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, dst.add(off), N) };
    true
}

/// Submits a filled record (and counts it in the budget), or discards one
/// whose copy failed.
#[inline(always)]
fn finish(
    entry: RingBufEntry<EvidenceRecord>,
    copied: bool,
    ctl: *mut EvidenceCtl,
    cpu: &mut EvidenceCpu,
) {
    if copied {
        entry.submit(0);
        take(ctl, cpu);
    } else {
        entry.discard(0);
        cpu.copy_failed += 1;
    }
}
