//! `cargo xtask bench`: measures macdrop's cost and writes
//! `target/bench/bench.md` and `bench.json` (`bench-quick.*` with
//! `--quick`). Five parts, each figure a median over repetitions with min
//! and max, every comparison against a baseline measured in the same run,
//! interleaved with it:
//!
//! 1. `test_run`: per-frame cost of the XDP and tc programs against empty
//!    programs (BPF_PROG_TEST_RUN, the kernel's own duration);
//! 2. `e2e`: end-to-end receive rate through veth (and a bridge) with each
//!    hook, empty programs and tcpdump, as ratios to nothing attached;
//! 3. `scale::userspace`: CPU and memory of macdrop watching a bridge with
//!    1,000 ports, and one full counter read;
//! 4. `scale::attach_time`: attaching 1,000 ports, and one new port;
//! 5. `growth`: the scale row: start time, memory (user and kernel) and
//!    file descriptors with a full bridge (1,023 ports), and with 25 to 200
//!    namespaces under `--all-netns`, and how they grow.
//!
//! `--quick` runs each part briefly, with the debug build `cargo xtask
//! test` already made: a smoke test for CI, no thresholds asserted. The
//! full run reports each target as met or not, each row with the build,
//! kernel, CPU and load it was measured under; `--check` makes it exit
//! non-zero when one is missed (a benchmark, not a timed test: CI does
//! not check).
//! Needs root. Its labs are `macdrop_tests::lab`'s, as the tests' are:
//! namespaces named `macdrop-b-*` (`netns::BENCH_PREFIX`), removed
//! afterwards, also when a part fails half-way.
//!
//! `--write-docs` also puts each part's tables into `docs/performance.md`,
//! between that part's markers, headed by the command, the date, the
//! machine and the commit (`docs`).

mod docs;
mod e2e;
mod flows;
mod footprint;
mod growth;
mod proc;
mod scale;
mod stats;
mod test_run;
mod traffic;

use std::{
    path::PathBuf,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::ValueEnum;
use serde_json::{Value, json};

use crate::{cmd::Cmd, cmd::is_root, ui};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Each part briefly (fewer, shorter repetitions, 100 ports) with the
    /// debug build: a smoke test, figures not to be quoted.
    #[arg(long)]
    quick: bool,
    /// Only these parts (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Ports of the bridge for the userspace and attach parts (default
    /// 1,000; 100 with --quick).
    #[arg(long)]
    ports: Option<usize>,
    /// Use the release build even with --quick (the full run always does).
    #[arg(long)]
    release: bool,
    /// Do not build: use the binaries already in the target directory.
    #[arg(long)]
    no_build: bool,
    /// Use `macdrop` and `macdrop-bench` from DIR instead (no build): to
    /// measure a saved build, e.g. of another commit.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Also write each measured part's tables into docs/performance.md,
    /// between that part's markers, with the command, date, machine and
    /// commit (parts not run keep what they had).
    #[arg(long)]
    write_docs: bool,
    /// Exit non-zero when the run misses a target (the full run only:
    /// with --quick nothing is checked).
    #[arg(long)]
    check: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Per-frame cost with BPF_PROG_TEST_RUN.
    TestRun,
    /// End-to-end receive rate per hook.
    E2e,
    /// Userspace CPU, memory and counter read with many ports.
    Userspace,
    /// Attach time for many ports and for a new port.
    Attach,
    /// Start time, memory and fds with a full bridge and with 200
    /// namespaces, and how they grow.
    Scale,
}

