//! Part 1: per-frame cost of macdrop's XDP and tc programs against the
//! empty programs, with BPF_PROG_TEST_RUN (the kernel's own duration), in a
//! namespace with a real veth whose ifindex goes into the context.
//! The namespace and the veth are `macdrop_tests::test_run::Device`, as in
//! the kernel-vs-model tests; `macdrop-bench test-run` does the runs
//! (through `macdrop::kernel::test_run`), interleaved (for each
//! repetition, each class: empty XDP, macdrop XDP, macdrop's legacy XDP
//! program for kernels before 5.18, empty tc, macdrop tc; then the
//! egress counter's classes, empty tc and `macdrop_tc_egress`);
//! this side sets up the namespace and turns the samples into figures.

use anyhow::{Context as _, Result};
use macdrop_tests::{
    netns::{BENCH_PREFIX, NetNs},
    test_run::Device,
};
use serde_json::{Value, json};

use super::{Settings, proc, stats::Stat};

/// Per-class results: samples (ns per frame) of each program.
pub struct Class {
    pub name: String,
    pub frame: String,
    /// Runs per measurement (fewer for `captured`).
    pub repeat: u64,
    pub xdp_empty: Vec<f64>,
    pub xdp_macdrop: Vec<f64>,
    /// `macdrop_xdp_legacy` (kernels < 5.18), against the same empty XDP.
    pub xdp_legacy: Vec<f64>,
    pub tc_empty: Vec<f64>,
    pub tc_macdrop: Vec<f64>,
}

impl Class {
    /// Per repetition, macdrop minus the empty program of the same
    /// repetition (measured right before it).
    pub fn xdp_delta(&self) -> Vec<f64> {
        diff(&self.xdp_macdrop, &self.xdp_empty)
    }
    pub fn xdp_legacy_delta(&self) -> Vec<f64> {
        diff(&self.xdp_legacy, &self.xdp_empty)
    }
    pub fn tc_delta(&self) -> Vec<f64> {
        diff(&self.tc_macdrop, &self.tc_empty)
    }
    /// The target for this class: 10 ns over the empty program for frames
    /// decided by the MAC alone, 20 ns for foreign unicast, 30 ns for a
    /// mismatched frame with its flow accounting in a flood (`flood`: flow
    /// records sampled, as macdrop samples them above 16,384 mismatched
    /// frames a second), 40 ns when `--pcap`'s rate bound also turns it
    /// away; none for a mismatched frame recorded exactly (at most 16,384
    /// a second per interface: 0.07 % of a CPU at 40 ns) or captured
    /// (bounded by the rate instead).
    pub fn target_ns(&self) -> Option<f64> {
        match self.name.as_str() {
            "own" | "broadcast" | "multicast" => Some(10.0),
            "flood" => Some(30.0),
            "rate_limited" => Some(40.0),
            "mismatched" | "captured" => None,
            _ => Some(20.0),
        }
    }
}

/// How much slower than the run's fastest measurement of the same empty
/// program a measurement of it may be and still show a quiet core. This
/// machine's speed has two levels (the empty XDP program measured 26-28 ns
/// or 32-36 ns, in stretches of tens of milliseconds: another tenant on the
/// physical core), 1.15 sits between them.
const QUIET_SLACK: f64 = 1.15;
/// Fewer quiet pairs than this: the quiet-core figure is not given.
const MIN_QUIET_PAIRS: usize = 5;

/// The repetitions of each class whose macdrop measurement ran on a quiet
/// core: those where the empty program of the same hook measured right
/// before it and the next empty program measured after it (the other
/// hook's, or the next class's) both ran at the quiet level.
pub struct QuietPairs {
    /// Per class, per repetition.
    pub xdp: Vec<Vec<bool>>,
    pub tc: Vec<Vec<bool>>,
}

