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
    let repeat = 1_000_000u32;
    let reps = if s.quick { 5 } else { 11 };
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
        let classes: Vec<Value> = self
            .classes
            .iter()
            .map(|c| {
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
                    },
                    "tc": {
                        "empty_ns": super::stats::json_of(&c.tc_empty),
                        "macdrop_ns": super::stats::json_of(&c.tc_macdrop),
                        "delta_ns": super::stats::json_of(&c.tc_delta()),
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
             repetition; legacy Δ: `macdrop_xdp_legacy` (kernels < 5.18) − empty XDP. The \
             interface is a real veth (its ifindex in the context), configured as a port of a \
             bridge with 1,000 watched ports.\n\n",
            self.repeat, self.reps
        );
        md += "| class | frame | XDP empty | XDP macdrop | XDP Δ | legacy Δ | tc empty | tc macdrop | tc Δ | target Δ |\n";
        md += "|---|---|---|---|---|---|---|---|---|---|\n";
        for c in &self.classes {
            let ok = |d: &[f64]| match (Stat::of(d), c.target_ns()) {
                (Some(s), Some(t)) if s.median > t => " **over**",
                _ => "",
            };
            md += &format!(
                "| {} | {} | {} | {} | {}{} | {} | {} | {} | {}{} | {} |\n",
                c.name,
                c.frame,
                super::stats::show(&c.xdp_empty, 0),
                super::stats::show(&c.xdp_macdrop, 0),
                super::stats::show(&c.xdp_delta(), 0),
                ok(&c.xdp_delta()),
                super::stats::show(&c.xdp_legacy_delta(), 0),
                super::stats::show(&c.tc_empty, 0),
                super::stats::show(&c.tc_macdrop, 0),
                super::stats::show(&c.tc_delta(), 0),
                ok(&c.tc_delta()),
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