impl Part {
    /// The name `--only` takes, which also names the part's markers in
    /// docs/performance.md.
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// One part's results: its section of bench.md and its targets.
struct Section {
    part: Part,
    title: &'static str,
    md: String,
    targets: Vec<Target>,
}

/// What every part needs.
pub struct Settings {
    pub quick: bool,
    pub macdrop_bin: PathBuf,
    pub bench_bin: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    if !is_root() {
        bail!(
            "`cargo xtask bench` needs root (namespaces, BPF programs, tcpdump); run it with sudo"
        );
    }
    for tool in ["ip", "taskset", "tcpdump"] {
        ensure!(
            crate::cmd::find_in_path(tool).is_some(),
            "{tool} is not installed; run `cargo xtask setup`"
        );
    }
    let release = args.release || !args.quick;
    let profile = if release { "release" } else { "debug" };
    if !args.no_build && args.bin_dir.is_none() {
        Cmd::cargo()
            .args(["build", "--package", "monitor", "--bins"])
            .args(release.then_some("--release"))
            .run()?;
    }
    let dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => crate::cmd::target_dir()?.join(profile),
    };
    let s = Settings {
        quick: args.quick,
        macdrop_bin: dir.join("macdrop"),
        bench_bin: dir.join("macdrop-bench"),
    };
    for bin in [&s.macdrop_bin, &s.bench_bin] {
        ensure!(
            bin.is_file(),
            "{} is missing (build it, or drop --no-build)",
            bin.display()
        );
    }
    let ports = args.ports.unwrap_or(if args.quick { 100 } else { 1000 });
    ensure!(
        (1..=scale::MAX_BRIDGE_PORTS).contains(&ports),
        "--ports {ports}: a Linux bridge takes 1 to {} ports; give a count in that range",
        scale::MAX_BRIDGE_PORTS
    );
    let want = |p: Part| args.only.is_empty() || args.only.contains(&p);
    let docs_path = crate::cmd::workspace_root().join("docs/performance.md");
    if args.write_docs {
        let parts: Vec<String> = Part::value_variants()
            .iter()
            .filter(|p| want(**p))
            .map(|p| p.name())
            .collect();
        docs::check(&docs_path, &parts)?;
    }

    if args.check && args.quick {
        println!(
            "xtask: bench: --check checks nothing with --quick: a smoke test's figures are not \
             for judging targets (run without --quick to check)"
        );
    }
    let start = Instant::now();
    let machine = machine(profile, args.quick);
    let mut json = json!({ "machine": machine.clone() });
    let mut sections: Vec<Section> = Vec::new();

