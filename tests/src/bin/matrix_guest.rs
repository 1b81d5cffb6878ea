//! The guest side of `cargo xtask kernel-matrix`: a small privileged smoke
//! subset of the integration tests, run on whatever kernel this is (a Debian
//! cloud kernel booted under QEMU from a throwaway initramfs, or the host's
//! own kernel natively).
//!
//! For each way of attaching (macdrop's default, then every `--attach` mode
//! in [`ATTACH_MODES`] if `macdrop watch --help` offers the flag) it runs:
//!
//! - `standalone`: a [`StandaloneLab`], exact frames of each class into the
//!   veth, exact counts from `macdrop watch --format json`; where the kernel
//!   has them, the confirmed OTHERHOST drops and `rx_otherhost_dropped` must
//!   equal the foreign unicast sent;
//! - `bridge`: a two-port [`BridgeLab`], a mix into p1, exact counts on p1,
//!   br0 (what the bridge passed up, cross-checked with br0's own
//!   `rx_packets`) and p2;
//! - `incident`: the bridge's MAC removed from its FDB, frames to it counted
//!   as `host_ip_wrong_mac` on p1 and never on br0; `macdrop status` names
//!   the finding;
//! - `jumbo`: a veth whose peer has MTU 9000, frames of 8000 bytes: counted
//!   exactly, or refused cleanly (exit 3); anything else fails;
//! - `pcap`: `--pcap FILE` on the standalone veth, mismatched frames (one
//!   VLAN-tagged, one longer than the snap length) among others; the file,
//!   read back with the pcap-file crate (the guest has no tshark), holds
//!   exactly the mismatched ones, byte for byte up to 128 bytes, with their
//!   lengths on the wire.
//!
//! - `fate`: the fate oracle over every lab the kernel can build (a lab it
//!   cannot is a skipped check);
//! - `sigkill`: after SIGKILL exactly the documented leftovers (on
//!   interfaces attached through clsact, its qdisc and one `macdrop_tc`
//!   filter), removed by the next start, nothing after its SIGINT.
//!
//! What is required comes from what the kernel has, read first and
//! independently of macdrop ([`KernelFacts`]: its BTF and its
//! `IFLA_STATS64`), never from its version. It records what works on this
//! kernel (which hook each role got, whether confirmed drops and the
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
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use macdrop_tests::{
    btf::KernelBtf,
    frames::{BROADCAST, MULTICAST_V4, MULTICAST_V4_GROUP, TPID_8021Q, ipv4_udp, with_vlan_tags},
    kernel::link_stats,
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, BridgeLabOptions, FOREIGN_IPV4, FOREIGN_MAC,
        PEER_IFACE, STANDALONE_IFACE, STANDALONE_IPV4, STANDALONE_MAC, STANDALONE_PEER_IPV4,
        STANDALONE_PEER_MAC, StandaloneLab, peer_ipv4, peer_mac, port_mac,
    },
    macdrop::{self, FrameCounts, Macdrop, Output, READY_PREFIX, Report},
    netns::NetNs,
    pcap::{RawFrame, read_raw},
    sender::RawSender,
};
use serde_json::{Value, json};

/// Prefix of the verdict line (`MACDROP-MATRIX: PASS ...` / `FAIL ...`).
const MARKER: &str = "MACDROP-MATRIX:";
/// Prefix of the capability line (one JSON object).
const CAPS_MARKER: &str = "MACDROP-MATRIX-CAPS:";

/// `--attach` values tried after macdrop's default, when `macdrop watch
/// --help` lists `--attach`. A value macdrop rejects as a usage error is
/// recorded as unsupported, not as a failure.
const ATTACH_MODES: &[&str] = &["xdp", "tc"];

/// How long counters may take to reach their expected values. Generous:
/// under QEMU's TCG everything is ~10x slower than on hardware.
const SETTLE: Duration = Duration::from_secs(30);

