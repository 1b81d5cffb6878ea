//! The guest side of `cargo xtask kernel-matrix`: the end-to-end scenarios
//! of the integration suite, run on whatever kernel this is (a Debian
//! cloud kernel booted under QEMU from a throwaway initramfs, or the host's
//! own kernel natively).
//!
//! For each way of attaching (macdrop's default, then every `--attach` mode
//! in [`ATTACH_MODES`] if `macdrop watch --help` offers the flag) it runs
//! every scenario of [`macdrop_tests::scenarios::ALL`], the very functions
//! the host suite runs in `tests/tests/scenarios.rs` (standalone, bridge,
//! incident, jumbo, pcap, fate, sigkill: see that module for what each
//! requires). This program only runs them and reports.
//!
//! What is required comes from what the kernel has, read first and
//! independently of macdrop ([`KernelFacts`]: its BTF and its
//! `IFLA_STATS64`), never from its version. The runner records what works
//! on this kernel (which hook each role got, whether confirmed drops and the
//! otherhost counter are there, the veth peer's max MTU while watched, what
//! stayed after SIGKILL, what macdrop said on stderr) and prints, for the
//! host to parse from the console:
//!
//! ```text
//! MACDROP-MATRIX-CAPS: {"kernel": "...", ...}      one line of JSON
//! MACDROP-MATRIX: PASS <summary>                   or FAIL <summary>
//! ```
//!
//! The JSON has `kernel_has` (the facts) and, per check, `skipped` (why it
//! did not run) where it did not; `checks=PASSED/RAN skipped=N` in the
//! summary counts only the checks that ran.
//!
//! Exit status 0 on PASS, 1 on FAIL.

use std::{
    collections::BTreeMap,
    io::Write as _,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context as _, Result, bail, ensure};
use macdrop_tests::{
    macdrop,
    scenarios::{self, ATTACH_MODES, Attach, KernelFacts, Observed, Outcome},
};
use serde_json::{Value, json};

/// Prefix of the verdict line (`MACDROP-MATRIX: PASS ...` / `FAIL ...`).
const MARKER: &str = "MACDROP-MATRIX:";
/// Prefix of the capability line (one JSON object).
const CAPS_MARKER: &str = "MACDROP-MATRIX-CAPS:";