    if want(Part::TestRun) {
        ui::phase("bench: per-frame cost (BPF_PROG_TEST_RUN)");
        let r = test_run::run(&s)?;
        json["test_run"] = r.json();
        let mut summary = Vec::new();
        let quiet = r.quiet_pairs();
        for (k, c) in r.classes.iter().enumerate() {
            let Some(target) = c.target_ns() else {
                continue;
            };
            for (hook, d, q) in [
                ("XDP", c.xdp_delta(), &quiet.xdp[k]),
                ("tc", c.tc_delta(), &quiet.tc[k]),
            ] {
                // Too few quiet pairs: "not measured", which is not met.
                let v = test_run::quiet_only(&d, q).map_or(f64::NAN, |v| median(&v));
                summary.push(Target::at_most(
                    format!("{hook} {} over the empty program, quiet core", c.name),
                    v,
                    target,
                    "ns",
                ));
            }
        }
        sections.push(Section {
            part: Part::TestRun,
            title: "Per-frame cost",
            md: r.markdown(),
            targets: summary,
        });
    }
    if want(Part::E2e) {
        ui::phase("bench: end-to-end receive rate");
        let r = e2e::run(&s)?;
        let now = conditions_now(&json);
        json["e2e"] = r.json(&now);
        let mut summary = Vec::new();
        let veth = e2e::scenario(&r, "veth")?;
        for sc in &r.scenarios {
            let flood = sc.name.starts_with("flood");
            let mut t = Target::at_least(
                if flood {
                    format!("{}, `auto`: ratio to nothing attached", sc.name)
                } else {
                    format!(
                        "{}, `auto`, own traffic: ratio to nothing attached",
                        sc.name
                    )
                },
                sc.auto().map_or(f64::NAN, |a| e2e::median(&a.ratios)),
                if flood { 0.95 } else { 0.98 },
                "",
            );
            if let (true, Some(tcpdump)) = (flood, sc.best_tcpdump()) {
                t.measured += &format!(" (tcpdump {tcpdump:.3})");
            }
            // Where it goes: the hook's dispatch, which an empty program
            // on the same hook pays too, beside the figure.
            let empty = sc.empty_on_auto_hook();
            if let Some(empty) = empty {
                t.measured += &format!("; {} alone {:.3}", empty.label, e2e::median(&empty.ratios));
            }
            // The resolution the figure has on this machine (A/A).
            if let Some(n) = stats::Stat::of(&sc.noise()) {
                t.measured += &format!("; A/A noise {:.3}–{:.3}", n.min, n.max);
            }
            summary.push(t);
            // macdrop's own part: `auto` over that empty program.
            if let (Some(empty), Some(own)) = (empty, sc.auto_over_empty_hook()) {
                summary.push(Target::at_least(
                    format!(
                        "{}, `auto` over the {} (macdrop's own part)",
                        sc.name, empty.label
                    ),
                    e2e::median(&own),
                    if flood { 0.95 } else { 0.98 },
                    "",
                ));
            }
        }
        if let Some(auto) = veth.auto() {
            let a = e2e::median(&auto.ratios);
            if let Some(t) = veth.best_tcpdump() {
                summary.push(Target {
                    what: "veth, `auto` ahead of tcpdump (best tcpdump ratio)".into(),
                    measured: format!("{a:.3} vs {t:.3}"),
                    target: "clearly ahead".into(),
                    met: a > t + 0.05,
                    estimate: false,
                });
            }
        }
        for sc in &r.scenarios {
            if let (Some(auto), Some(best)) = (sc.auto(), sc.cheapest_macdrop()) {
                let verdict = sc.auto_verdict().unwrap_or_default();
                summary.push(Target {
                    what: format!("{}: `auto` picks the cheapest hook", sc.name),
                    measured: format!(
                        "auto {} {:.3}, cheapest {} {:.3}",
                        auto.hook.as_deref().unwrap_or("?"),
                        e2e::median(&auto.ratios),
                        best.hook.as_deref().unwrap_or("?"),
                        e2e::median(&best.ratios)
                    ),
                    target: "cheapest".into(),
                    met: !verdict.contains("not confirmed"),
                    estimate: false,
                });
            }
        }
        sections.push(Section {
            part: Part::E2e,
            title: "End-to-end receive rate",
            md: r.markdown(&now),
            targets: summary,
        });
    }
    if want(Part::Userspace) || want(Part::Attach) {
        ui::phase(&format!("bench: bridge with {ports} ports"));
        let lab = scale::Lab::new(ports)?;
        if want(Part::Attach) {
            let r = scale::attach_time(&lab, &s)?;
            json["attach"] = r.json();
            let mut summary = Vec::new();
            let mut all =
                Target::at_most(format!("attach {ports} ports"), median(&r.all), 2.0, "s");
            if let Some((floor, _)) = r.serial_floor() {
                all.measured += &format!(" (kernel floor {} s)", fmt_num(floor));
            }
            summary.push(all);
            summary.push(Target::at_most(
                "attach a new port".into(),
                median(&r.new_port),
                100.0,
                "ms",
            ));
            sections.push(Section {
                part: Part::Attach,
                title: "Attach time",
                md: r.markdown(),
                targets: summary,
            });
        }
        if want(Part::Userspace) {
            let r = scale::userspace(&lab, &s)?;
            json["userspace"] = r.json();
            let mut summary = Vec::new();
            summary.push(Target::at_most(
                format!("CPU watching {} interfaces at 1 s", ports + 1),
                median(&r.cpu),
                1.0,
                "%",
            ));
            summary.push(Target::at_most(
                "peak RSS".into(),
                r.peak_rss_mib,
                30.0,
                "MiB",
            ));
            summary.push(Target::at_most(
                format!("one full counter read ({ports} slots)"),
                median(&r.counter_read_ms),
                2.0,
                "ms",
            ));
            let f = flows::run(&s)?;
            json["userspace"]["flow_flood"] = f.json();
            // The read copies a table of fixed size whatever it holds, and
            // turns its entries into flows: work bounded by the table's
            // entries, not by the flood. Any flood of distinct flows beyond
            // the table's size keeps it full and churning, a 16 times
            // smaller one as much: the read may cost no more, up to the
            // noise of a shared machine.
            summary.push(Target::at_most(
                format!(
                    "flow-table read under {} distinct flows/s over 16 times fewer",
                    flows::RATE
                ),
                f.read_ratio(),
                FLOW_READ_RATIO,
                "",
            ));
            summary.push(Target::at_most(
                format!("CPU under {} distinct flows/s", flows::RATE),
                f.loads.last().map_or(f64::NAN, |l| median(&l.cpu)),
                1.0,
                "%",
            ));
            sections.push(Section {
                part: Part::Userspace,
                title: "Userspace cost",
                md: format!(
                    "{}
{}",
                    r.markdown(),
                    f.markdown()
                ),
                targets: summary,
            });
        }
    }
    if want(Part::Scale) {
        ui::phase("bench: scale (a full bridge; namespaces under --all-netns)");
        let r = growth::run(&s)?;
        json["scale"] = r.json();
        sections.push(Section {
            part: Part::Scale,
            title: "Scale",
            md: r.markdown(),
            targets: scale_targets(&r),
        });
    }

