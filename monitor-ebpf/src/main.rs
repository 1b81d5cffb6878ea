//! macdrop's kernel side: classify every received frame by destination MAC
//! and count it per interface. The programs only read the frame and always
//! let it pass.
#![no_std]
#![no_main]
// `atomic_xadd` for the capture budget (`evidence::take`).
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod classify;
mod drops;
mod egress;
mod evidence;
mod flows;
mod klog;
mod maps;
mod tc;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// XDP entry point, attached to each watched interface (driver mode on
/// devices that support it, generic mode on bridges).
///
/// Declared multi-buffer aware (`xdp.frags`) although it only reads the
/// headers: without it, veth caps its peer's MTU while the program is
/// attached (measured on 6.18: maxmtu 65535 -> 3506) and refuses to attach
/// at all when the peer's MTU is larger (jumbo frames). Native XDP on veth
/// still turns TSO off on the peer; tc/TCX leaves offloads alone, which is
/// why the choice of hook is kept in one place (`kernel::attach`).
#[xdp(frags)]
pub fn macdrop_xdp(ctx: XdpContext) -> u32 {
    // SAFETY: the context the kernel passed in; the helper only reads it.
    let frame_len = |ctx: &XdpContext| unsafe { aya_ebpf::helpers::bpf_xdp_get_buff_len(ctx.ctx) };
    if let Some((ifindex, picked)) = xdp_frame(&ctx, frame_len)
        && let Some((ctl, now)) = evidence::admitted(picked.weight)
    {
        evidence::capture_xdp_frags(&ctx, ctl, now, ifindex, picked.mismatch);
    }
    xdp_action::XDP_PASS
}

/// The same program for kernels without multi-buffer XDP (< 5.18), which
/// reject `xdp.frags` programs at load time (and lack the helpers that
/// measure and copy a multi-buffer frame: a frame there is one buffer, so
/// its length is `data_end - data` and the evidence is copied from the
/// packet pointers).
#[xdp]
pub fn macdrop_xdp_legacy(ctx: XdpContext) -> u32 {
    if let Some((ifindex, picked)) = xdp_frame(&ctx, |ctx| (ctx.data_end() - ctx.data()) as u64)
        && let Some((ctl, now)) = evidence::admitted(picked.weight)
    {
        evidence::capture_xdp_legacy(&ctx, ctl, now, ifindex, picked.mismatch);
    }
    xdp_action::XDP_PASS
}