/// Namespace prefix, so a leftover of a native run is easy to tell apart.
const NS_PREFIX: &str = "macdrop-km";

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
        Ok(facts) => KERNEL.get_or_init(|| facts),
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
        for scenario in SCENARIOS {
            let name = format!("{}/{}", scenario.name, attach.label());
            let start = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| (scenario.run)(&bin, attach)))
                .unwrap_or_else(|panic| Err(anyhow::anyhow!("panicked: {}", panic_text(&panic))));
            let secs = start.elapsed().as_secs_f64();
            match result {
                Ok(Outcome::Ran(observed)) => {
                    let mut observed = *observed;
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

// ---- attach modes and what was observed ------------------------------------

/// How macdrop is told to attach.
#[derive(Clone, Copy, Debug)]
enum Attach {
    /// No `--attach`: whatever macdrop picks.
    Default,
    /// `--attach MODE`.
    Mode(&'static str),
}

impl Attach {
    fn label(self) -> &'static str {
        match self {
            Attach::Default => "default",
            Attach::Mode(mode) => mode,
        }
    }

    /// The arguments for `macdrop watch`.
    fn args(self) -> Vec<&'static str> {
        match self {
            Attach::Default => Vec::new(),
            Attach::Mode(mode) => vec!["--attach", mode],
        }
    }
}

/// What one scenario saw besides its exact counts.
#[derive(Debug, Default)]
struct Observed {
    /// Role ("standalone", "port", "bridge") -> hook, from the JSON `hook`.
    hooks: BTreeMap<String, String>,
    /// Whether the JSON `drops` was non-null (confirmed drops available),
    /// with the standalone veth's OTHERHOST count when it was.
    drops: Option<bool>,
    drops_otherhost: Option<u64>,
    /// The top-level `drops_unavailable` reason.
    drops_unavailable: Option<String>,
    /// Whether `kernel_rx_otherhost_dropped` was non-null, and its value on
    /// the standalone veth.
    otherhost: Option<bool>,
    otherhost_value: Option<u64>,
    /// The readiness line and anything else macdrop said on stderr.
    watching: Option<String>,
    stderr: Vec<String>,
    /// The standalone veth's peer `max_mtu` while macdrop watched the
    /// veth (native XDP without multi-buffer support caps it).
    peer_max_mtu: Option<u64>,
    /// The jumbo scenario: "counted (HOOK)" or "refused: MESSAGE".
    jumbo: Option<String>,
    /// The pcap scenario: "N frames (HOOK)".
    pcap: Option<String>,
    /// The sigkill scenario: what stayed after SIGKILL, and that the next
    /// start removed it.
    sigkill: Option<String>,
    /// Parts of the scenario this kernel cannot run (a fate lab it cannot
    /// build): (part, why). Each is a skipped check of its own.
    skipped: Vec<(String, String)>,
}

impl Observed {
    fn summary(&self) -> String {
        let hooks: Vec<String> = self.hooks.iter().map(|(r, h)| format!("{r}={h}")).collect();
        let mut parts = Vec::new();
        if !hooks.is_empty() {
            parts.push(format!("hooks {}", hooks.join(" ")));
        }
        if let Some(drops) = self.drops {
            parts.push(format!(
                "drops {}",
                if drops { "available" } else { "null" }
            ));
        }
        if let Some(otherhost) = self.otherhost {
            parts.push(format!(
                "otherhost {}",
                if otherhost { "available" } else { "null" }
            ));
        }
        if let Some(mtu) = self.peer_max_mtu {
            parts.push(format!("peer max MTU {mtu} while watched"));
        }
        if let Some(jumbo) = &self.jumbo {
            parts.push(format!("jumbo {jumbo}"));
        }
        if let Some(pcap) = &self.pcap {
            parts.push(format!("pcap {pcap}"));
        }
        if let Some(sigkill) = &self.sigkill {
            parts.push(format!("sigkill: {sigkill}"));
        }
        for (part, why) in &self.skipped {
            parts.push(format!("SKIPPED {part}: {why}"));
        }
        parts.join(", ")
    }
}

/// What one attach mode showed over all scenarios.
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

enum Outcome {
    Ran(Box<Observed>),
    /// Not run here, and why: counted as skipped, never as passed.
    Skipped(String),
    /// macdrop refused the attach mode as a usage error (exit 2).
    Unsupported(String),
}

struct Scenario {
    name: &'static str,
    run: fn(&Path, &Attach) -> Result<Outcome>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "standalone",
        run: standalone,
    },
    Scenario {
        name: "bridge",
        run: bridge,
    },
    Scenario {
        name: "incident",
        run: incident,
    },
    Scenario {
        name: "jumbo",
        run: jumbo,
    },
    Scenario {
        name: "pcap",
        run: pcap,
    },
    Scenario {
        name: "fate",
        run: fate,
    },
    Scenario {
        name: "sigkill",
        run: sigkill_leftovers,
    },
];

/// Frames per lab of the fate oracle in a guest (software-emulated, so
/// fewer than the host's run).
const FATE_FRAMES: u64 = 150;

/// The fate oracle (`macdrop_tests::fate`), every lab this kernel can
/// build, VLAN devices and VLAN filtering included where it has them:
/// macdrop's counts against the kernel's own verdict on every frame.
fn fate(bin: &Path, attach: &Attach) -> Result<Outcome> {
    use macdrop_tests::fate::{LabKind, run_lab, table};
    if let Attach::Mode(_) = attach {
        // Under software emulation one pass fits the guest's time; the
        // host's suite runs the oracle with `--attach xdp` too.
        return Ok(Outcome::Skipped(
            "one pass of the fate oracle per guest, with the default hooks".into(),
        ));
    }
    let args = attach.args();
    let mut results = Vec::new();
    for kind in LabKind::ALL {
        results.push((
            kind,
            run_lab(bin, kind, &args, FATE_FRAMES, 50, 0x006d_6163_6472_6f70)?,
        ));
    }
    for line in table(&results).lines() {
        say(&format!("fate/{}: {line}", attach.label()));
    }
    // The matrix guests load 8021q, garp and mrp, so every lab should
    // build; one that does not is a skipped check, shown, never passed.
    Ok(Outcome::Ran(Box::new(Observed {
        skipped: results
            .iter()
            .filter_map(|(kind, t)| Some((format!("{kind:?}"), t.skipped.clone()?)))
            .collect(),
        ..Observed::default()
    })))
}

// ---- running macdrop ---------------------------------------------------------

/// Starts `macdrop watch --format json ...` in `ns`. A usage error (exit
/// 2, e.g. an `--attach` value this build does not know) is `Unsupported`.
fn spawn(
    bin: &Path,
    ns: &NetNs,
    args: &[&str],
    attach: &Attach,
) -> Result<Result<Macdrop, String>> {
    let mut argv: Vec<&str> = args.to_vec();
    argv.extend(attach.args());
    match Macdrop::spawn_bin(bin, ns, &argv, Output::Json) {
        Ok(macdrop) => Ok(Ok(macdrop)),
        Err(error) => {
            let text = format!("{error:#}");
            if matches!(attach, Attach::Mode(_)) && text.contains("exit status: 2") {
                return Ok(Err(text));
            }
            Err(error.context(format!("macdrop watch {}", argv.join(" "))))
        }
    }
}