    let elapsed = start.elapsed();
    json["machine"]["load_average_end"] = json!(load_average());
    json["elapsed_s"] = json!(elapsed.as_secs_f64());
    let summary: Vec<&Target> = sections.iter().flat_map(|s| &s.targets).collect();
    let conditions = conditions(&json);
    json["targets"] = Value::Array(summary.iter().map(|t| t.json(&conditions)).collect());
    let machine_line = machine_markdown(&machine, &json);
    let md: String = sections
        .iter()
        .map(|s| format!("## {}\n\n{}\n", s.title, s.md))
        .collect();
    let report = format!(
        "# macdrop benchmark{}\n\n{}\n{}\n{}",
        if args.quick {
            " (--quick: smoke test, not for quoting)"
        } else {
            ""
        },
        machine_line,
        targets_markdown(&summary, &conditions),
        md
    );
    let out = crate::cmd::target_dir()?.join("bench");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let stem = if args.quick { "bench-quick" } else { "bench" };
    let (md_path, json_path) = (
        out.join(format!("{stem}.md")),
        out.join(format!("{stem}.json")),
    );
    std::fs::write(&md_path, &report)?;
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("{report}");
    println!(
        "xtask: bench: done in {}; wrote {} and {}",
        ui::duration(elapsed),
        md_path.display(),
        json_path.display()
    );
    if args.write_docs {
        let path = crate::cmd::workspace_root().join("docs/performance.md");
        docs::write(
            &path,
            &provenance(args.quick, &machine_line),
            &doc_blocks(&sections, &conditions),
        )?;
        println!(
            "xtask: bench: wrote {} part(s) into {}",
            sections.len(),
            path.display()
        );
    }
    if args.check && !args.quick {
        check(&summary)?;
    }
    Ok(())
}

/// The scale row's targets: peak RSS with 200 namespaces (extrapolated,
/// and said so, when the run stopped short of 200: along the higher of the
/// peak's line and the RSS's, since the peak is at least the RSS and a
/// start-up spike can hide the sessions' growth at small counts), and
/// start time and peak RSS growing linearly with namespaces.
fn scale_targets(r: &growth::Results) -> Vec<Target> {
    let (n, max) = growth::NETNS_RSS_TARGET;
    let mut out = Vec::new();
    let peak = r.peak_rss_growth();
    let rss = r.rss_growth();
    match r.peak_rss_at(n) {
        Some(v) => out.push(Target::at_most(
            format!("peak RSS, {n} namespaces under --all-netns"),
            v,
            max,
            "MiB",
        )),
        None => {
            let mut t = Target::at_most(
                format!(
                    "peak RSS, {n} namespaces under --all-netns (extrapolated from {})",
                    peak.map_or("nothing".into(), |g| format!("up to {}", g.largest))
                ),
                match (peak, rss) {
                    (Some(p), Some(r)) => p.at(n).max(r.at(n)),
                    _ => f64::NAN,
                },
                max,
                "MiB",
            );
            t.estimate = true;
            out.push(t);
        }
    }
    for (what, g) in [("start time", r.load_growth()), ("peak RSS", peak)] {
        out.push(Target::at_most(
            format!(
                "{what} linear in namespaces: the largest count over the line through the \
                 smaller ones"
            ),
            g.map_or(f64::NAN, |g| g.ratio),
            growth::LINEAR_TOLERANCE,
            "",
        ));
    }
    out
}

