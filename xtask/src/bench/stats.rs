//! Median, min and max of repeated measurements, and their JSON form.

use serde_json::{Value, json};

/// Summary of one figure measured several times.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stat {
    /// None for no samples. The median of an even count is the mean of the
    /// two middle values.
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: s[0],
            max: s[n - 1],
            n,
        })
    }

    /// `12.3 (11.9–13.0)` with `decimals` digits.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }

    pub fn json(&self, samples: &[f64]) -> Value {
        json!({
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "n": self.n,
            "samples": samples,
        })
    }
}

/// `Stat::of(samples)` as JSON, null without samples.
pub fn json_of(samples: &[f64]) -> Value {
    Stat::of(samples).map_or(Value::Null, |s| s.json(samples))
}

/// `Stat::of(samples).show(decimals)`, or `n/a`.
pub fn show(samples: &[f64], decimals: usize) -> String {
    Stat::of(samples).map_or_else(|| "n/a".to_owned(), |s| s.show(decimals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = Stat::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stat::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Stat::of(&[]), None);
        assert_eq!(Stat::of(&[1.0, 2.0, 4.0]).unwrap().show(1), "2.0 (1.0–4.0)");
    }
}