impl Results {
    pub fn quiet_pairs(&self) -> QuietPairs {
        // The quiet level of each empty program: its fastest measurement
        // at the full repeat count (`captured`'s few runs are coarser).
        let full = || self.classes.iter().filter(|c| c.repeat == self.repeat);
        let floor = |f: fn(&Class) -> &Vec<f64>| {
            full()
                .flat_map(|c| f(c).iter().copied())
                .fold(f64::INFINITY, f64::min)
        };
        let xdp_quiet = floor(|c| &c.xdp_empty) * QUIET_SLACK;
        let tc_quiet = floor(|c| &c.tc_empty) * QUIET_SLACK;
        let at = |v: &Vec<f64>, i: usize, limit: f64| v.get(i).is_some_and(|x| *x <= limit);
        let n = self.classes.len();
        let mut q = QuietPairs {
            xdp: Vec::new(),
            tc: Vec::new(),
        };
        for (k, c) in self.classes.iter().enumerate() {
            let reps = c.xdp_macdrop.len();
            q.xdp.push(
                (0..reps)
                    .map(|i| at(&c.xdp_empty, i, xdp_quiet) && at(&c.tc_empty, i, tc_quiet))
                    .collect(),
            );
            q.tc.push(
                (0..reps)
                    .map(|i| {
                        // The measurement after this tc one: the next
                        // class's empty XDP (at the full repeat count), or
                        // the first class's in the next repetition (none
                        // after the very last).
                        let next = (k + 1..n).find(|&j| self.classes[j].repeat == self.repeat);
                        let after = match next {
                            Some(j) => Some((&self.classes[j].xdp_empty, i)),
                            None if i + 1 < reps => Some((&self.classes[0].xdp_empty, i + 1)),
                            None => None,
                        };
                        at(&c.tc_empty, i, tc_quiet)
                            && after.is_none_or(|(v, j)| at(v, j, xdp_quiet))
                    })
                    .collect(),
            );
        }
        q
    }
}

/// The samples of `d` whose repetition is quiet; None when fewer than
/// `MIN_QUIET_PAIRS` are.
pub fn quiet_only(d: &[f64], quiet: &[bool]) -> Option<Vec<f64>> {
    let v: Vec<f64> = d
        .iter()
        .zip(quiet)
        .filter(|(_, q)| **q)
        .map(|(d, _)| *d)
        .collect();
    (v.len() >= MIN_QUIET_PAIRS).then_some(v)
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a - b).collect()
}

/// The egress source-MAC counter (`macdrop_tc_egress`) against the empty
/// tc program, per source class (`not_counted`: an interface that is not
/// an uplink).
pub struct EgressClass {
    pub name: String,
    pub tc_empty: Vec<f64>,
    pub tc_egress: Vec<f64>,
}

impl EgressClass {
    /// Per repetition, the counter over the empty program of the same
    /// repetition, as a ratio.
    pub fn ratio(&self) -> Vec<f64> {
        self.tc_egress
            .iter()
            .zip(&self.tc_empty)
            .filter(|(_, e)| **e > 0.0)
            .map(|(a, e)| a / e)
            .collect()
    }
}

pub struct Results {
    pub repeat: u64,
    pub reps: u64,
    pub classes: Vec<Class>,
    pub egress: Vec<EgressClass>,
}

pub fn run(s: &Settings) -> Result<Results> {
    let dev = Device::new(
        NetNs::with_prefix(BENCH_PREFIX)?,
        "bench0",
        [0x02, 0, 0, 0x0a, 0, 0],
        "bench1",
    )?;
    dev.up()?;
    // Many short measurements rather than a few long ones: this machine's
    // speed moves in steps of tens of milliseconds (another tenant on the
    // core), so a median over 41 interleaved pairs is far steadier from run
    // to run than one over 11.
    let repeat = 250_000u32;
    let reps = if s.quick { 5 } else { 41 };
    // Pinned, so the kernel's timer and the program stay on one CPU.
    let out = proc::output(dev.ns().command_on_cpus(
        "1",
        &[
            s.bench_bin.as_os_str(),
            "test-run".as_ref(),
            "--iface".as_ref(),
            "bench0".as_ref(),
            "--repeat".as_ref(),
            repeat.to_string().as_ref(),
            "--reps".as_ref(),
            reps.to_string().as_ref(),
        ],
    ))?;
    parse(&out)
}

