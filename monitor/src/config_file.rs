//! `--config FILE`: every flag of a command can also come from a TOML file,
//! in a table named after the command (`[watch]`, `[status]`, `[top]`,
//! `[diagnose]`), with keys named like the long flags (`all-netns = true`
//! or `all_netns = true`, `bridge = ["br0"]`, `interval = 5`); `status`'s
//! interface names are `ifaces = [...]`.
//!
//! The command line wins: a file value is used only for a flag the command
//! line did not give (clap's `ValueSource` says which), and replaces its
//! default. A repeatable flag given on the command line replaces the file's
//! list rather than adding to it, and a file value that conflicts with a
//! flag given on the command line (`netns` in the file, `--all-netns` on the
//! command line) is ignored. Unknown tables or keys, values of the wrong
//! type and values the flag itself would reject are usage errors (exit 2),
//! on one line with the file, the line and the key.
//!
//! The file's values are turned into the flags they stand for and parsed by
//! clap with the command line, so a value from the file is checked exactly
//! as the same value given as a flag is.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    path::{Path, PathBuf},
};

use clap::{
    Arg, ArgAction, ArgMatches, Command, CommandFactory as _, FromArgMatches as _,
    error::ErrorKind, parser::ValueSource,
};
use serde::Deserialize;
use toml::Spanned;

use crate::cli::Cli;

/// The id of the global `--config` flag.
const CONFIG_ARG: &str = "config";

/// One table of the file: key -> value, with their places in the file.
type Section = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// The file: one table per command. A command added to the CLI needs its
/// table here (a unit test checks that every command has one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    watch: Section,
    #[serde(default)]
    status: Section,
    #[serde(default)]
    top: Section,
    #[serde(default)]
    diagnose: Section,
}

impl File {
    fn section(&self, command: &str) -> Option<&Section> {
        match command {
            "watch" => Some(&self.watch),
            "status" => Some(&self.status),
            "top" => Some(&self.top),
            "diagnose" => Some(&self.diagnose),
            _ => None,
        }
    }
}

/// Parses the command line like `Cli::try_parse_from`, then, with
/// `--config FILE`, fills what the command line left unset from the file.
/// Every error is a clap error: usage, exit 2, rendered on one line by
/// `main`.
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = Cli::command();
    let matches = cmd.try_get_matches_from_mut(&args)?;
    let Some(path) = matches.get_one::<PathBuf>(CONFIG_ARG).cloned() else {
        return Cli::from_arg_matches(&matches);
    };
    let source = std::fs::read_to_string(&path)
        .map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
    let Some((name, sub_matches)) = matches.subcommand() else {
        return Cli::from_arg_matches(&matches);
    };
    let sub = cmd
        .find_subcommand(name)
        .expect("clap matched this subcommand");
    let file = File::parse(&path, &source)?;
    // A misspelt key is an error whichever command runs.
    for other in cmd.get_subcommands() {
        if let Some(section) = file.section(other.get_name()) {
            for key in section.keys() {
                arg_of(other, key)
                    .map_err(|what| at_key(&path, &source, other.get_name(), key, what))?;
            }
        }
    }
    let section = file.section(name).ok_or_else(|| {
        error(format!(
            "{}: macdrop {name} cannot be configured from a file",
            path.display()
        ))
    })?;
    let from_file = FileArgs::new(&path, &source, name, sub, sub_matches, section)?;
    if from_file.is_empty() {
        return Cli::from_arg_matches(&matches);
    }
    let merged = from_file.splice_into(args);
    let matches = cmd
        .try_get_matches_from_mut(merged)
        .map_err(|e| error(format!("{}: {}", path.display(), first_line(&e))))?;
    Cli::from_arg_matches(&matches)
}

impl File {
    fn parse(path: &Path, source: &str) -> Result<Self, clap::Error> {
        toml::from_str(source).map_err(|e| {
            let at = e
                .span()
                .map(|span| format!(":{}", line_of(source, span.start)))
                .unwrap_or_default();
            error(format!("{}{at}: {}", path.display(), one_line(e.message())))
        })
    }
}