/// Waits until `cond` holds for a report; on timeout returns the latest
/// report (the caller's exact comparison then says what differs).
fn settle(macdrop: &mut Macdrop, cond: impl FnMut(&Report) -> bool) -> Result<Report> {
    match macdrop.wait_for(cond, SETTLE) {
        Ok(report) => Ok(report),
        Err(error) => macdrop.latest().cloned().ok_or(error),
    }
}

/// Fails with both sides and the raw report unless `actual == expected`.
fn expect_counts(
    macdrop: &Macdrop,
    iface: &str,
    actual: Option<FrameCounts>,
    expected: FrameCounts,
) -> Result<()> {
    if actual != Some(expected) {
        bail!(
            "{iface}: expected {expected:?}, macdrop reported {actual:?}; last report: {}; macdrop stderr: {}",
            macdrop
                .latest_json()
                .ok()
                .flatten()
                .map_or_else(|| "none".to_owned(), |v| v.to_string()),
            macdrop.stderr().trim()
        );
    }
    Ok(())
}

/// Hooks, drop availability and stderr from the latest report of `macdrop`.
fn observe(macdrop: &Macdrop) -> Result<Observed> {
    let json = macdrop
        .latest_json()?
        .context("macdrop printed no report")?;
    let mut observed = Observed::default();
    for iface in json["interfaces"].as_array().into_iter().flatten() {
        let role = iface["role"].as_str().unwrap_or("?").to_owned();
        let hook = match &iface["hook"] {
            Value::String(hook) => hook.clone(),
            Value::Null => "none".to_owned(),
            other => other.to_string(),
        };
        // tc's hook is the kernel's to choose: TCX where its BTF has
        // BPF_TCX_INGRESS, a clsact qdisc where not.
        ensure!(
            !hook.starts_with("tc") || hook == kernel().btf.tc_hook(),
            "{role}: hook {hook}, but this kernel's BTF says tc attaches as {}",
            kernel().btf.tc_hook()
        );
        observed.hooks.insert(role, hook);
        observed.drops = Some(!iface["drops"].is_null());
        observed.otherhost = Some(!iface["kernel_rx_otherhost_dropped"].is_null());
    }
    observed.drops_unavailable = json["drops_unavailable"].as_str().map(str::to_owned);
    for line in macdrop.stderr().lines() {
        if line.starts_with(READY_PREFIX) {
            observed.watching = Some(line.to_owned());
        } else if !line.trim().is_empty() {
            observed.stderr.push(line.to_owned());
        }
    }
    Ok(observed)
}

// ---- scenarios -----------------------------------------------------------------

/// Frames into the standalone veth: own, broadcast, multicast, foreign with
/// a foreign IP, foreign with the veth's IP.
mod standalone_plan {
    pub const OWN: u64 = 4;
    pub const BROADCAST: u64 = 5;
    pub const MULTICAST: u64 = 1;
    pub const FOREIGN_NOT_LOCAL: u64 = 3;
    pub const FOREIGN_HOST_IP: u64 = 2;
    pub const FOREIGN: u64 = FOREIGN_NOT_LOCAL + FOREIGN_HOST_IP;
}

fn standalone(bin: &Path, attach: &Attach) -> Result<Outcome> {
    use standalone_plan as m;
    let lab = StandaloneLab::new()?;
    let mut macdrop = match spawn(bin, lab.host(), &["--iface", STANDALONE_IFACE], attach)? {
        Ok(macdrop) => macdrop,
        Err(why) => return Ok(Outcome::Unsupported(why)),
    };

    let tx = RawSender::new(lab.peer(), PEER_IFACE)?;
    let (src, sip) = (STANDALONE_PEER_MAC, STANDALONE_PEER_IPV4);
    let n = |count: u64| count as usize;
    tx.send(
        &ipv4_udp(STANDALONE_MAC, src, sip, STANDALONE_IPV4),
        n(m::OWN),
    )?;
    tx.send(
        &ipv4_udp(BROADCAST, src, sip, STANDALONE_IPV4),
        n(m::BROADCAST),
    )?;
    tx.send(
        &ipv4_udp(MULTICAST_V4, src, sip, MULTICAST_V4_GROUP),
        n(m::MULTICAST),
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4),
        n(m::FOREIGN_NOT_LOCAL),
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, STANDALONE_IPV4),
        n(m::FOREIGN_HOST_IP),
    )?;

    let expected = FrameCounts {
        own: m::OWN,
        broadcast: m::BROADCAST,
        multicast: m::MULTICAST,
        foreign_unicast: m::FOREIGN,
        host_ip_wrong_mac: m::FOREIGN_HOST_IP,
        ..FrameCounts::default()
    }
    .with_total();
    // What this kernel has, read independently of macdrop, is what macdrop
    // must report: the confirmed drops where the BTF has drop reasons, the
    // otherhost counter where IFLA_STATS64 carries it, each equal to the
    // foreign unicast sent (every such frame is dropped as OTHERHOST on a
    // plain veth); and null, not a made-up 0, where the kernel lacks it.
    let want_drops = kernel().want_drops_otherhost(m::FOREIGN);
    let want_counter = kernel().want_otherhost_counter(m::FOREIGN);
    let drops_otherhost = |i: &macdrop::InterfaceReport| {
        i.drops
            .as_ref()
            .map(|d| d.get("OTHERHOST").copied().unwrap_or(0))
    };
    // The kernel-side layers count the same foreign frames, a little later.
    let report = settle(&mut macdrop, |r| {
        r.frames(STANDALONE_IFACE) == Some(expected)
            && r.interface(STANDALONE_IFACE).is_some_and(|i| {
                drops_otherhost(i) == want_drops && i.kernel_rx_otherhost_dropped == want_counter
            })
    })?;
    expect_counts(
        &macdrop,
        STANDALONE_IFACE,
        report.frames(STANDALONE_IFACE),
        expected,
    )?;

    let mut observed = observe(&macdrop)?;
    observed.peer_max_mtu = max_mtu(lab.peer(), PEER_IFACE)?;
    let v0 = report
        .interface(STANDALONE_IFACE)
        .context("v0 missing from the report")?;
    observed.drops_otherhost = drops_otherhost(v0);
    observed.otherhost_value = v0.kernel_rx_otherhost_dropped;
    ensure!(
        drops_otherhost(v0) == want_drops,
        "v0: confirmed OTHERHOST drops {:?}, required {want_drops:?} (the kernel's BTF: drop \
         reasons {}, SKB_DROP_REASON_OTHERHOST {}); drops {:?}",
        drops_otherhost(v0),
        kernel().btf.drop_reasons,
        kernel().btf.reason_otherhost,
        v0.drops
    );
    ensure!(
        v0.kernel_rx_otherhost_dropped == want_counter,
        "v0: kernel_rx_otherhost_dropped {:?}, required {want_counter:?} (the kernel's \
         IFLA_STATS64 is {} bytes: rx_otherhost_dropped {})",
        v0.kernel_rx_otherhost_dropped,
        kernel().stats64_len,
        if kernel().otherhost_counter {
            "present"
        } else {
            "absent"
        }
    );
    let last = macdrop.stop()?;
    expect_nothing_left(lab.host())?;
    ensure!(
        last.frames(STANDALONE_IFACE) == Some(expected),
        "v0: the final report after SIGTERM says {:?}, expected {expected:?}",
        last.frames(STANDALONE_IFACE)
    );
    Ok(Outcome::Ran(Box::new(observed)))
}