fn main() -> ExitCode {
    let bin = match parse_args() {
        Ok(bin) => bin,
        Err(error) => {
            println!("{MARKER} FAIL usage: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    say(&format!(
        "kernel {kernel}, BTF {}, macdrop {}",
        yes_no(btf),
        bin.display()
    ));
    // What this kernel has decides what is required of macdrop: read from
    // its BTF and its IFLA_STATS64, never from the version.
    let facts = match KernelFacts::read() {
        Ok(facts) => facts,
        Err(error) => {
            println!("{MARKER} FAIL kernel={kernel} cannot read what the kernel has: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    say(&format!("kernel has: {}", facts.to_json()));

    let attach_flag = match attach_flag(&bin) {
        Ok(flag) => flag,
        Err(error) => {
            println!("{MARKER} FAIL kernel={kernel} cannot run macdrop: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut attaches = vec![Attach::Default];
    if attach_flag {
        attaches.extend(ATTACH_MODES.iter().copied().map(Attach::Mode));
    }

    let mut checks = Vec::new();
    let mut modes: Vec<ModeCaps> = Vec::new();
    for attach in &attaches {
        let mut mode = ModeCaps::new(attach);
        if let (Attach::Mode(name), Some(default)) = (attach, modes.first())
            && default.is_all(name)
        {
            // `auto` chose this very hook everywhere: running it again
            // would only repeat the default's checks.
            say(&format!("{name}: same hooks as the default, not repeated"));
            mode.same_as_default = true;
            modes.push(mode);
            continue;
        }
        for scenario in scenarios::ALL {
            let name = format!("{}/{}", scenario.name, attach.label());
            let start = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| (scenario.run)(&bin, attach, &facts)))
                .unwrap_or_else(|panic| Err(anyhow::anyhow!("panicked: {}", panic_text(&panic))));
            let secs = start.elapsed().as_secs_f64();
            match result {
                Ok(Outcome::Ran(observed)) => {
                    let mut observed = *observed;
                    for note in std::mem::take(&mut observed.notes) {
                        say(&note);
                    }
                    say(&format!(
                        "{name}: ok in {secs:.1}s ({})",
                        observed.summary()
                    ));
                    checks.push(Check::ok(&name, secs));
                    for (part, why) in std::mem::take(&mut observed.skipped) {
                        checks.push(Check::skipped(&format!("{name}/{part}"), &why));
                    }
                    mode.absorb(observed);
                }
                Ok(Outcome::Skipped(why)) => {
                    say(&format!("{name}: SKIPPED: {why}"));
                    checks.push(Check::skipped(&name, &why));
                }
                Ok(Outcome::Unsupported(why)) => {
                    say(&format!("{name}: skipped, unsupported: {why}"));
                    mode.unsupported = Some(why);
                    // The other scenarios of this mode would say the same.
                    break;
                }
                Err(error) => {
                    // One line: the console is read line by line.
                    let text = format!("{error:#}")
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>()
                        .join(" | ");
                    say(&format!("{name}: FAILED in {secs:.1}s: {text}"));
                    checks.push(Check::failed(&name, secs, &text));
                }
            }
        }
        modes.push(mode);
    }

    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    let skipped = checks.iter().filter(|c| c.skipped.is_some()).count();
    let ran = checks.len() - skipped;
    let caps = json!({
        "kernel": kernel,
        "btf": btf,
        "kernel_has": facts.to_json(),
        "attach_flag": attach_flag,
        "modes": modes.iter().map(ModeCaps::to_json).collect::<Vec<_>>(),
        "checks": checks.iter().map(Check::to_json).collect::<Vec<_>>(),
    });
    println!("{CAPS_MARKER} {caps}");
    // Skipped checks are neither passed nor failed: `checks=` counts the
    // ones that ran.
    let summary = format!(
        "kernel={kernel} checks={}/{ran} skipped={skipped} {}",
        ran - failed.len(),
        modes.first().map(ModeCaps::one_line).unwrap_or_default()
    );
    let _ = std::io::stdout().flush();
    if failed.is_empty() && ran > 0 {
        println!("{MARKER} PASS {summary}");
        ExitCode::SUCCESS
    } else {
        let names: Vec<&str> = failed.iter().map(|c| c.name.as_str()).collect();
        println!("{MARKER} FAIL {summary} failed={}", names.join(","));
        ExitCode::FAILURE
    }
}

/// `matrix_guest [--macdrop PATH]`; without it `$MACDROP_BIN` or the
/// workspace's debug build.
fn parse_args() -> Result<PathBuf> {
    let mut args = std::env::args().skip(1);
    let mut bin = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--macdrop" => {
                bin = Some(PathBuf::from(
                    args.next().context("--macdrop needs a path")?,
                ))
            }
            other => bail!("unknown argument {other:?} (usage: matrix_guest [--macdrop PATH])"),
        }
    }
    let bin = bin.unwrap_or_else(macdrop::macdrop_bin);
    ensure!(bin.is_file(), "no macdrop binary at {}", bin.display());
    Ok(bin)
}

/// A progress line on the console.
fn say(line: &str) {
    println!("matrix: {line}");
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Whether `macdrop watch --help` offers `--attach`.
fn attach_flag(bin: &Path) -> Result<bool> {
    let output = Command::new(bin)
        .args(["watch", "--help"])
        .output()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    ensure!(
        output.status.success(),
        "`macdrop watch --help` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).contains("--attach"))
}

struct ModeCaps {
    attach: &'static str,
    hooks: BTreeMap<String, String>,
    drops: Option<bool>,
    drops_otherhost: Option<u64>,
    drops_unavailable: Option<String>,
    otherhost: Option<bool>,
    otherhost_value: Option<u64>,
    watching: Vec<String>,
    stderr: Vec<String>,
    peer_max_mtu: Option<u64>,
    jumbo: Option<String>,
    pcap: Option<String>,
    sigkill: Option<String>,
    unsupported: Option<String>,
    /// Not run: the default attached this mode's hooks everywhere.
    same_as_default: bool,
}

impl ModeCaps {
    fn new(attach: &Attach) -> Self {
        Self {
            attach: attach.label(),
            hooks: BTreeMap::new(),
            drops: None,
            drops_otherhost: None,
            drops_unavailable: None,
            otherhost: None,
            otherhost_value: None,
            watching: Vec::new(),
            stderr: Vec::new(),
            peer_max_mtu: None,
            jumbo: None,
            pcap: None,
            sigkill: None,
            unsupported: None,
            same_as_default: false,
        }
    }

    fn absorb(&mut self, observed: Observed) {
        self.hooks.extend(observed.hooks);
        self.drops = self.drops.or(observed.drops);
        self.drops_otherhost = self.drops_otherhost.or(observed.drops_otherhost);
        self.drops_unavailable = self.drops_unavailable.take().or(observed.drops_unavailable);
        self.otherhost = self.otherhost.or(observed.otherhost);
        self.otherhost_value = self.otherhost_value.or(observed.otherhost_value);
        self.watching.extend(observed.watching);
        self.peer_max_mtu = self.peer_max_mtu.or(observed.peer_max_mtu);
        self.jumbo = self.jumbo.take().or(observed.jumbo);
        self.pcap = self.pcap.take().or(observed.pcap);
        self.sigkill = self.sigkill.take().or(observed.sigkill);
        for line in observed.stderr {
            if !self.stderr.contains(&line) {
                self.stderr.push(line);
            }
        }
    }

    /// Whether every hook this mode saw belongs to `--attach mode`'s family
    /// (`xdp-driver`/`xdp-generic` to `xdp`, `tcx`/`tc-clsact` to `tc`).
    fn is_all(&self, mode: &str) -> bool {
        !self.hooks.is_empty() && self.hooks.values().all(|hook| hook.starts_with(mode))
    }

    fn to_json(&self) -> Value {
        json!({
            "attach": self.attach,
            "unsupported": self.unsupported,
            "same_as_default": self.same_as_default,
            "hooks": self.hooks,
            "drops": self.drops,
            "drops_otherhost": self.drops_otherhost,
            "drops_unavailable": self.drops_unavailable,
            "otherhost": self.otherhost,
            "otherhost_value": self.otherhost_value,
            "watching": self.watching,
            "stderr": self.stderr,
            "peer_max_mtu": self.peer_max_mtu,
            "jumbo": self.jumbo,
            "pcap": self.pcap,
            "sigkill": self.sigkill,
        })
    }

    /// `hooks=port:xdp-driver,... drops=yes otherhost=no` for the verdict line.
    fn one_line(&self) -> String {
        let hooks: Vec<String> = self.hooks.iter().map(|(r, h)| format!("{r}:{h}")).collect();
        let avail = |v: Option<bool>| match v {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        format!(
            "hooks={} drops={} otherhost={}",
            if hooks.is_empty() {
                "none".to_owned()
            } else {
                hooks.join(",")
            },
            avail(self.drops),
            avail(self.otherhost)
        )
    }
}

/// One scenario under one attach mode.
struct Check {
    name: String,
    /// Did not fail: passed, or skipped.
    ok: bool,
    secs: f64,
    error: Option<String>,
    /// Not run on this kernel, and why.
    skipped: Option<String>,
}

impl Check {
    fn ok(name: &str, secs: f64) -> Self {
        Self {
            name: name.to_owned(),
            ok: true,
            secs,
            error: None,
            skipped: None,
        }
    }

    fn skipped(name: &str, why: &str) -> Self {
        Self {
            name: name.to_owned(),
            ok: true,
            secs: 0.0,
            error: None,
            skipped: Some(why.to_owned()),
        }
    }

    fn failed(name: &str, secs: f64, error: &str) -> Self {
        Self {
            name: name.to_owned(),
            ok: false,
            secs,
            error: Some(error.to_owned()),
            skipped: None,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "ok": self.ok,
            "secs": (self.secs * 10.0).round() / 10.0,
            "error": self.error,
            "skipped": self.skipped,
        })
    }
}