/// The flags a file contributes: options go before any `--` of the command
/// line, positional values after it.
#[derive(Debug, Default)]
struct FileArgs {
    flags: Vec<OsString>,
    positionals: Vec<OsString>,
}

impl FileArgs {
    fn new(
        path: &Path,
        source: &str,
        command: &str,
        sub: &Command,
        sub_matches: &ArgMatches,
        section: &Section,
    ) -> Result<Self, clap::Error> {
        let mut out = Self::default();
        // Canonical key -> the spelling used, to catch `all-netns` and
        // `all_netns` both given.
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (key, value) in section {
            let at = |what: String| at_key(path, source, command, key, what);
            let arg = arg_of(sub, key).map_err(&at)?;
            let canonical = key_of(arg);
            if let Some(other) = seen.insert(canonical, key.get_ref()) {
                return Err(at(format!("given twice (also as {other})")));
            }
            if given_on_command_line(sub_matches, arg.get_id().as_str())
                || conflicts_with_command_line(sub, sub_matches, arg)
            {
                continue;
            }
            let values = tokens(arg, value.get_ref()).map_err(&at)?;
            if values.is_empty() {
                continue;
            }
            // Check the values alone first, so an error names the key.
            let mut alone: Vec<OsString> = vec!["macdrop".into(), command.into()];
            if arg.is_positional() {
                alone.push("--".into());
            }
            alone.extend(values.iter().cloned());
            if let Err(e) = Cli::command().try_get_matches_from(alone) {
                let choices: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .map(|v| v.get_name().to_owned())
                    .collect();
                let mut what = first_line(&e);
                if !choices.is_empty() {
                    what += &format!(" (possible values: {})", choices.join(", "));
                }
                return Err(at(what));
            }
            if arg.is_positional() {
                out.positionals.extend(values);
            } else {
                out.flags.extend(values);
            }
        }
        Ok(out)
    }

    fn is_empty(&self) -> bool {
        self.flags.is_empty() && self.positionals.is_empty()
    }

    /// The command line with the file's flags added: options at the end of
    /// the options (before a `--`, after which everything is positional),
    /// positional values at the very end.
    fn splice_into(self, mut args: Vec<OsString>) -> Vec<OsString> {
        let dashdash = args.iter().position(|a| a == "--");
        let at = dashdash.unwrap_or(args.len());
        args.splice(at..at, self.flags);
        if !self.positionals.is_empty() {
            if dashdash.is_none() {
                args.push("--".into());
            }
            args.extend(self.positionals);
        }
        args
    }
}

