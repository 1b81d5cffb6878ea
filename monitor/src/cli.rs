//! Command-line interface. Values are validated here so that every bad
//! flag is a usage error (exit 2) with a one-line message.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::Failure;

pub use crate::kernel::{attach::AttachMode, klog::KernelLog};

pub use crate::ifname::IFNAME_MAX;

/// Where `--metrics` without a value serves: loopback only.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9815";

#[derive(Debug, Parser)]
#[command(
    name = "macdrop",
    version,
    about = "Shows the frames a Linux host silently drops because their destination MAC \
             does not match the interface that received them.",
    after_help = "Exit codes: 0 success, 1 unexpected failure, 2 usage error, \
                  3 environment (privileges, unknown interface, kernel support)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Read the command's settings from this TOML file (a [watch],
    /// [status], [top] or [diagnose] table, keys named like the flags);
    /// flags on the command line override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Show the kernel programs' records of rare events (a frame on an
    /// interface without configuration) on stderr down to this level;
    /// off loads the programs without them.
    #[arg(long, global = true, value_enum, default_value_t = KernelLog::Warn)]
    pub kernel_log: KernelLog,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to bridges/interfaces and report frame classes per interface
    /// every interval until --duration ends or SIGINT/SIGTERM.
    Watch(WatchArgs),
    /// One-shot check of the namespace's interfaces and bridges (no eBPF):
    /// roles, MACs, promiscuous mode, otherhost counters, and findings such
    /// as a bridge whose own MAC is missing from its forwarding database.
    Status(StatusArgs),
    /// Full-screen live view: per interface, totals and rates of each frame
    /// class, confirmed drops, promiscuous state, a sparkline of the
    /// mismatch rate, and the latest events. Keys: q quit, s sort, / filter.
    Top(TopArgs),
    /// Watch for a short window (default 10 s), then print findings ranked
    /// by severity, each with its evidence and a remedy.
    Diagnose(DiagnoseArgs),
    /// Print a shell completion script (e.g. `macdrop completions bash >
    /// /etc/bash_completion.d/macdrop`).
    Completions(CompletionsArgs),
    /// Print the man page of macdrop, or of one command, as roff (for
    /// packages: `macdrop man watch > macdrop-watch.1`).
    #[command(hide = true)]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A command (watch, status, top, diagnose, completions); none for
    /// macdrop(1) itself.
    pub command: Option<String>,
}

/// What to watch: the selection flags `top` and `diagnose` share (the same
/// as `watch`'s).
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Watch this bridge and all its ports (repeatable).
    #[arg(long = "bridge", value_name = "NAME", value_parser = parse_ifname)]
    pub bridges: Vec<String>,

    /// Watch this single interface (repeatable).
    #[arg(long = "iface", value_name = "NAME", value_parser = parse_ifname)]
    pub ifaces: Vec<String>,

    /// Hook to attach: auto picks the cheapest per device (tc on veth and
    /// bridges, native XDP on NICs that have it).
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,

    /// Watch inside this network namespace (a name under /run/netns or
    /// /run/docker/netns, or a path like /proc/PID/ns/net); repeatable.
    #[arg(long, value_name = "NAME|PATH", conflicts_with = "all_netns")]
    pub netns: Vec<String>,

    /// Watch every namespace under /run/netns and /run/docker/netns (and
    /// this one) that has a bridge (or the --iface names).
    #[arg(long)]
    pub all_netns: bool,

    /// Keep the top N flows of mismatched frames per interface (source
    /// MAC, destination MAC, VLAN, destination IP); 0 turns flow recording
    /// off in the kernel.
    #[arg(long, value_name = "N", default_value = "10", value_parser = parse_top_flows)]
    pub top_flows: usize,

    /// Keep an interface that went away, with its final counts, this long
    /// (e.g. 10m, 90s, 1h30m, or seconds), then drop it from the reports
    /// and the metrics.
    #[arg(long, value_name = "DURATION", default_value = "10m",
          value_parser = crate::retention::parse)]
    pub retention: Duration,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub select: SelectionArgs,

    /// Seconds between screen updates (0.1 to 3600, fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
}

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    pub select: SelectionArgs,

    /// How long to watch before concluding, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_duration)]
    pub duration: Duration,

    /// Output format (json: the same findings with stable ids).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Counters and rates readable by people in the table (1.2K, 3.4M,
    /// 5.6G: powers of 1000), like `ip -h`; JSON and metrics stay exact.
    #[arg(long)]
    pub human: bool,

    /// Exit with code 4 when a finding of this severity or worse exists
    /// (default: exit 0 whatever is found).
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<FailOn>,

    #[command(flatten)]
    pub pcap: PcapArgs,
}