/// Frames from peer 1 into p1 of a two-port bridge.
mod bridge_plan {
    /// To br0's MAC, dst IP 192.0.2.1.
    pub const TO_BRIDGE_MAC: u64 = 3;
    /// To p2's MAC, a local FDB entry of the bridge, dst IP 192.0.2.1:
    /// passed up, then dropped as OTHERHOST on br0.
    pub const TO_OTHER_PORT_MAC: u64 = 2;
    pub const BROADCAST: u64 = 4;
    pub const MULTICAST: u64 = 2;
    /// Foreign MAC, dst IP not on the host.
    pub const FOREIGN_NOT_LOCAL: u64 = 3;
    /// Foreign MAC, dst IP 192.0.2.1, untagged and with an 802.1Q tag.
    pub const FOREIGN_HOST_IPV4: u64 = 2;
    pub const FOREIGN_HOST_DOT1Q: u64 = 1;

    pub const OWN: u64 = TO_BRIDGE_MAC;
    pub const HOST_IP_WRONG_MAC: u64 = TO_OTHER_PORT_MAC + FOREIGN_HOST_IPV4 + FOREIGN_HOST_DOT1Q;
    pub const FOREIGN: u64 = FOREIGN_NOT_LOCAL + HOST_IP_WRONG_MAC;
}

fn bridge(bin: &Path, attach: &Attach) -> Result<Outcome> {
    use bridge_plan as m;
    let lab = BridgeLab::with_options(BridgeLabOptions {
        ports: 2,
        ns_prefix: NS_PREFIX.to_owned(),
        ..BridgeLabOptions::default()
    })?;
    let mut macdrop = match spawn(bin, lab.host(), &["--bridge", BRIDGE], attach)? {
        Ok(macdrop) => macdrop,
        Err(why) => return Ok(Outcome::Unsupported(why)),
    };
    let br0_before = link_stats(lab.host(), BRIDGE)?.rx_packets;

    let tx = RawSender::new(lab.peer(1), PEER_IFACE)?;
    let (src, sip) = (peer_mac(1), peer_ipv4(1));
    let n = |count: u64| count as usize;
    let foreign_to_host = ipv4_udp(FOREIGN_MAC, src, sip, BRIDGE_IPV4);
    tx.send(
        &ipv4_udp(BRIDGE_MAC, src, sip, BRIDGE_IPV4),
        n(m::TO_BRIDGE_MAC),
    )?;
    tx.send(
        &ipv4_udp(port_mac(2), src, sip, BRIDGE_IPV4),
        n(m::TO_OTHER_PORT_MAC),
    )?;
    let subnet_broadcast = std::net::Ipv4Addr::new(192, 0, 2, 255);
    tx.send(
        &ipv4_udp(BROADCAST, src, sip, subnet_broadcast),
        n(m::BROADCAST),
    )?;
    tx.send(
        &ipv4_udp(MULTICAST_V4, src, sip, MULTICAST_V4_GROUP),
        n(m::MULTICAST),
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4),
        n(m::FOREIGN_NOT_LOCAL),
    )?;
    tx.send(&foreign_to_host, n(m::FOREIGN_HOST_IPV4))?;
    tx.send(
        &with_vlan_tags(&foreign_to_host, &[(TPID_8021Q, 10)]),
        n(m::FOREIGN_HOST_DOT1Q),
    )?;

    let on_p1 = FrameCounts {
        own: m::OWN,
        broadcast: m::BROADCAST,
        multicast: m::MULTICAST,
        foreign_unicast: m::FOREIGN,
        host_ip_wrong_mac: m::HOST_IP_WRONG_MAC,
        ..FrameCounts::default()
    }
    .with_total();
    // The bridge passes up local FDB destinations, broadcast and multicast
    // (no querier, so snooping floods and delivers), each with its fate.
    let on_br0 = FrameCounts {
        own: m::OWN,
        broadcast: m::BROADCAST,
        multicast: m::MULTICAST,
        foreign_unicast: m::TO_OTHER_PORT_MAC,
        host_ip_wrong_mac: m::TO_OTHER_PORT_MAC,
        ..FrameCounts::default()
    }
    .with_total();
    let zero = FrameCounts::default();
    let report = settle(&mut macdrop, |r| {
        r.frames("p1") == Some(on_p1)
            && r.frames(BRIDGE) == Some(on_br0)
            && r.frames("p2") == Some(zero)
    })?;
    expect_counts(&macdrop, "p1", report.frames("p1"), on_p1)?;
    if report.frames(BRIDGE) != Some(on_br0) {
        // Tell a kernel that passed up something else from a miscount.
        let passed_up = link_stats(lab.host(), BRIDGE)?.rx_packets - br0_before;
        expect_counts(&macdrop, BRIDGE, report.frames(BRIDGE), on_br0)
            .with_context(|| format!("the kernel's br0 rx_packets grew by {passed_up}"))?;
    }
    expect_counts(&macdrop, "p2", report.frames("p2"), zero)?;
    let observed = observe(&macdrop)?;
    macdrop.stop()?;
    expect_nothing_left(lab.host())?;
    Ok(Outcome::Ran(Box::new(observed)))
}