/// The arguments of a command a file may set: not help, version or
/// `--config` itself.
fn settable_args(sub: &Command) -> impl Iterator<Item = &Arg> {
    sub.get_arguments().filter(|a| {
        a.get_id() != CONFIG_ARG
            && !matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

/// The argument a key of the command's table stands for.
fn arg_of<'a>(sub: &'a Command, key: &Spanned<String>) -> Result<&'a Arg, String> {
    let canonical = key.get_ref().replace('_', "-");
    settable_args(sub)
        .find(|a| key_of(a) == canonical)
        .ok_or_else(|| {
            let valid: Vec<String> = settable_args(sub).map(key_of).collect();
            format!("unknown key; valid keys: {}", valid.join(", "))
        })
}

/// An error about `key` of table `[command]`: file, line, table, key.
fn at_key(
    path: &Path,
    source: &str,
    command: &str,
    key: &Spanned<String>,
    what: String,
) -> clap::Error {
    error(format!(
        "{}:{}: [{command}] {}: {what}",
        path.display(),
        line_of(source, key.span().start),
        key.get_ref()
    ))
}

/// The file's name for an argument: its long flag, or for a positional its
/// id (`ifaces`).
fn key_of(arg: &Arg) -> String {
    arg.get_long()
        .map(str::to_owned)
        .unwrap_or_else(|| arg.get_id().as_str().replace('_', "-"))
}

fn given_on_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Whether `arg` conflicts (either way round) with an argument given on
/// the command line: the command line wins, so the file's value is dropped.
fn conflicts_with_command_line(sub: &Command, matches: &ArgMatches, arg: &Arg) -> bool {
    sub.get_arguments()
        .filter(|other| given_on_command_line(matches, other.get_id().as_str()))
        .any(|other| {
            sub.get_arg_conflicts_with(arg)
                .iter()
                .any(|a| a.get_id() == other.get_id())
                || sub
                    .get_arg_conflicts_with(other)
                    .iter()
                    .any(|a| a.get_id() == arg.get_id())
        })
}

/// The command-line tokens a file value stands for: `--flag` for `true`,
/// nothing for `false`, `--flag=VALUE` per value (the `=` form, so a value
/// starting with `-` stays a value), or bare values for a positional.
fn tokens(arg: &Arg, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let long = arg.get_long();
    let flag = |v: Option<&str>| -> OsString {
        match (long, v) {
            (Some(l), Some(v)) => format!("--{l}={v}").into(),
            (Some(l), None) => format!("--{l}").into(),
            (None, Some(v)) => v.into(),
            (None, None) => unreachable!("a positional always has a value"),
        }
    };
    let takes_values = arg.get_num_args().is_some_and(|n| n.takes_values());
    let value_optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(b)) => {
            Ok(b.then(|| flag(None)).into_iter().collect())
        }
        (ArgAction::SetTrue, _) => Err("expects true or false".into()),
        // `--metrics` alone: true for the flag without a value.
        (_, toml::Value::Boolean(b)) if long.is_some() && value_optional => {
            Ok(b.then(|| flag(None)).into_iter().collect())
        }
        (ArgAction::Append, toml::Value::Array(items)) => items
            .iter()
            .map(|v| scalar(v).map(|s| flag(Some(&s))))
            .collect(),
        (ArgAction::Set | ArgAction::Append, v) if takes_values => {
            Ok(vec![flag(Some(&scalar(v)?))])
        }
        _ => Err("cannot be set from a file".into()),
    }
}

/// A string or a number, as the flag's text.
fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Array(_) => Err("expects one value, not a list".into()),
        other => Err(format!(
            "expects a string or a number, not {}",
            other.type_str()
        )),
    }
}

/// 1-based line of byte offset `at` in `source`.
fn line_of(source: &str, at: usize) -> usize {
    source[..at.min(source.len())].matches('\n').count() + 1
}