/// `--pcap FILE` and `--pcap-count N`, shared by `watch` and `diagnose`.
#[derive(Debug, Args)]
pub struct PcapArgs {
    /// Write the first mismatched frames (headers, 128 bytes) to this new
    /// pcapng file (mode 0600, never through a symbolic link), as the
    /// kernel captured them (no promiscuous mode); - writes them to stdout
    /// and the reports to stderr.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,

    /// Let --pcap replace an existing regular file (still never through a
    /// symbolic link).
    #[arg(long)]
    pub pcap_overwrite: bool,

    /// How many mismatched frames --pcap writes at most [default: 100].
    // Not `requires = "pcap"`: `--config` checks each key alone, so the
    // pairing is checked in `plan`.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub pcap_count: Option<u64>,
}

impl PcapArgs {
    /// The capture asked for, if any; `--pcap-count` or `--pcap-overwrite`
    /// alone is a usage error.
    pub fn plan(&self) -> Result<Option<crate::evidence::EvidencePlan>, Failure> {
        let alone = match (self.pcap_count, self.pcap_overwrite) {
            (Some(_), _) => Some("--pcap-count"),
            (None, true) => Some("--pcap-overwrite"),
            (None, false) => None,
        };
        match (&self.pcap, alone) {
            (None, Some(flag)) => Err(Failure::usage(format!(
                "{flag} needs --pcap FILE: name the file to write the frames to"
            ))),
            (None, None) => Ok(None),
            (Some(path), _) => Ok(Some(crate::evidence::EvidencePlan {
                target: crate::evidence::Target {
                    path: path.clone(),
                    overwrite: self.pcap_overwrite,
                },
                count: self.pcap_count.unwrap_or(crate::evidence::DEFAULT_COUNT),
            })),
        }
    }
}

/// `--fail-on`: the least severe finding that makes `diagnose` exit 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Info,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Interfaces to show (default: all).
    #[arg(value_name = "IFACE", value_parser = parse_ifname)]
    pub ifaces: Vec<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Counters and rates readable by people in the table (1.2K, 3.4M,
    /// 5.6G: powers of 1000), like `ip -h`; JSON and metrics stay exact.
    #[arg(long)]
    pub human: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// What to watch (the same flags as `top` and `diagnose`).
    #[command(flatten)]
    pub select: SelectionArgs,

    /// Seconds between reports (0.1 to 3600, fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,

    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Counters and rates readable by people in the table (1.2K, 3.4M,
    /// 5.6G: powers of 1000), like `ip -h`; JSON and metrics stay exact.
    #[arg(long)]
    pub human: bool,

    /// Serve Prometheus metrics (/metrics) and /healthz over HTTP on
    /// ADDR:PORT; without a value on 127.0.0.1:9815 (loopback only).
    /// Anything but a loopback address exposes them to the network.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        num_args = 0..=1,
        default_missing_value = DEFAULT_METRICS_ADDR,
        value_parser = parse_metrics_addr
    )]
    pub metrics: Option<SocketAddr>,

    /// TLS and basic auth for --metrics, from a YAML file in the format of
    /// the Prometheus exporters' --web.config.file (docs/metrics.md).
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<PathBuf>,

    /// Enable the kernel's BPF run-time statistics while running and report
    /// macdrop's own programs' run count and average ns per run.
    #[arg(long)]
    pub self_stats: bool,

    #[command(flatten)]
    pub pcap: PcapArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table per interval, for people.
    Table,
    /// One JSON object per line per interval, for programs.
    Json,
    /// `watch` only: no report at all, for a service whose output is its
    /// metrics (`--metrics`): nothing is logged every interval.
    None,
}

impl Format {
    /// `--format none` is for `watch`: `status` and `diagnose` exist to
    /// print their one document.
    pub fn printing(self, command: &str) -> Result<Self, Failure> {
        if self == Format::None {
            return Err(Failure::usage(format!(
                "--format none prints nothing, which is only useful for watch (with --metrics); \
                 use --format table or json with {command}"
            )));
        }
        Ok(self)
    }
}