/// Counts one frame at XDP, and records it per flow when mismatched.
/// `frame_len`: the whole frame's length (asked only for those). Returns
/// the interface and a mismatched frame the flood's sampler picks
/// (`flows::sample`).
#[inline(always)]
fn xdp_frame(
    ctx: &XdpContext,
    frame_len: impl FnOnce(&XdpContext) -> u64,
) -> Option<(u32, flows::Picked)> {
    let ifindex = ctx.ingress_ifindex() as u32;
    let frame = |ctx: &XdpContext| (ctx.data(), ctx.data_end());
    let counted = classify::count_frame(ctx, frame, ifindex, 0, classify::Hook::Xdp)?;
    if counted.mismatch == 0 {
        return None;
    }
    let cfg = counted.cfg;
    let picked = flows::sample(&mut counted.counters.flow_sampler, cfg, counted.mismatch)?;
    // Read again rather than held across the classifier's lookups.
    let (data, data_end) = frame(ctx);
    // The length is a helper call on multi-buffer XDP: asked only when a
    // flow is recorded (`flows::record` calls it after its flag test).
    let len = || frame_len(ctx);
    flows::record(cfg, data, data_end, counted.proto_off, None, len, picked);
    Some((ifindex, picked))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Confirmed drops, on the `kfree_skb(skb, location, reason, rx_sk)`
/// tracepoint (`reason` is argument 2, checked against BTF by userspace).
/// The BTF-typed flavour, preferred: the kernel checks the arguments.
#[aya_ebpf::macros::btf_tracepoint(function = "kfree_skb")]
pub fn macdrop_kfree_skb_btf(ctx: aya_ebpf::programs::BtfTracePointContext) -> i32 {
    drops::count_drop::<drops::BtfLoad>(ctx.arg::<u64>(0), ctx.arg::<u64>(2) as u32);
    0
}

/// The same on a raw tracepoint, for when the tp_btf program will not load.
#[aya_ebpf::macros::raw_tracepoint(tracepoint = "kfree_skb")]
pub fn macdrop_kfree_skb_raw(ctx: aya_ebpf::programs::RawTracePointContext) -> u32 {
    drops::count_drop::<drops::ProbeRead>(ctx.arg::<u64>(0), ctx.arg::<u64>(2) as u32);
    0
}

/// tc ingress entry point (TCX on Linux >= 6.6, a clsact qdisc's cls_bpf
/// filter in direct-action mode before): the same classifier as the XDP
/// program, over the skb's linear part (`data..data_end`; the frame is never
/// pulled or changed, so headers beyond the linear part go unread, as in
/// XDP's first buffer), plus the kernel's `pkt_type`.
///
/// The interface is `ingress_ifindex` (`skb->skb_iif`): the core receive
/// path sets it to the receiving device right before tc ingress (and again
/// on every "another round", e.g. after a bridge passes a frame up), so at
/// this hook it names the device the program is attached to.
///
/// Always TC_ACT_UNSPEC (-1): under TCX that is TCX_NEXT, "no verdict, run
/// the next program", and for a cls_bpf filter it means "continue with the
/// next filter". An observer must never decide the verdict: TC_ACT_OK (TCX_PASS)
/// would end the chain early and skip other tools' programs after ours.
#[aya_ebpf::macros::classifier]
pub fn macdrop_tc(ctx: aya_ebpf::programs::TcContext) -> i32 {
    let skb = ctx.skb.skb;
    // SAFETY: the context pointer the kernel passed in; plain field reads
    // the verifier rewrites into sk_buff accesses.
    let (ifindex, vlan_present) = unsafe { ((*skb).ingress_ifindex, (*skb).vlan_present) };
    // The core receive path moves the outermost VLAN tag out of the data
    // into skb->vlan_tci before tc (as NICs with VLAN offload do);
    // `vlan_proto` is in network byte order. Read only for tagged frames:
    // each context field is a load of its own.
    let hook_tag = if vlan_present != 0 {
        // SAFETY: context field reads the verifier rewrites into sk_buff loads.
        let (tci, proto) = unsafe { ((*skb).vlan_tci, (*skb).vlan_proto) };
        monitor_common::vlan_tag_code(u16::from_be(proto as u16), tci as u16)
    } else {
        0
    };
    // The frame's bounds are read by `count_frame` after the interface's
    // configuration is looked up, and again where a flow record needs
    // them, as is every field needed only later.
    let frame = |ctx: &aya_ebpf::programs::TcContext| (ctx.data(), ctx.data_end());
    if let Some(counted) = classify::count_frame(&ctx, frame, ifindex, hook_tag, classify::Hook::Tc)
    {
        // Read here, not with the fields above: a value held across the
        // classifier's map lookups is a stack spill and a reload.
        // SAFETY: a context field read, as above.
        tc::count_pkt_type(&mut counted.counters.frames, unsafe { (*skb).pkt_type });
        let (cfg, mismatch) = (counted.cfg, counted.mismatch);
        if mismatch != 0
            && let Some(picked) = flows::sample(&mut counted.counters.flow_sampler, cfg, mismatch)
        {
            // The flow's VLAN is the outermost tag, as XDP sees it in the
            // data, and its length the frame's on the wire, that tag in.
            // SAFETY: context field reads, as above.
            let (vlan_present, vlan_tci, len) =
                unsafe { ((*skb).vlan_present, (*skb).vlan_tci, (*skb).len) };
            let vlan = (vlan_present != 0).then_some((vlan_tci & 0x0fff) as u16);
            let len = u64::from(len) + if vlan_present != 0 { 4 } else { 0 };
            let (data, data_end) = frame(&ctx);
            flows::record(cfg, data, data_end, counted.proto_off, vlan, || len, picked);
            // Evidence only with --pcap.
            if let Some((ctl, now)) = evidence::admitted(picked.weight) {
                evidence::capture_tc(&ctx, ctl, now, ifindex, mismatch);
            }
        }
    }
    aya_ebpf::bindings::TC_ACT_UNSPEC
}

// ---- benchmark baselines ----------------------------------------------------
//
// Never loaded or attached by macdrop itself: `cargo xtask bench` (through
// `macdrop-bench`) measures macdrop's programs against these, in the same
// object so both go through the same loader and verifier. They do nothing
// but return the same verdict as macdrop's programs.

/// Benchmark baseline: an XDP program that only passes the frame (declared
/// `xdp.frags` like `macdrop_xdp`, so attaching it has the same effect on
/// the device).
#[xdp(frags)]
pub fn bench_empty_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark baseline: a tc classifier that only returns TC_ACT_UNSPEC, as
/// `macdrop_tc` does.
#[aya_ebpf::macros::classifier]
pub fn bench_empty_tc(_ctx: aya_ebpf::programs::TcContext) -> i32 {
    aya_ebpf::bindings::TC_ACT_UNSPEC
}

/// Benchmark baseline: the least any per-interface count of frames by
/// destination must do, and nothing more: the interface's configuration
/// (its slot of `IF_BY_INDEX`, by ifindex, as the classifier finds it),
/// the frame's destination MAC against the configured one, and one of two
/// per-CPU counters. Measured in situ beside macdrop's program, it splits
/// macdrop's cost into what reaching its maps and the frame costs on the
/// running machine (cache and TLB misses the test-run figures, with
/// everything hot, do not show) and what its logic adds.
#[aya_ebpf::macros::classifier]
pub fn bench_floor_tc(ctx: aya_ebpf::programs::TcContext) -> i32 {
    // SAFETY: a context field read the verifier rewrites into an sk_buff load.
    let ifindex = unsafe { (*ctx.skb.skb).ingress_ifindex };
    if let Some(cfg) = maps::IF_BY_INDEX.get(ifindex)
        && let Some(eth) = classify::bytes_at::<8>(ctx.data(), ctx.data_end(), 0)
        && let Some(c) = maps::COUNTERS.get_ptr_mut(cfg.slot)
    {
        // SAFETY: 8 bytes inside the frame (checked), and this CPU's copy
        // of a per-CPU array slot.
        unsafe {
            if classify::mac_word_at(eth.cast()) == cfg.fast_mac {
                (*c).frames.own += 1;
            } else {
                (*c).frames.foreign_unicast += 1;
            }
        }
    }
    aya_ebpf::bindings::TC_ACT_UNSPEC
}