fn one_line(s: &str) -> String {
    s.trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The first line of a clap error, without clap's `error: ` prefix.
fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid value");
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

fn error(message: String) -> clap::Error {
    clap::Error::raw(ErrorKind::InvalidValue, message + "\n")
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, time::Duration};

    use super::*;
    use crate::cli::{Command as Cmd, Format};

    /// A TOML file in a temporary directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(text: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "macdrop-config-{}-{}.toml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::File::create(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .unwrap();
            Self(path)
        }
        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn run(args: &[&str]) -> Result<Cli, clap::Error> {
        parse(std::iter::once("macdrop").chain(args.iter().copied()))
    }

    fn watch(args: &[&str]) -> crate::cli::WatchArgs {
        match run(args).unwrap().command {
            Cmd::Watch(w) => w,
            other => panic!("not watch: {other:?}"),
        }
    }

    fn message(e: &clap::Error) -> String {
        let text = e.render().to_string();
        assert_eq!(e.exit_code(), 2, "usage error: {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
        text
    }

    const FLEET: &str = r#"
        [watch]
        all-netns = true
        metrics = "0.0.0.0:9100"
        format = "json"
        interval = 15
        duration = 2.5
        attach = "tc"
        self_stats = true
        iface = ["eth0", "eth1"]
        pcap = "/var/tmp/evidence.pcapng"
        pcap-count = 20
        web-config = "/etc/macdrop/web.yml"
        retention = "2m 30s"
    "#;

    #[test]
    fn file_only() {
        let f = TempFile::new(FLEET);
        for args in [
            &["--config", f.path(), "watch"][..],
            &["watch", "--config", f.path()],
        ] {
            let w = watch(args);
            assert!(w.select.all_netns);
            assert_eq!(
                w.metrics.map(|a| a.to_string()).as_deref(),
                Some("0.0.0.0:9100")
            );
            assert_eq!(w.format, Format::Json);
            assert_eq!(w.interval, Duration::from_secs(15));
            assert_eq!(w.duration, Some(Duration::from_millis(2500)));
            assert_eq!(
                w.web_config.as_deref(),
                Some(Path::new("/etc/macdrop/web.yml"))
            );
            assert_eq!(w.select.attach, crate::cli::AttachMode::Tc);
            assert!(w.self_stats);
            assert_eq!(w.select.retention, Duration::from_secs(150));
            assert_eq!(w.select.ifaces, ["eth0", "eth1"]);
            assert!(w.select.bridges.is_empty());
            assert_eq!(
                w.pcap.plan().unwrap(),
                Some(crate::evidence::EvidencePlan {
                    target: crate::evidence::Target {
                        path: "/var/tmp/evidence.pcapng".into(),
                        overwrite: false,
                    },
                    count: 20
                })
            );
        }
    }

    #[test]
    fn without_config_nothing_changes() {
        let w = watch(&["watch", "--interval", "2"]);
        assert_eq!(w.interval, Duration::from_secs(2));
        assert_eq!(w.metrics, None);
    }

    #[test]
    fn command_line_overrides_file() {
        let f = TempFile::new(FLEET);
        let w = watch(&[
            "watch",
            "--config",
            f.path(),
            "--interval",
            "1",
            "--format",
            "table",
            "--iface",
            "eth9",
            "--metrics",
        ]);
        assert_eq!(w.interval, Duration::from_secs(1), "CLI interval wins");
        assert_eq!(w.format, Format::Table, "CLI format wins");
        assert_eq!(w.select.ifaces, ["eth9"], "a CLI list replaces the file's");
        assert_eq!(
            w.metrics.map(|a| a.to_string()).as_deref(),
            Some(crate::cli::DEFAULT_METRICS_ADDR),
            "bare --metrics on the CLI wins over the file's address"
        );
        assert!(
            w.select.all_netns,
            "what the CLI does not set still comes from the file"
        );
        // A file value conflicting with a CLI flag gives way, either way round.
        let w = watch(&["--config", f.path(), "watch", "--netns", "ns1"]);
        assert_eq!(
            (w.select.netns.as_slice(), w.select.all_netns),
            (&["ns1".to_owned()][..], false)
        );
        let g = TempFile::new("[watch]\nnetns = [\"a\", \"b\"]\n");
        let w = watch(&["--config", g.path(), "watch", "--all-netns"]);
        assert!(w.select.all_netns && w.select.netns.is_empty());
        let w = watch(&["--config", g.path(), "watch"]);
        assert_eq!(w.select.netns, ["a", "b"]);
    }

    #[test]
    fn every_command_has_a_table_and_positionals_work() {
        let f = TempFile::new(
            "[status]\nifaces = [\"br0\", \"eth0\"]\nformat = \"json\"\n\
             [top]\ninterval = 0.5\nbridge = \"br0\"\n\
             [diagnose]\nfail-on = \"warning\"\nduration = 3\n",
        );
        // The generators (completions, man pages) read no settings.
        let generators = ["completions", "man"];
        for sub in Cli::command()
            .get_subcommands()
            .filter(|s| !generators.contains(&s.get_name()))
        {
            assert!(
                File::default().section(sub.get_name()).is_some(),
                "no [{}] table in config_file::File",
                sub.get_name()
            );
        }
        let Cmd::Status(s) = run(&["--config", f.path(), "status"]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            (s.ifaces.as_slice(), s.format),
            (&["br0".to_owned(), "eth0".to_owned()][..], Format::Json)
        );
        let Cmd::Status(s) = run(&["--config", f.path(), "status", "p1"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(s.ifaces, ["p1"], "CLI interfaces replace the file's");
        let Cmd::Top(t) = run(&["--config", f.path(), "top"]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            (t.interval, t.select.bridges.as_slice()),
            (Duration::from_millis(500), &["br0".to_owned()][..])
        );
        let Cmd::Diagnose(d) = run(&["--config", f.path(), "diagnose"]).unwrap().command else {
            panic!()
        };
        assert_eq!(d.fail_on, Some(crate::cli::FailOn::Warning));
        assert_eq!(d.duration, Duration::from_secs(3));
    }

    #[test]
    fn unknown_key_is_an_error() {
        let f = TempFile::new("[watch]\ninterval = 5\nbrige = [\"br0\"]\n");
        let e = run(&["--config", f.path(), "watch"]).unwrap_err();
        let text = message(&e);
        assert!(
            text.contains(&format!("{}:3: [watch] brige: unknown key", f.path())),
            "{text}"
        );
        assert!(
            text.contains("bridge") && text.contains("all-netns"),
            "lists valid keys: {text}"
        );
        // An unknown table, and keys of another command's table.
        let f = TempFile::new("[wach]\ninterval = 5\n");
        let text = message(&run(&["--config", f.path(), "watch"]).unwrap_err());
        assert!(text.contains(":1:") && text.contains("wach"), "{text}");
        let f = TempFile::new("[status]\ninterval = 5\n");
        let text = message(&run(&["--config", f.path(), "status"]).unwrap_err());
        assert!(text.contains("[status] interval: unknown key"), "{text}");
        // Also when another command runs.
        let text = message(&run(&["--config", f.path(), "watch"]).unwrap_err());
        assert!(
            text.contains(":2: [status] interval: unknown key"),
            "{text}"
        );
        // The same key spelled twice; --config inside the file; help.
        for body in [
            "[watch]\nall-netns = true\nall_netns = true\n",
            "[watch]\nconfig = \"other.toml\"\n",
            "[watch]\nhelp = true\n",
            "interval = 5\n",
        ] {
            let f = TempFile::new(body);
            message(&run(&["--config", f.path(), "watch"]).unwrap_err());
        }
    }

    #[test]
    fn bad_value_is_an_error() {
        for (body, mentions) in [
            (
                "[watch]\ninterval = 0\n",
                &["[watch] interval", "out of range"][..],
            ),
            ("[watch]\nformat = \"xml\"\n", &["[watch] format", "xml"]),
            (
                "[watch]\nretention = \"a while\"\n",
                &["[watch] retention", "not a duration"],
            ),
            (
                "[watch]\nretention = -1\n",
                &["[watch] retention", "out of range"],
            ),
            (
                "[watch]\nmetrics = \"localhost:9815\"\n",
                &["[watch] metrics", "ADDR:PORT"],
            ),
            (
                "[watch]\niface = [\"sixteen-bytes-xx\"]\n",
                &["[watch] iface", "15"],
            ),
            (
                "[watch]\nall-netns = \"yes\"\n",
                &["[watch] all-netns", "true or false"],
            ),
            (
                "[watch]\ninterval = [1, 2]\n",
                &["[watch] interval", "one value"],
            ),
            (
                "[watch]\ninterval = { secs = 1 }\n",
                &["[watch] interval", "table"],
            ),
            ("[watch]\ninterval = 1\ninterval = 2\n", &[":3:"]),
            ("[watch]\ninterval = \n", &[":2:"]),
            // Valid one by one, not together.
            (
                "[watch]\nnetns = [\"a\"]\nall-netns = true\n",
                &["--all-netns"],
            ),
        ] {
            let f = TempFile::new(body);
            let e = run(&["--config", f.path(), "watch"]).unwrap_err();
            let text = message(&e);
            assert!(text.contains(f.path()), "{body:?}: names the file: {text}");
            for m in mentions {
                assert!(text.contains(m), "{body:?}: {m:?} in {text}");
            }
        }
        let e = run(&["--config", "/nonexistent/macdrop.toml", "watch"]).unwrap_err();
        assert!(message(&e).contains("cannot read /nonexistent/macdrop.toml"));
    }

    #[test]
    fn shipped_example_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/macdrop.toml");
        let w = watch(&["--config", path, "watch"]);
        assert!(w.select.all_netns);
        assert!(w.metrics.is_some());
        assert_eq!(w.select.retention, crate::retention::DEFAULT);
        assert!(matches!(
            run(&["--config", path, "status"]).unwrap().command,
            Cmd::Status(_)
        ));
    }
}