/// The README's incident: br0's MAC is not in its FDB, so frames to it
/// carrying br0's IP are flooded instead of delivered.
fn incident(bin: &Path, attach: &Attach) -> Result<Outcome> {
    const TO_BRIDGE_MAC: u64 = 7;
    const FOREIGN_NOT_LOCAL: u64 = 2;
    let lab = BridgeLab::with_options(BridgeLabOptions {
        ports: 2,
        ns_prefix: NS_PREFIX.to_owned(),
        ..BridgeLabOptions::default()
    })?;
    lab.remove_bridge_mac_from_fdb()?;

    // `macdrop status` (no eBPF) names the finding.
    let status = macdrop::run_command(
        lab.host(),
        &[
            bin.to_str().context("macdrop path is not UTF-8")?,
            "status",
            "--format",
            "json",
        ],
        Duration::from_secs(60),
    )?;
    ensure!(
        status.status.success() && status.stdout.contains("bridge_mac_not_in_fdb"),
        "`macdrop status --format json` exited {} without naming bridge_mac_not_in_fdb; stdout: {}; stderr: {}",
        status.status,
        status.stdout.trim(),
        status.stderr.trim()
    );

    let mut macdrop = match spawn(bin, lab.host(), &["--bridge", BRIDGE], attach)? {
        Ok(macdrop) => macdrop,
        Err(why) => return Ok(Outcome::Unsupported(why)),
    };
    let tx = RawSender::new(lab.peer(1), PEER_IFACE)?;
    let (src, sip) = (peer_mac(1), peer_ipv4(1));
    tx.send(
        &ipv4_udp(BRIDGE_MAC, src, sip, BRIDGE_IPV4),
        TO_BRIDGE_MAC as usize,
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4),
        FOREIGN_NOT_LOCAL as usize,
    )?;
    let on_p1 = FrameCounts {
        foreign_unicast: TO_BRIDGE_MAC + FOREIGN_NOT_LOCAL,
        host_ip_wrong_mac: TO_BRIDGE_MAC,
        ..FrameCounts::default()
    }
    .with_total();
    let zero = FrameCounts::default();
    let report = settle(&mut macdrop, |r| {
        r.frames("p1") == Some(on_p1)
            && r.frames(BRIDGE) == Some(zero)
            && r.frames("p2") == Some(zero)
    })?;
    expect_counts(&macdrop, "p1", report.frames("p1"), on_p1)?;
    expect_counts(&macdrop, BRIDGE, report.frames(BRIDGE), zero)?;
    expect_counts(&macdrop, "p2", report.frames("p2"), zero)?;
    let observed = observe(&macdrop)?;
    macdrop.stop()?;
    expect_nothing_left(lab.host())?;
    Ok(Outcome::Ran(Box::new(observed)))
}

/// `max_mtu` of `ifname` in `ns` (`ip -d -j link show`), if iproute2 says.
fn max_mtu(ns: &NetNs, ifname: &str) -> Result<Option<u64>> {
    let json = ns.exec(&["ip", "-d", "-j", "link", "show", "dev", ifname])?;
    let links: Value = serde_json::from_slice(&json).context("parsing `ip -d -j link show`")?;
    Ok(links[0]["max_mtu"].as_u64())
}

