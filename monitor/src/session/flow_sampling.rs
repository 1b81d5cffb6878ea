//! Flow sampling under a flood: how many of an interface's mismatched
//! frames the kernel records in its flow table (`IfConfig::flow_sample`,
//! the rule in `monitor_common::flow_weight`).
//!
//! Why: a mismatched frame with its flow record costs about twice one
//! counted by class alone (the key built from the headers, a hash, a
//! bucket read and written), and the frames macdrop exists for arrive in
//! floods. Up to `EXACT_RATE` mismatched frames a second on an interface
//! every frame is recorded and the top offenders are exact; above it the
//! kernel records one frame in `2^k` per CPU, counted `2^k` times, with
//! `2^k` the smallest power of two that brings the recorded frames back
//! under the rate. Those flows are then estimates and say so
//! (`Flow::sampled`, JSON `sampled`, the table's `~`), and the interface
//! states its sampling (`Interface::flow_sampling`). The class counters
//! are exact whatever the sampling.
//!
//! Decided once a report from the rates of the interval just read, so a
//! flood is recorded exactly for at most one interval before sampling
//! starts. The sampling falls only once the rate is under a quarter of
//! what it was set for, so a rate near a boundary does not flip it at
//! every report (each change is one map write).

use monitor_common::FLOW_SAMPLE_MAX;

use crate::{classes::Class, model::Interface, topology::Role};

/// Mismatched frames per second up to which an interface's flow records
/// are exact: at about 40 ns each, 0.07 % of a CPU.
pub const EXACT_RATE: f64 = 16_384.0;

/// The sampling mask to set (`IfConfig::flow_sample`, 0 for every frame)
/// given the one in effect (`current`) and `rate`, the interface's
/// mismatched frames per second.
pub fn next_mask(current: u32, rate: f64) -> u32 {
    let current = current + 1;
    let wanted = wanted(rate);
    let lower = rate * 4.0 < EXACT_RATE * f64::from(current);
    if wanted > current || (wanted < current && lower) {
        wanted - 1
    } else {
        current - 1
    }
}

/// The smallest power of two `n` with `rate / n <= EXACT_RATE`, at most
/// `FLOW_SAMPLE_MAX`.
fn wanted(rate: f64) -> u32 {
    // NaN (no rate yet) and anything up to the rate: every frame.
    if rate.is_nan() || rate <= EXACT_RATE {
        return 1;
    }
    let n = (rate / EXACT_RATE).ceil().min(f64::from(FLOW_SAMPLE_MAX)) as u32;
    n.next_power_of_two().min(FLOW_SAMPLE_MAX)
}

/// The interface's mismatched frames per second over the last interval:
/// what reaches its flow records (`monitor_common::mismatch_bits`):
/// foreign unicast off bridge ports, on ports the frames to the host's
/// address or a previous MAC (the larger of the two: frames may be both).
pub fn mismatched_rate(i: &Interface) -> f64 {
    match i.role {
        Role::Port => i
            .rates
            .get(Class::HostIpWrongMac)
            .max(i.rates.get(Class::StaleMac)),
        Role::Bridge | Role::Standalone => i.rates.get(Class::ForeignUnicast),
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::flow_weight;

    use super::*;

    #[test]
    fn exact_up_to_the_rate_then_the_smallest_power_of_two_under_it() {
        assert_eq!(next_mask(0, 0.0), 0);
        assert_eq!(next_mask(0, EXACT_RATE), 0);
        assert_eq!(next_mask(0, EXACT_RATE + 1.0), 1);
        assert_eq!(next_mask(0, 1_000_000.0), 63, "1 Mpps: 1 in 64");
        assert_eq!(next_mask(0, 1e12), FLOW_SAMPLE_MAX - 1, "capped");
        assert_eq!(next_mask(0, f64::NAN), 0);
    }

    #[test]
    fn falls_only_under_a_quarter_of_what_it_was_set_for() {
        // Set for 1 Mpps (1 in 64: up to 64 × EXACT_RATE).
        assert_eq!(next_mask(63, 1_000_000.0), 63);
        assert_eq!(next_mask(63, 600_000.0), 63, "above a quarter: kept");
        assert_eq!(next_mask(63, 200_000.0), 15, "below: 1 in 16");
        assert_eq!(next_mask(63, 0.0), 0, "the flood ended");
        assert_eq!(next_mask(1, 5_000.0), 0);
        assert_eq!(next_mask(1, 10_000.0), 1);
        // Rising is at once.
        assert_eq!(next_mask(15, 2_000_000.0), 127);
    }

    #[test]
    fn the_kernel_rule_records_one_frame_in_n_worth_n() {
        for mask in [0, 1, 63] {
            let recorded: Vec<u64> = (1..=256).filter_map(|c| flow_weight(c, mask)).collect();
            assert_eq!(recorded.len() as u64, 256 / u64::from(mask + 1));
            assert_eq!(recorded.iter().sum::<u64>(), 256, "mask {mask}");
        }
    }
}
