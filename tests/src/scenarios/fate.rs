//! `fate`: the fate oracle (`crate::fate`) with macdrop's default hooks.

use std::path::Path;

use anyhow::Result;

use super::{Attach, KernelFacts, Observed, Outcome};
use crate::fate::{LabKind, run_lab, table};

/// Frames per lab (fewer than `tests/tests/fate.rs` sends: a matrix guest
/// is software-emulated).
const FATE_FRAMES: u64 = 150;

/// The fate oracle (`macdrop_tests::fate`), every lab this kernel can
/// build, VLAN devices and VLAN filtering included where it has them:
/// macdrop's counts against the kernel's own verdict on every frame.
pub fn run(bin: &Path, attach: &Attach, _kernel: &KernelFacts) -> Result<Outcome> {
    if let Attach::Mode(_) = attach {
        // Under software emulation one pass fits a guest's time;
        // `tests/tests/fate.rs` runs the oracle with `--attach xdp` too.
        return Ok(Outcome::Skipped(
            "one pass of the fate oracle per kernel, with the default hooks \
             (tests/tests/fate.rs adds --attach xdp)"
                .into(),
        ));
    }
    let args = attach.args();
    let mut results = Vec::new();
    for kind in LabKind::ALL {
        results.push((
            kind,
            run_lab(bin, kind, &args, FATE_FRAMES, 50, 0x006d_6163_6472_6f70)?,
        ));
    }
    // The matrix guests load 8021q, garp and mrp, so every lab should
    // build; one that does not is a skipped check, shown, never passed.
    Ok(Outcome::Ran(Box::new(Observed {
        skipped: results
            .iter()
            .filter_map(|(kind, t)| Some((format!("{kind:?}"), t.skipped.clone()?)))
            .collect(),
        notes: table(&results)
            .lines()
            .map(|line| format!("fate/{}: {line}", attach.label()))
            .collect(),
        ..Observed::default()
    })))
}
