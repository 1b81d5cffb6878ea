//! How the text outputs write counters and rates: exact by default, or
//! readable by people with `--human` (like `ip -h`): 1.2K, 3.4M, 5.6G.
//! One place for every text renderer (`watch`'s table, `status`,
//! `diagnose`); JSON and the metrics always carry the exact numbers.

/// The SI prefixes of `--human`, powers of 1000 (counts of frames, not
/// bytes: no 1024). u64::MAX is 18.4E, so E is the last one needed.
const PREFIXES: [&str; 6] = ["K", "M", "G", "T", "P", "E"];

/// Exact numbers, or `--human`'s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Numbers {
    #[default]
    Exact,
    Human,
}

impl Numbers {
    /// `--human` given or not.
    pub fn from_flag(human: bool) -> Self {
        if human { Self::Human } else { Self::Exact }
    }

    /// A counter: `12345`, or `12.3K` under `--human`.
    pub fn count(self, n: u64) -> String {
        match self {
            Self::Exact => n.to_string(),
            // Below 1000 the exact count: no "12.0" for 12 frames.
            Self::Human if n < 1000 => n.to_string(),
            // Exact to the unit up to 2^53, then a tenth of a prefix is
            // far coarser than f64's rounding.
            Self::Human => human(n as f64),
        }
    }

    /// A rate per second: `1234.5/s`, or `1.2K/s` under `--human`.
    pub fn rate(self, per_second: f64) -> String {
        // 999.96 shows as 1.0K/s, not 1000.0/s.
        let tenths = (per_second * 10.0).round() / 10.0;
        match self {
            Self::Human if tenths.abs() >= 1000.0 => format!("{}/s", human(per_second)),
            _ => format!("{per_second:.1}/s"),
        }
    }
}

/// `value` (at least 1000) with one decimal and the largest prefix that
/// keeps it below 1000 once rounded: 1000 -> 1.0K, 999_949 -> 999.9K,
/// 999_950 -> 1.0M (not 1000.0K).
fn human(value: f64) -> String {
    let mut scaled = value;
    for prefix in PREFIXES {
        scaled /= 1000.0;
        let rounded = (scaled * 10.0).round() / 10.0;
        if rounded.abs() < 1000.0 || prefix == PREFIXES[PREFIXES.len() - 1] {
            return format!("{rounded:.1}{prefix}");
        }
    }
    unreachable!("the last prefix returns")
}

#[cfg(test)]
mod tests {
    use super::Numbers::{Exact, Human};

    #[test]
    fn counts_below_1000_stay_exact_and_boundaries_round_up_a_prefix() {
        for (n, want) in [
            (0, "0"),
            (7, "7"),
            (999, "999"),
            (1000, "1.0K"),
            (1049, "1.0K"),
            (1050, "1.1K"),
            (1234, "1.2K"),
            (12_345, "12.3K"),
            (999_949, "999.9K"),
            (999_950, "1.0M"),
            (1_000_000, "1.0M"),
            (3_400_000, "3.4M"),
            (999_999_999, "1.0G"),
            (5_600_000_000, "5.6G"),
            (7_800_000_000_000, "7.8T"),
            (9_100_000_000_000_000, "9.1P"),
            (u64::MAX, "18.4E"),
        ] {
            assert_eq!(Human.count(n), want, "{n}");
        }
    }

    #[test]
    fn exact_is_every_digit() {
        assert_eq!(Exact.count(0), "0");
        assert_eq!(Exact.count(1000), "1000");
        assert_eq!(Exact.count(u64::MAX), "18446744073709551615");
        assert_eq!(Exact.rate(1234.56), "1234.6/s");
        assert_eq!(Exact.rate(999.96), "1000.0/s");
        assert_eq!(Exact.rate(0.0), "0.0/s");
    }

    #[test]
    fn rates_keep_a_tenth_below_1000_and_take_prefixes_above() {
        for (r, want) in [
            (0.0, "0.0/s"),
            (0.3, "0.3/s"),
            (999.9, "999.9/s"),
            (999.94, "999.9/s"),
            (999.96, "1.0K/s"),
            (1000.0, "1.0K/s"),
            (3_456_789.0, "3.5M/s"),
            (5.6e9, "5.6G/s"),
        ] {
            assert_eq!(Human.rate(r), want, "{r}");
        }
    }

    #[test]
    fn the_flag_picks_the_form() {
        assert_eq!(super::Numbers::from_flag(false), Exact);
        assert_eq!(super::Numbers::from_flag(true), Human);
        assert_eq!(super::Numbers::default(), Exact);
    }
}