fn parse(out: &str) -> Result<Results> {
    let v: Value = serde_json::from_str(out).context("macdrop-bench test-run printed bad JSON")?;
    let samples = |c: &Value, key: &str| -> Vec<f64> {
        c["ns"][key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let classes = v["classes"]
        .as_array()
        .context("no classes")?
        .iter()
        .map(|c| Class {
            name: c["class"].as_str().unwrap_or("?").to_owned(),
            frame: c["frame"].as_str().unwrap_or("").to_owned(),
            repeat: c["repeat"].as_u64().unwrap_or(0),
            xdp_empty: samples(c, "xdp_empty"),
            xdp_macdrop: samples(c, "xdp_macdrop"),
            xdp_legacy: samples(c, "xdp_legacy"),
            tc_empty: samples(c, "tc_empty"),
            tc_macdrop: samples(c, "tc_macdrop"),
        })
        .collect();
    let egress = v["egress"]
        .as_array()
        .context("no egress classes")?
        .iter()
        .map(|c| EgressClass {
            name: c["class"].as_str().unwrap_or("?").to_owned(),
            tc_empty: samples(c, "tc_empty"),
            tc_egress: samples(c, "tc_egress"),
        })
        .collect();
    Ok(Results {
        repeat: v["repeat"].as_u64().unwrap_or(0),
        reps: v["reps"].as_u64().unwrap_or(0),
        classes,
        egress,
    })
}

impl Results {
    pub fn json(&self) -> Value {
        let quiet = self.quiet_pairs();
        let quiet_json = |d: &[f64], q: &[bool]| {
            json!({
                "pairs": q.iter().filter(|q| **q).count(),
                "delta_ns": quiet_only(d, q).map_or(Value::Null, |v| super::stats::json_of(&v)),
            })
        };
        let classes: Vec<Value> = self
            .classes
            .iter()
            .enumerate()
            .map(|(k, c)| {
                json!({
                    "class": c.name,
                    "frame": c.frame,
                    "target_delta_ns": c.target_ns(),
                    "xdp": {
                        "empty_ns": super::stats::json_of(&c.xdp_empty),
                        "macdrop_ns": super::stats::json_of(&c.xdp_macdrop),
                        "delta_ns": super::stats::json_of(&c.xdp_delta()),
                        "legacy_ns": super::stats::json_of(&c.xdp_legacy),
                        "legacy_delta_ns": super::stats::json_of(&c.xdp_legacy_delta()),
                        "quiet": quiet_json(&c.xdp_delta(), &quiet.xdp[k]),
                    },
                    "tc": {
                        "empty_ns": super::stats::json_of(&c.tc_empty),
                        "macdrop_ns": super::stats::json_of(&c.tc_macdrop),
                        "delta_ns": super::stats::json_of(&c.tc_delta()),
                        "quiet": quiet_json(&c.tc_delta(), &quiet.tc[k]),
                    },
                })
            })
            .collect();
        let egress: Vec<Value> = self
            .egress
            .iter()
            .map(|c| {
                json!({
                    "class": c.name,
                    "empty_ns": super::stats::json_of(&c.tc_empty),
                    "egress_ns": super::stats::json_of(&c.tc_egress),
                    "ratio": super::stats::json_of(&c.ratio()),
                })
            })
            .collect();
        json!({
            "repeat": self.repeat,
            "reps": self.reps,
            "quiet_slack": QUIET_SLACK,
            "min_quiet_pairs": MIN_QUIET_PAIRS,
            "classes": classes,
            "egress": egress,
        })
    }

    pub fn markdown(&self) -> String {
        let mut md = format!(
            "BPF_PROG_TEST_RUN, {} runs per frame per measurement, the kernel's duration (integer ns \
             per run; `captured`: 200 runs, each copied into the ring buffer); {} measurements \
             per program and class, interleaved (empty XDP, macdrop XDP, legacy XDP, empty tc, \
             macdrop tc, next class); median (min–max). Δ = macdrop − empty of the same \
             repetition; legacy Δ: `macdrop_xdp_legacy` (kernels < 5.18) − empty XDP. \
             **Quiet Δ** (what the targets are checked against): Δ over the pairs whose \
             macdrop measurement ran on a quiet core, i.e. the empty measurements right before \
             and right after it were within {:.2}× of the run's fastest of the same empty \
             program; then the number of such pairs (below {} the figure is not given and the \
             target counts as missed). The interface is a real veth (its ifindex in the \
             context), configured as a port of a bridge with 1,000 watched ports.\n\n",
            self.repeat, self.reps, QUIET_SLACK, MIN_QUIET_PAIRS
        );
        let quiet = self.quiet_pairs();
        md += "| class | frame | XDP empty | XDP macdrop | XDP Δ | XDP quiet Δ | legacy Δ | tc empty | tc macdrop | tc Δ | tc quiet Δ | target Δ |\n";
        md += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        for (k, c) in self.classes.iter().enumerate() {
            let quiet_cell = |d: &[f64], q: &[bool]| {
                let pairs = q.iter().filter(|q| **q).count();
                let Some(stat) = quiet_only(d, q).and_then(|v| Stat::of(&v)) else {
                    return format!("n/a ({pairs} quiet)");
                };
                let over = match c.target_ns() {
                    Some(t) if stat.median > t => " **over**",
                    _ => "",
                };
                // The median as it is (a half between two integer runs
                // shows as .5, so a miss never reads as the target).
                format!(
                    "{} ({:.0}–{:.0}), {pairs}{over}",
                    stat.median, stat.min, stat.max
                )
            };
            md += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                c.name,
                c.frame,
                super::stats::show(&c.xdp_empty, 0),
                super::stats::show(&c.xdp_macdrop, 0),
                super::stats::show(&c.xdp_delta(), 0),
                quiet_cell(&c.xdp_delta(), &quiet.xdp[k]),
                super::stats::show(&c.xdp_legacy_delta(), 0),
                super::stats::show(&c.tc_empty, 0),
                super::stats::show(&c.tc_macdrop, 0),
                super::stats::show(&c.tc_delta(), 0),
                quiet_cell(&c.tc_delta(), &quiet.tc[k]),
                c.target_ns().map_or("-".to_owned(), |t| format!("≤ {t}"))
            );
        }
        md += "\nThe egress source-MAC counter (`macdrop_tc_egress`, attached on uplinks \
               only; the ingress programs above do not change with it) against the empty tc \
               program, interleaved the same way: per source class on a counted uplink, and \
               `not_counted`, the slot lookup's miss alone (the program's floor: macdrop links \
               it only to uplinks that have a slot). Ratio = egress / empty of the same \
               repetition.\n\n";
        md += "| source class | tc empty | tc egress | ratio |\n|---|---|---|---|\n";
        for c in &self.egress {
            md += &format!(
                "| {} | {} | {} | {} |\n",
                c.name,
                super::stats::show(&c.tc_empty, 0),
                super::stats::show(&c.tc_egress, 0),
                super::stats::show(&c.ratio(), 2),
            );
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, repeat: u64, xdp_empty: &[f64], tc_empty: &[f64]) -> Class {
        let n = xdp_empty.len();
        Class {
            name: name.into(),
            frame: String::new(),
            repeat,
            xdp_empty: xdp_empty.to_vec(),
            xdp_macdrop: vec![50.0; n],
            xdp_legacy: vec![50.0; n],
            tc_empty: tc_empty.to_vec(),
            tc_macdrop: vec![60.0; n],
        }
    }

    #[test]
    fn a_pair_is_quiet_when_the_empty_runs_around_it_are() {
        // Quiet levels: XDP 26 * 1.15 = 29.9, tc 30 * 1.15 = 34.5. The
        // coarse class's slow empty runs neither set the levels nor bracket.
        let r = Results {
            repeat: 1000,
            reps: 3,
            classes: vec![
                class("a", 1000, &[26.0, 35.0, 27.0], &[30.0, 31.0, 40.0]),
                class("coarse", 10, &[50.0, 50.0, 50.0], &[20.0, 50.0, 50.0]),
                class("b", 1000, &[28.0, 27.0, 36.0], &[31.0, 30.0, 31.0]),
            ],
            egress: Vec::new(),
        };
        let q = r.quiet_pairs();
        // XDP: its own class's empty XDP before, empty tc after.
        assert_eq!(q.xdp[0], [true, false, false]);
        assert_eq!(q.xdp[2], [true, true, false]);
        // tc of "a": its empty tc before, then "b"'s empty XDP (skipping
        // the coarse class); tc of the last class: the first class's
        // empty XDP of the next repetition, nothing after the last.
        assert_eq!(q.tc[0], [true, true, false]);
        assert_eq!(q.tc[2], [false, true, true]);
        assert_eq!(quiet_only(&[1.0; 3], &q.tc[0]), None, "fewer than 5 pairs");
        let many = [true; MIN_QUIET_PAIRS];
        assert_eq!(
            quiet_only(&[2.0; MIN_QUIET_PAIRS], &many).map(|v| v.len()),
            Some(5)
        );
    }
}