/// A standalone veth whose peer has a jumbo MTU (9000): macdrop must
/// either watch it and count frames larger than a page (native XDP on veth
/// needs multi-buffer support for that, Linux >= 5.18) or refuse cleanly
/// (exit 3, an environment error). Exit 1 is a failure.
fn jumbo(bin: &Path, attach: &Attach) -> Result<Outcome> {
    const MTU: &str = "9000";
    const BIG: usize = 8000;
    let lab = StandaloneLab::new()?;
    lab.peer()
        .exec(&["ip", "link", "set", PEER_IFACE, "mtu", MTU])?;
    lab.host()
        .exec(&["ip", "link", "set", STANDALONE_IFACE, "mtu", MTU])?;
    let mut macdrop = match spawn(bin, lab.host(), &["--iface", STANDALONE_IFACE], attach) {
        Ok(Ok(macdrop)) => macdrop,
        Ok(Err(why)) => return Ok(Outcome::Unsupported(why)),
        Err(error) if format!("{error:#}").contains("exit status: 3") => {
            let why = format!("{error:#}");
            let line = why
                .lines()
                .find(|l| l.starts_with("macdrop: "))
                .unwrap_or(&why)
                .to_owned();
            return Ok(Outcome::Ran(Box::new(Observed {
                jumbo: Some(format!("refused: {line}")),
                ..Observed::default()
            })));
        }
        Err(error) => return Err(error.context(format!("peer MTU {MTU}"))),
    };

    let tx = RawSender::new(lab.peer(), PEER_IFACE)?;
    let (src, sip) = (STANDALONE_PEER_MAC, STANDALONE_PEER_IPV4);
    // IP and UDP lengths stay those of the small datagram: the rest is
    // Ethernet padding, which the IP layer trims.
    let big = |mut frame: Vec<u8>| {
        frame.resize(BIG, 0);
        frame
    };
    let own = ipv4_udp(STANDALONE_MAC, src, sip, STANDALONE_IPV4);
    tx.send(&own, 2)?;
    tx.send(&big(own), 1)?;
    tx.send(&big(ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4)), 1)?;
    tx.send(&ipv4_udp(FOREIGN_MAC, src, sip, STANDALONE_IPV4), 1)?;
    let expected = FrameCounts {
        own: 3,
        foreign_unicast: 2,
        host_ip_wrong_mac: 1,
        ..FrameCounts::default()
    }
    .with_total();
    let report = settle(&mut macdrop, |r| {
        r.frames(STANDALONE_IFACE) == Some(expected)
    })?;
    expect_counts(
        &macdrop,
        STANDALONE_IFACE,
        report.frames(STANDALONE_IFACE),
        expected,
    )?;
    let mut observed = observe(&macdrop)?;
    let hook = observed
        .hooks
        .get("standalone")
        .cloned()
        .unwrap_or_else(|| "?".to_owned());
    observed.jumbo = Some(format!("counted ({hook})"));
    // Only the jumbo facts: hooks and the rest come from the other scenarios.
    let observed = Observed {
        jumbo: observed.jumbo,
        ..Observed::default()
    };
    macdrop.stop()?;
    expect_nothing_left(lab.host())?;
    Ok(Outcome::Ran(Box::new(observed)))
}

/// A file removed on drop.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `--pcap FILE` on the standalone veth: the mismatched frames (for the
/// veth's IP, one of them VLAN-tagged, and for another host, one longer
/// than the snap length) and only those in the file, exactly as sent up to
/// 128 bytes, with their lengths on the wire, whichever program captured
/// them (tc, multi-buffer XDP, or the legacy XDP program before 5.18).
fn pcap(bin: &Path, attach: &Attach) -> Result<Outcome> {
    const SNAPLEN: usize = 128;
    let lab = StandaloneLab::new()?;
    let file = RemoveOnDrop(std::env::temp_dir().join(format!(
        "{NS_PREFIX}-{}-{}.pcapng",
        std::process::id(),
        attach.label()
    )));
    let path = file.0.to_str().context("temp path is not UTF-8")?;
    let args = ["--iface", STANDALONE_IFACE, "--pcap", path];
    let mut macdrop = match spawn(bin, lab.host(), &args, attach)? {
        Ok(macdrop) => macdrop,
        Err(why) => return Ok(Outcome::Unsupported(why)),
    };

    let tx = RawSender::new(lab.peer(), PEER_IFACE)?;
    let (src, sip) = (STANDALONE_PEER_MAC, STANDALONE_PEER_IPV4);
    let to_host = ipv4_udp(FOREIGN_MAC, src, sip, STANDALONE_IPV4);
    let tagged = with_vlan_tags(&to_host, &[(TPID_8021Q, 10)]);
    // Ethernet padding past the datagram: the IP layer trims it.
    let mut large = ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4);
    large.resize(1000, 0x5a);
    let own = ipv4_udp(STANDALONE_MAC, src, sip, STANDALONE_IPV4);
    // (frame, copies, mismatched)
    let plan: [(&[u8], usize, bool); 4] = [
        (&own, 2, false),
        (&to_host, 2, true),
        (&tagged, 1, true),
        (&large, 1, true),
    ];
    let mut want: Vec<RawFrame> = Vec::new();
    for (frame, copies, mismatched) in plan {
        tx.send(frame, copies)?;
        if mismatched {
            want.extend(std::iter::repeat_n(
                RawFrame {
                    interface: STANDALONE_IFACE.to_owned(),
                    comment: String::new(),
                    orig_len: frame.len() as u32,
                    data: frame[..frame.len().min(SNAPLEN)].to_vec(),
                },
                copies,
            ));
        }
    }
    let n = want.len() as u64;
    let written = |r: &Report| r.pcap.as_ref().map(|p| p.frames_written);
    settle(&mut macdrop, |r| written(r) == Some(n))?;
    let observed = observe(&macdrop)?;
    let last = macdrop.stop()?;
    expect_nothing_left(lab.host())?;
    let summary = last.pcap.context("no pcap object in the final report")?;
    ensure!(
        (
            summary.frames_written,
            summary.not_captured_rate_limit,
            summary.not_captured_ring_full
        ) == (n, 0, 0),
        "final report: {summary:?}, expected {n} frames written and none missed"
    );

    let mut got = read_raw(&file.0)?;
    for f in &got {
        ensure!(
            f.comment
                .ends_with(&format!("on {STANDALONE_IFACE} (standalone)")),
            "comment {:?}",
            f.comment
        );
    }
    // Frames sent back to back may be received on different CPUs, so
    // compare as sorted lists: exact frames, exact copies.
    for f in got.iter_mut() {
        f.comment.clear();
    }
    got.sort_by(|a, b| a.data.cmp(&b.data));
    want.sort_by(|a, b| a.data.cmp(&b.data));
    ensure!(
        got == want,
        "{} read back {} frame(s), expected {}: got {got:02x?}",
        file.0.display(),
        got.len(),
        want.len()
    );
    let hook = observed
        .hooks
        .get("standalone")
        .cloned()
        .unwrap_or_else(|| "?".to_owned());
    Ok(Outcome::Ran(Box::new(Observed {
        pcap: Some(format!("{n} frames ({hook})")),
        ..Observed::default()
    })))
}

