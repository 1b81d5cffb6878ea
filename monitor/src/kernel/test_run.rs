//! One BPF_PROG_TEST_RUN of macdrop's XDP or tc program on one frame: the
//! context each hook needs, the run, and what came out. The kernel-vs-model
//! agreement tests (`tests/tests/test_run`) and `macdrop-bench test-run`
//! both run frames through here, so the frames the benchmark times take the
//! path whose counts the tests check.

use std::time::Duration;

use aya::programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp};

/// XDP_PASS: the verdict macdrop's XDP programs return for every frame.
pub const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1, TCX_NEXT under TCX), as test_run reports it: the
/// verdict `macdrop_tc` returns for every frame.
pub const TC_ACT_UNSPEC: u32 = -1i32 as u32;

/// Room in the output buffer past the input frame: the programs never grow
/// a frame, so any excess shows as a frame that came out altered.
const OUT_SLACK: usize = 256;

/// What one test run (of `repeat` runs) returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The program's return value: its verdict.
    pub verdict: u32,
    /// The frame as it came out of the (last) run.
    pub frame: Vec<u8>,
    /// The kernel's own average duration per run.
    pub duration: Duration,
}

/// `struct xdp_md` for a frame received on `ingress_ifindex`: data,
/// data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
/// The kernel wants `data_end` equal to the frame's length, except that
/// since Linux 6.18 a shorter one sets the linear length the program sees
/// (how frames shorter than an Ethernet header, which test_run refuses as
/// buffers, are made).
pub fn xdp_context(data_end: usize, ingress_ifindex: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(data_end as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx
}

/// `struct __sk_buff` up to `ifindex`: len, pkt_type, mark, queue_mapping,
/// protocol, vlan_present, vlan_tci, vlan_proto, priority, ingress_ifindex
/// (36), ifindex (40). The kernel fills what it computes and rejects a
/// context that sets anything else. It sets `pkt_type` with
/// `eth_type_trans` against the device `ifindex` names, looked up in the
/// calling thread's namespace; the classifier keys on `ingress_ifindex`,
/// which is taken as given.
pub fn skb_context(ingress_ifindex: u32, ifindex: u32) -> [u8; 44] {
    let mut ctx = [0u8; 44];
    ctx[36..40].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// Runs the loaded XDP program `prog` `repeat` times on `frame`, received
/// on `ingress_ifindex`, the program seeing `data_end` bytes of it
/// ([`xdp_context`]).
pub fn run_xdp(
    prog: &Xdp,
    frame: &[u8],
    data_end: usize,
    ingress_ifindex: u32,
    repeat: u32,
) -> Result<Outcome, ProgramError> {
    run(prog, frame, &xdp_context(data_end, ingress_ifindex), repeat)
}

/// Runs the loaded tc program `prog` `repeat` times on `frame` as an skb
/// received on `ingress_ifindex` by the device `ifindex` of the calling
/// thread's namespace ([`skb_context`]).
pub fn run_tc(
    prog: &SchedClassifier,
    frame: &[u8],
    ingress_ifindex: u32,
    ifindex: u32,
    repeat: u32,
) -> Result<Outcome, ProgramError> {
    run(prog, frame, &skb_context(ingress_ifindex, ifindex), repeat)
}

/// One BPF_PROG_TEST_RUN of `prog` on `frame` with the context `ctx`.
fn run<P>(prog: &P, frame: &[u8], ctx: &[u8], repeat: u32) -> Result<Outcome, ProgramError>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut out = vec![0u8; frame.len() + OUT_SLACK];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    opts.ctx_in = Some(ctx);
    opts.repeat = repeat;
    let res = prog.test_run(opts)?;
    out.truncate(res.data_size_out as usize);
    Ok(Outcome {
        verdict: res.return_value,
        frame: out,
        duration: res.duration,
    })
}