fn parse_ifname(s: &str) -> Result<String, String> {
    match crate::ifname::invalid(s) {
        Some(why) => Err(why),
        None => Ok(s.to_owned()),
    }
}

fn parse_secs(s: &str, min: f64, max: f64) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < min || secs > max {
        return Err(format!("{s} is out of range: use {min} to {max} seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_secs(s, 0.1, 3600.0)
}

/// Most top offenders `--top-flows` keeps per interface.
pub const TOP_FLOWS_MAX: usize = 1000;

fn parse_top_flows(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n <= TOP_FLOWS_MAX => Ok(n),
        _ => Err(format!(
            "{s:?} is not a number of flows: use 0 (no flow records) to {TOP_FLOWS_MAX}"
        )),
    }
}

fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "{s:?} is not ADDR:PORT: use an IP address and a port, e.g. {DEFAULT_METRICS_ADDR} \
             or [::1]:9815"
        )
    })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    // At least one 0.1 s interval; at most a year.
    parse_secs(s, 0.1, 366.0 * 86400.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("macdrop").chain(args.iter().copied()))
    }

    #[test]
    fn watch_defaults() {
        let Command::Watch(w) = parse(&["watch"]).unwrap().command else {
            panic!("not watch")
        };
        assert!(w.select.bridges.is_empty() && w.select.ifaces.is_empty());
        assert_eq!(w.interval, Duration::from_secs(1));
        assert_eq!(w.duration, None);
        assert_eq!(w.format, Format::Table);
        assert_eq!(w.metrics, None, "no metrics unless asked");
        assert_eq!(w.select.top_flows, 10, "top offenders on by default");
        assert_eq!(w.select.retention, crate::retention::DEFAULT);
        let Command::Diagnose(d) = parse(&["diagnose", "--top-flows", "0"]).unwrap().command else {
            panic!("not diagnose")
        };
        assert_eq!(d.select.top_flows, 0);
        assert_eq!(w.pcap.plan().unwrap(), None, "no capture unless asked");
    }

    #[test]
    fn pcap_on_watch_and_diagnose() {
        let Command::Watch(w) = parse(&["watch", "--pcap", "/tmp/e.pcapng"])
            .unwrap()
            .command
        else {
            panic!("not watch")
        };
        let plan = w.pcap.plan().unwrap().unwrap();
        assert_eq!(
            (plan.target.path.to_str(), plan.target.overwrite, plan.count),
            (Some("/tmp/e.pcapng"), false, 100)
        );
        let Command::Diagnose(d) = parse(&["diagnose", "--pcap", "e.pcapng", "--pcap-count", "7"])
            .unwrap()
            .command
        else {
            panic!("not diagnose")
        };
        assert_eq!(d.pcap.plan().unwrap().unwrap().count, 7);
        let Command::Watch(w) = parse(&["watch", "--pcap-count", "5"]).unwrap().command else {
            panic!("not watch")
        };
        let e = w.pcap.plan().unwrap_err();
        assert_eq!(e.kind, crate::error::ExitKind::Usage);
        assert!(e.message.contains("--pcap FILE"), "{e}");
        let Command::Watch(w) = parse(&["watch", "--pcap-overwrite"]).unwrap().command else {
            panic!("not watch")
        };
        let e = w.pcap.plan().unwrap_err();
        assert!(
            e.message.starts_with("--pcap-overwrite needs --pcap FILE"),
            "{e}"
        );
        let Command::Watch(w) = parse(&["watch", "--pcap", "-", "--pcap-overwrite"])
            .unwrap()
            .command
        else {
            panic!("not watch")
        };
        let target = w.pcap.plan().unwrap().unwrap().target;
        assert!(target.overwrite && target.is_stdout());
        for args in [
            &["watch", "--pcap", "x", "--pcap-count", "0"][..],
            &["watch", "--pcap", "x", "--pcap-count", "many"],
            &["top", "--pcap", "x"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} must be rejected"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn metrics_address_is_optional() {
        let metrics = |args: &[&str]| {
            let Command::Watch(w) = parse(args).unwrap().command else {
                panic!("not watch")
            };
            w.metrics.map(|a| a.to_string())
        };
        assert_eq!(
            metrics(&["watch", "--metrics"]).as_deref(),
            Some(DEFAULT_METRICS_ADDR)
        );
        assert_eq!(
            metrics(&["watch", "--metrics", "--bridge", "br0"]).as_deref(),
            Some(DEFAULT_METRICS_ADDR),
            "a following flag is not taken as the address"
        );
        assert_eq!(
            metrics(&["watch", "--metrics", "0.0.0.0:9100"]).as_deref(),
            Some("0.0.0.0:9100")
        );
        assert_eq!(
            metrics(&["watch", "--metrics=[::1]:9815"]).as_deref(),
            Some("[::1]:9815")
        );
    }

    #[test]
    fn repeatable_selections_and_fractions() {
        let Command::Watch(w) = parse(&[
            "watch",
            "--bridge",
            "br0",
            "--bridge",
            "docker0",
            "--iface",
            "eth0",
            "--interval",
            "0.2",
            "--duration",
            "3",
            "--format",
            "json",
        ])
        .unwrap()
        .command
        else {
            panic!("not watch")
        };
        assert_eq!(w.select.bridges, ["br0", "docker0"]);
        assert_eq!(w.select.ifaces, ["eth0"]);
        assert_eq!(w.interval, Duration::from_millis(200));
        assert_eq!(w.duration, Some(Duration::from_secs(3)));
        assert_eq!(w.format, Format::Json);
    }

    #[test]
    fn status_takes_interface_names() {
        let Command::Status(s) = parse(&["status", "br0", "eth0", "--format", "json"])
            .unwrap()
            .command
        else {
            panic!("not status")
        };
        assert_eq!(s.ifaces, ["br0", "eth0"]);
        assert_eq!(s.format, Format::Json);
        assert!(parse(&["status", "seventeen-bytes-x"]).is_err());
    }

    #[test]
    fn top_and_diagnose_share_the_selection_flags() {
        let Command::Top(t) = parse(&["top", "--bridge", "br0", "--interval", "0.5"])
            .unwrap()
            .command
        else {
            panic!("not top")
        };
        assert_eq!(t.select.bridges, ["br0"]);
        assert_eq!(t.interval, Duration::from_millis(500));
        let Command::Diagnose(d) = parse(&["diagnose", "--iface", "eth0"]).unwrap().command else {
            panic!("not diagnose")
        };
        assert_eq!(d.select.ifaces, ["eth0"]);
        assert_eq!(d.duration, Duration::from_secs(10), "default window");
        assert_eq!((d.format, d.fail_on), (Format::Table, None));
        let Command::Diagnose(d) = parse(&[
            "diagnose",
            "--duration",
            "2",
            "--format",
            "json",
            "--fail-on",
            "warning",
        ])
        .unwrap()
        .command
        else {
            panic!("not diagnose")
        };
        assert_eq!(d.duration, Duration::from_secs(2));
        assert_eq!((d.format, d.fail_on), (Format::Json, Some(FailOn::Warning)));
        for args in [
            &["top", "--format", "json"][..],
            &["top", "--interval", "0"],
            &["diagnose", "--duration", "0"],
            &["diagnose", "--fail-on", "sometimes"],
            &["diagnose", "--netns", "a", "--all-netns"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} must be rejected"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["watch", "--interval", "0"][..],
            &["watch", "--interval", "-1"],
            &["watch", "--interval", "nan"],
            &["watch", "--interval", "inf"],
            &["watch", "--interval", "99999"],
            &["watch", "--duration", "0"],
            &["watch", "--duration", "abc"],
            &["watch", "--iface", ""],
            &["watch", "--iface", "sixteen-bytes-xx"],
            &["watch", "--bridge", "a/b"],
            &["watch", "--format", "xml"],
            &["watch", "--bogus"],
            &["watch", "--metrics", "localhost:9815"],
            &["watch", "--metrics", "127.0.0.1"],
            &["watch", "--metrics", "9815"],
            &["watch", "--metrics", "127.0.0.1:65536"],
            &["watch", "--metrics", ""],
            &["watch", "--top-flows", "-1"],
            &["watch", "--top-flows", "1001"],
            &["top", "--top-flows", "ten"],
            &["watch", "--retention", "soon"],
            &["watch", "--retention", "-1s"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} must be rejected"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