/// What the running kernel offers macdrop, read independently of it: from
/// the kernel's BTF (`macdrop_tests::btf`) and the length of the
/// `IFLA_STATS64` it sends (`macdrop_tests::kernel::stats64_len`), never
/// from its version. It decides what the scenarios require.
struct KernelFacts {
    btf: KernelBtf,
    /// `rx_otherhost_dropped` in the kernel's `rtnl_link_stats64`.
    otherhost_counter: bool,
    stats64_len: usize,
}

static KERNEL: OnceLock<KernelFacts> = OnceLock::new();

/// The facts `main` read before any scenario.
fn kernel() -> &'static KernelFacts {
    KERNEL.get().expect("main reads the kernel's facts first")
}

impl KernelFacts {
    fn read() -> Result<Self> {
        let btf = KernelBtf::read().context("reading the kernel's BTF")?;
        let stats64_len = macdrop_tests::kernel::stats64_len(1)
            .context("reading IFLA_STATS64 of lo over netlink")?;
        let otherhost_counter = macdrop_tests::kernel::has_otherhost_counter()?;
        Ok(Self {
            btf,
            otherhost_counter,
            stats64_len,
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "btf": self.btf.btf,
            "drop_reasons": self.btf.drop_reasons,
            "reason_otherhost": self.btf.reason_otherhost,
            "otherhost_counter": self.otherhost_counter,
            "stats64_len": self.stats64_len,
            "tcx": self.btf.tcx,
        })
    }

    /// The confirmed OTHERHOST drops macdrop must report on the standalone
    /// veth after `foreign` foreign unicast frames: `None` (no `drops`)
    /// where the kernel has no drop reasons.
    fn want_drops_otherhost(&self, foreign: u64) -> Option<u64> {
        self.btf
            .drop_reasons
            .then_some(if self.btf.reason_otherhost {
                foreign
            } else {
                0
            })
    }

    /// `kernel_rx_otherhost_dropped` macdrop must report there: `None`
    /// where the kernel's struct has no such counter.
    fn want_otherhost_counter(&self, foreign: u64) -> Option<u64> {
        self.otherhost_counter.then_some(foreign)
    }
}

/// After SIGKILL, exactly the documented leftovers stay (README,
/// "Guarantees"): on every interface whose hook is `tc-clsact` (kernels
/// whose BTF has no TCX), the clsact qdisc macdrop added and one cls_bpf
/// ingress filter `macdrop_tc`, its program still loaded; nothing else
/// anywhere (TCX and XDP links are file descriptors and go with the
/// process). The next start in the namespace removes them: while it runs,
/// each such interface holds one `macdrop_tc` filter, its own, with another
/// program; after its SIGINT nothing at all is left.
fn sigkill_leftovers(bin: &Path, attach: &Attach) -> Result<Outcome> {
    const WATCHED: [&str; 3] = ["p1", "p2", BRIDGE];
    let lab = BridgeLab::with_options(BridgeLabOptions {
        ports: 2,
        ns_prefix: NS_PREFIX.to_owned(),
        ..BridgeLabOptions::default()
    })?;
    let host = lab.host();
    let mut macdrop = match spawn(bin, host, &["--bridge", BRIDGE], attach)? {
        Ok(macdrop) => macdrop,
        Err(why) => return Ok(Outcome::Unsupported(why)),
    };
    let all_there = |r: &Report| {
        WATCHED
            .iter()
            .all(|i| r.interface(i).is_some_and(|i| i.hook.is_some()))
    };
    let report = settle(&mut macdrop, all_there)?;
    let hook_of = |r: &Report, dev: &str| -> Result<String> {
        r.interface(dev)
            .and_then(|i| i.hook.clone())
            .with_context(|| format!("{dev} not attached in {r:?}"))
    };
    let mut clsact = Vec::new();
    for dev in WATCHED {
        if hook_of(&report, dev)? == "tc-clsact" {
            clsact.push(dev);
        }
    }
    // Every interface has its hook now, so every filter is in place.
    let observed = observe(&macdrop)?;
    macdrop.kill_with(libc::SIGKILL)?;

    // Exactly the documented leftovers.
    let mut stale = BTreeMap::new();
    for dev in WATCHED {
        let left = Leftovers::read(host, dev)?;
        if clsact.contains(&dev) {
            ensure!(
                left.clsact_qdisc
                    && !left.xdp
                    && left.macdrop_filters.len() == 1
                    && left.other_filters == 0,
                "after SIGKILL, {dev} (tc-clsact) holds {left:?}; documented: its clsact qdisc and one \
                 macdrop_tc filter, nothing else"
            );
            stale.insert(dev, left.macdrop_filters[0]);
        } else {
            ensure!(
                left.is_empty(),
                "after SIGKILL, {dev} ({}) holds {left:?}; documented: nothing",
                hook_of(&report, dev)?
            );
        }
    }

    // The next start removes them: each clsact interface holds its own
    // filter only, on a program of its own.
    let mut macdrop = match spawn(bin, host, &["--bridge", BRIDGE], attach)? {
        Ok(macdrop) => macdrop,
        Err(why) => return Ok(Outcome::Unsupported(why)),
    };
    let report = settle(&mut macdrop, all_there)?;
    for dev in WATCHED {
        let hook = hook_of(&report, dev)?;
        let left = Leftovers::read(host, dev)?;
        if let Some(old) = stale.get(dev) {
            ensure!(
                hook == "tc-clsact"
                    && left.macdrop_filters.len() == 1
                    && left.other_filters == 0
                    && (old.is_none() || left.macdrop_filters[0] != *old),
                "after the next start, {dev} ({hook}) holds {left:?}; expected one macdrop_tc filter \
                 of the new process (the stale one had program {old:?})"
            );
        }
    }
    macdrop.interrupt()?;
    expect_nothing_left(host)?;
    let sigkill = if clsact.is_empty() {
        "nothing stayed".to_owned()
    } else {
        format!(
            "{} clsact filter(s) and qdisc(s) stayed ({}), the next start removed them",
            clsact.len(),
            clsact.join(" ")
        )
    };
    say(&format!("sigkill/{}: {sigkill}", attach.label()));
    Ok(Outcome::Ran(Box::new(Observed {
        sigkill: Some(sigkill),
        ..observed
    })))
}

