//! Command-line interface. Values are validated here so that every bad
//! flag is a usage error (exit 2) with a one-line message.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::kernel::attach::AttachMode;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

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
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Interfaces to show (default: all).
    #[arg(value_name = "IFACE", value_parser = parse_ifname)]
    pub ifaces: Vec<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Watch this bridge and all its ports (repeatable).
    #[arg(long = "bridge", value_name = "NAME", value_parser = parse_ifname)]
    pub bridges: Vec<String>,

    /// Watch this single interface (repeatable).
    #[arg(long = "iface", value_name = "NAME", value_parser = parse_ifname)]
    pub ifaces: Vec<String>,

    /// Seconds between reports (0.1 to 3600, fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,

    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table per interval, for people.
    Table,
    /// One JSON object per line per interval, for programs.
    Json,
}

fn parse_ifname(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if s.len() > IFNAME_MAX {
        return Err(format!(
            "{s:?} is {} bytes; Linux interface names are at most {IFNAME_MAX}",
            s.len()
        ));
    }
    if s.contains(['/', ' ', '\0']) || s == "." || s == ".." {
        return Err(format!("{s:?} is not a valid interface name"));
    }
    Ok(s.to_owned())
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
        assert!(w.bridges.is_empty() && w.ifaces.is_empty());
        assert_eq!(w.interval, Duration::from_secs(1));
        assert_eq!(w.duration, None);
        assert_eq!(w.format, Format::Table);
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
        assert_eq!(w.bridges, ["br0", "docker0"]);
        assert_eq!(w.ifaces, ["eth0"]);
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
        ] {
            let err = parse(args).expect_err(&format!("{args:?} must be rejected"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
