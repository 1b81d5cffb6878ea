//! The fate oracle on this kernel (`macdrop_tests::fate`): seeded random
//! frames through every lab, macdrop's counts against what the kernel did
//! with each frame. Every disagreement fails with the frame in hex.

use macdrop_tests::{
    fate::{LabKind, run_lab, table},
    macdrop::macdrop_bin,
};

/// Frames per lab: at least 5,000 in all over the four labs every kernel
/// here can build.
const FRAMES_PER_LAB: u64 = 1_300;
const PER_BATCH: u64 = 100;

#[test]
fn macdrop_agrees_with_the_kernel_on_every_frame() {
    let seed = std::env::var("MACDROP_FATE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x006d_6163_6472_6f70);
    println!("fate oracle: seed {seed} (MACDROP_FATE_SEED to repeat)");
    let bin = macdrop_bin();
    let mut results = Vec::new();
    for kind in LabKind::ALL {
        let tally = run_lab(&bin, kind, &[], FRAMES_PER_LAB, PER_BATCH, seed)
            .unwrap_or_else(|e| panic!("{e:#}"));
        results.push((kind, tally));
    }
    println!(
        "default hooks (tc on veth and bridges):\n{}",
        table(&results)
    );
    for (kind, t) in &results {
        if let Some(why) = &t.skipped {
            macdrop_tests::skip::part(&format!("fate oracle, lab {kind:?}"), why);
        }
    }
    // XDP on the ports and generic XDP on the bridge, where the bridge
    // cannot see a tag the port's receive path took out, so it depends on
    // the port's verdict: a run of its own.
    let mut xdp = Vec::new();
    for kind in [LabKind::Bridge, LabKind::BridgeMacMissingPromisc] {
        let tally = run_lab(&bin, kind, &["--attach", "xdp"], 500, PER_BATCH, seed)
            .unwrap_or_else(|e| panic!("--attach xdp: {e:#}"));
        xdp.push((kind, tally));
    }
    println!("--attach xdp:\n{}", table(&xdp));
    let ran: u64 = results.iter().map(|(_, t)| t.frames).sum();
    assert!(ran >= 5_000, "only {ran} frames compared");
    // Every lab the kernel can build must have delivered and dropped
    // something: a lab where nothing was delivered tests nothing.
    for (kind, t) in &results {
        if t.skipped.is_none() {
            assert!(
                t.delivered > 0 && t.dropped_otherhost + t.not_passed_up > 0,
                "{kind:?}: {t:?}"
            );
        }
    }
}