/// What macdrop may leave on one interface: read with iproute2's JSON.
#[derive(Debug)]
struct Leftovers {
    xdp: bool,
    clsact_qdisc: bool,
    /// The program id of each `macdrop_tc` ingress filter (`None` if tc
    /// shows none).
    macdrop_filters: Vec<Option<u64>>,
    other_filters: usize,
}

impl Leftovers {
    fn read(ns: &NetNs, dev: &str) -> Result<Self> {
        let json = |argv: &[&str]| -> Result<Value> {
            let out = ns.exec(argv)?;
            if out.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Array(Vec::new()));
            }
            serde_json::from_slice(&out).with_context(|| format!("parsing `{}`", argv.join(" ")))
        };
        let link = json(&["ip", "-d", "-j", "link", "show", "dev", dev])?;
        let qdiscs = json(&["tc", "-j", "qdisc", "show", "dev", dev])?;
        let filters = json(&["tc", "-j", "filter", "show", "dev", dev, "ingress"])?;
        let mut macdrop_filters = Vec::new();
        let mut other_filters = 0;
        // Entries without options are the chain/priority headers tc prints
        // before the filters themselves.
        for f in filters.as_array().into_iter().flatten() {
            let options = &f["options"];
            if options.is_null() {
                continue;
            }
            if options["bpf_name"] == "macdrop_tc" {
                macdrop_filters.push(find_id(options));
            } else {
                other_filters += 1;
            }
        }
        Ok(Self {
            xdp: !link[0]["xdp"].is_null(),
            clsact_qdisc: qdiscs
                .as_array()
                .into_iter()
                .flatten()
                .any(|q| q["kind"] == "clsact"),
            macdrop_filters,
            other_filters,
        })
    }

    fn is_empty(&self) -> bool {
        !self.xdp
            && !self.clsact_qdisc
            && self.macdrop_filters.is_empty()
            && self.other_filters == 0
    }
}

/// The program id in a cls_bpf filter's options (`"prog": {"id": N}` in
/// iproute2's JSON; searched, as its nesting differs between versions).
fn find_id(v: &Value) -> Option<u64> {
    match v {
        Value::Object(map) => map
            .get("id")
            .and_then(Value::as_u64)
            .or_else(|| map.values().find_map(find_id)),
        Value::Array(items) => items.iter().find_map(find_id),
        _ => None,
    }
}

/// Fails if anything macdrop attached in `ns` outlived it: an XDP program
/// on a link, an ingress filter, a clsact qdisc (the labs have none of
/// their own). TCX links are file descriptors and cannot outlive it.
fn expect_nothing_left(ns: &NetNs) -> Result<()> {
    let json = |argv: &[&str]| -> Result<Value> {
        let out = ns.exec(argv)?;
        if out.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Array(Vec::new()));
        }
        serde_json::from_slice(&out).with_context(|| format!("parsing `{}`", argv.join(" ")))
    };
    let mut left = Vec::new();
    for link in json(&["ip", "-d", "-j", "link", "show"])?
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = link["ifname"].as_str().unwrap_or("?");
        if !link["xdp"].is_null() {
            left.push(format!(
                "{name}: XDP program {}",
                link["xdp"]["prog"]["name"]
            ));
        }
        let filters = json(&["tc", "-j", "filter", "show", "dev", name, "ingress"])?;
        if filters.as_array().is_some_and(|f| !f.is_empty()) {
            left.push(format!("{name}: ingress filter(s) {filters}"));
        }
    }
    for qdisc in json(&["tc", "-j", "qdisc", "show"])?
        .as_array()
        .into_iter()
        .flatten()
    {
        if qdisc["kind"] == "clsact" {
            left.push(format!(
                "{}: clsact qdisc",
                qdisc["dev"].as_str().unwrap_or("?")
            ));
        }
    }
    ensure!(
        left.is_empty(),
        "left behind after macdrop exited: {}",
        left.join("; ")
    );
    Ok(())
}