/// `--check`: an error naming every target the run missed (a target that
/// could not be measured counts as missed).
fn check(targets: &[&Target]) -> Result<()> {
    let missed: Vec<String> = targets
        .iter()
        .filter(|t| !t.met)
        .map(|t| format!("{}: {} (wanted {})", t.what, t.measured, t.target))
        .collect();
    ensure!(
        missed.is_empty(),
        "bench --check: {} of {} target(s) missed: {}",
        missed.len(),
        targets.len(),
        missed.join("; ")
    );
    println!("xtask: bench --check: all {} target(s) met", targets.len());
    Ok(())
}

/// What every row was measured under, stated with each: the build, the
/// kernel, the CPU and the load (at the start and the end of the run).
fn conditions(all: &Value) -> String {
    let m = &all["machine"];
    format!(
        "{} build, Linux {}, {}× {}, load {} → {}",
        m["profile"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        m["cpus"],
        m["cpu"].as_str().unwrap_or("?"),
        first_field(m["load_average_start"].as_str()),
        first_field(m["load_average_end"].as_str()),
    )
}

/// `conditions` as of now, for rows reported with a part: the load at
/// the part's end instead of the run's.
fn conditions_now(all: &Value) -> String {
    let mut m = all.clone();
    m["machine"]["load_average_end"] = json!(load_average());
    conditions(&m)
}

/// The 1-minute load of a load-average line.
fn first_field(s: Option<&str>) -> &str {
    s.and_then(|s| s.split_whitespace().next()).unwrap_or("?")
}

/// What heads every generated block of docs/performance.md: the command
/// as it was run, then bench.md's machine line (date, CPUs, kernel,
/// commit, build, load).
fn provenance(quick: bool, machine_line: &str) -> String {
    let command = crate::cmd::Cmd::new("cargo")
        .arg("xtask")
        .args(std::env::args_os().skip(1))
        .display();
    let mut out = format!("Measured by `{command}` on {}", machine_line.trim());
    if quick {
        out += "\n\n**`--quick`: a smoke test (short runs, debug build), not for quoting.**";
    }
    out + "\n"
}

/// Each part's tables for docs/performance.md: its targets, then its
/// section of bench.md (the heading is the document's).
fn doc_blocks(sections: &[Section], conditions: &str) -> Vec<docs::Block> {
    sections
        .iter()
        .map(|s| {
            let targets: Vec<&Target> = s.targets.iter().collect();
            let targets =
                targets_markdown(&targets, conditions).replacen("## Targets", "Targets:", 1);
            docs::Block {
                part: s.part.name(),
                body: format!("{targets}\n{}", s.md),
            }
        })
        .collect()
}

/// The most a read of the flow table under a flood of distinct flows may
/// take over one under a 16 times smaller flood (see where it is used): 1
/// plus the noise.
const FLOW_READ_RATIO: f64 = 1.25;

fn median(v: &[f64]) -> f64 {
    stats::Stat::of(v).map_or(f64::NAN, |s| s.median)
}

/// One target of the issue and whether the run met it. A figure the run
/// could not measure (NaN) misses its target.
struct Target {
    what: String,
    measured: String,
    target: String,
    met: bool,
    /// The figure is derived or extrapolated rather than measured as it
    /// stands (said beside it).
    estimate: bool,
}

impl Target {
    fn at_most(what: String, v: f64, max: f64, unit: &str) -> Self {
        Self {
            what,
            measured: measured_against(v, max, unit),
            target: format!("≤ {} {unit}", fmt_num(max)).trim().to_owned(),
            met: v <= max,
            estimate: false,
        }
    }

    fn at_least(what: String, v: f64, min: f64, unit: &str) -> Self {
        Self {
            what,
            measured: measured_against(v, min, unit),
            target: format!("≥ {} {unit}", fmt_num(min)).trim().to_owned(),
            met: v >= min,
            estimate: false,
        }
    }

    fn json(&self, conditions: &str) -> Value {
        json!({
            "target": self.what,
            "measured": self.measured,
            "wanted": self.target,
            "met": self.met,
            "estimate": self.estimate,
            "conditions": conditions,
        })
    }
}

fn measured(v: f64, unit: &str) -> String {
    if v.is_nan() {
        "not measured".into()
    } else {
        format!("{} {unit}", fmt_num(v)).trim().to_owned()
    }
}

/// `measured`, with more decimals where the usual ones would show `v`
/// equal to the target's `limit` while it is not (0.9497 against 0.95 is
/// a miss, and must not read "0.95").
fn measured_against(v: f64, limit: f64, unit: &str) -> String {
    if !v.is_nan() && v != limit && fmt_num(v) == fmt_num(limit) {
        return format!("{v:.5} {unit}").trim().to_owned();
    }
    measured(v, unit)
}

fn fmt_num(v: f64) -> String {
    let decimals = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn targets_markdown(targets: &[&Target], conditions: &str) -> String {
    if targets.is_empty() {
        return String::new();
    }
    let mut md = "## Targets\n\n| target | measured | wanted | met | measured under |\n\
                  |---|---|---|---|---|\n"
        .to_owned();
    for t in targets {
        md += &format!(
            "| {} | {}{} | {} | {} | {conditions} |\n",
            t.what,
            t.measured,
            if t.estimate { " (estimate)" } else { "" },
            t.target,
            if t.met { "yes" } else { "**no**" }
        );
    }
    md
}

/// What the figures were measured on.
fn machine(profile: &str, quick: bool) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let commit = crate::cmd::probe("git", &["rev-parse", "--short", "HEAD"])
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let dirty = crate::cmd::probe("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.trim().is_empty());
    let date = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "cpu": cpu,
        "cpus": cpus,
        "kernel": kernel,
        "commit": commit,
        "dirty": dirty,
        "profile": profile,
        "quick": quick,
        "unix_time": date,
        "load_average_start": load_average(),
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine_markdown(m: &Value, all: &Value) -> String {
    let date = crate::cmd::probe(
        "date",
        &[
            "-u",
            "-d",
            &format!("@{}", m["unix_time"].as_u64().unwrap_or(0)),
            "+%Y-%m-%d %H:%M UTC",
        ],
    )
    .map(|s| s.trim().to_owned())
    .unwrap_or_default();
    format!(
        "{date}: {} CPU(s), {}, Linux {}; macdrop {}{} ({} build); load average {} at the \
         start, {} at the end (other work on the machine shows as spread between min and max); \
         {:.0} s.\n",
        m["cpus"],
        m["cpu"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        m["commit"].as_str().unwrap_or("?"),
        if m["dirty"] == true {
            " with local changes"
        } else {
            ""
        },
        m["profile"].as_str().unwrap_or("?"),
        m["load_average_start"].as_str().unwrap_or("?"),
        all["machine"]["load_average_end"].as_str().unwrap_or("?"),
        all["elapsed_s"].as_f64().unwrap_or(0.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_naturally() {
        let t = Target::at_most("x".into(), 7.0, 10.0, "ns");
        assert_eq!(
            (t.measured.as_str(), t.target.as_str(), t.met),
            ("7 ns", "≤ 10 ns", true)
        );
        let t = Target::at_least("y".into(), 0.9312, 0.95, "");
        assert_eq!((t.measured.as_str(), t.met), ("0.931", false));
        // A miss never reads as the target itself.
        let t = Target::at_least("v".into(), 0.94968, 0.95, "");
        assert_eq!((t.measured.as_str(), t.met), ("0.94968", false));
        let t = Target::at_least("u".into(), 0.95, 0.95, "");
        assert_eq!((t.measured.as_str(), t.met), ("0.95", true));
        let t = Target::at_least("z".into(), f64::NAN, 0.95, "");
        assert_eq!(
            (t.measured.as_str(), t.met),
            ("not measured", false),
            "a figure not measured misses its target"
        );
        let t = Target::at_most("w".into(), 31.0, 30.0, "ns");
        assert!(check(&[&t]).is_err(), "--check fails on a missed target");
        let t = Target::at_most("w".into(), 29.0, 30.0, "ns");
        assert!(check(&[&t]).is_ok());
        assert_eq!(fmt_num(1234.5), "1234");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(10.0), "10");
    }
}
