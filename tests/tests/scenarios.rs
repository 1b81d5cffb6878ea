//! The end-to-end scenarios (`macdrop_tests::scenarios`) on the host's
//! kernel: the very functions `cargo xtask kernel-matrix` runs in each
//! guest (`src/bin/matrix_guest.rs`), one test per scenario and attach mode
//! (macdrop's default, then each of `scenarios::ATTACH_MODES`), in the
//! matrix's order.
//!
//! What a scenario requires comes from what this kernel has, read from its
//! BTF and `IFLA_STATS64` ([`KernelFacts`]), never from its version. What
//! it cannot run here is recorded through `macdrop_tests::skip`: the whole
//! test (a scenario that does not run for this mode, an `--attach` value
//! macdrop refuses) or one part of it (a fate lab this kernel cannot
//! build).

use std::sync::OnceLock;

use macdrop_tests::{
    macdrop::macdrop_bin,
    scenarios::{self, Attach, KernelFacts, Outcome},
    skip,
};

/// What this kernel has, read once for all the tests of this binary.
fn kernel() -> &'static KernelFacts {
    static FACTS: OnceLock<KernelFacts> = OnceLock::new();
    FACTS.get_or_init(|| {
        KernelFacts::read().unwrap_or_else(|e| panic!("cannot read what the kernel has: {e:#}"))
    })
}

/// Runs scenario `name` with `attach`, as the matrix's guest does.
fn run(name: &str, attach: Attach) {
    let scenario = scenarios::by_name(name).unwrap_or_else(|| panic!("no scenario {name:?}"));
    let check = format!("{name}/{}", attach.label());
    let kernel = kernel();
    println!("kernel has: {}", kernel.to_json());
    match (scenario.run)(&macdrop_bin(), &attach, kernel) {
        Ok(Outcome::Ran(observed)) => {
            for note in &observed.notes {
                println!("{note}");
            }
            println!("{check}: ok ({})", observed.summary());
            for (part, why) in &observed.skipped {
                skip::part(&format!("{check}/{part}"), why);
            }
        }
        Ok(Outcome::Skipped(why)) => skip::record(&check, &why),
        Ok(Outcome::Unsupported(why)) => {
            skip::record(&check, &format!("macdrop refused the attach mode: {why}"))
        }
        Err(error) => panic!("{check}: {error:#}"),
    }
}

/// One test per scenario and attach mode; the list must stay that of
/// `scenarios::ALL` (checked by `every_scenario_has_its_tests`).
macro_rules! scenario_tests {
    ($($scenario:literal => $default:ident, $xdp:ident, $tc:ident;)*) => {
        $(
            #[test]
            fn $default() {
                run($scenario, Attach::Default);
            }

            #[test]
            fn $xdp() {
                run($scenario, Attach::Mode("xdp"));
            }

            #[test]
            fn $tc() {
                run($scenario, Attach::Mode("tc"));
            }
        )*

        /// The scenarios these tests name, in order.
        const TESTED: &[&str] = &[$($scenario),*];
    };
}

scenario_tests! {
    "standalone" => standalone_default, standalone_xdp, standalone_tc;
    "bridge" => bridge_default, bridge_xdp, bridge_tc;
    "incident" => incident_default, incident_xdp, incident_tc;
    "jumbo" => jumbo_default, jumbo_xdp, jumbo_tc;
    "pcap" => pcap_default, pcap_xdp, pcap_tc;
    "fate" => fate_default, fate_xdp, fate_tc;
    "sigkill" => sigkill_default, sigkill_xdp, sigkill_tc;
    "vlan_gap" => vlan_gap_default, vlan_gap_xdp, vlan_gap_tc;
}

/// The host runs every scenario the matrix runs, with every attach mode it
/// tries.
#[test]
fn every_scenario_has_its_tests() {
    let all: Vec<&str> = scenarios::ALL.iter().map(|s| s.name).collect();
    assert_eq!(TESTED, all.as_slice());
    assert_eq!(scenarios::ATTACH_MODES, ["xdp", "tc"]);
}
