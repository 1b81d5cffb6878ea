//! The end-to-end scenarios, one function each, run unchanged by the host
//! suite (`tests/tests/scenarios.rs`, on the host's kernel) and by the
//! kernel matrix's guest (`src/bin/matrix_guest.rs`, on every kernel it
//! boots).
//!
//! Each runs the real `macdrop` binary on a lab of its own, sends exact
//! frames and requires exact counts. What it requires beyond the counts
//! comes from what the kernel has, read first and independently of
//! macdrop ([`KernelFacts`]: its BTF and its `IFLA_STATS64`), never from
//! its version:
//!
//! - [`standalone`]: a `StandaloneLab`, exact frames of each class into the
//!   veth, exact counts; where the kernel has them, the confirmed OTHERHOST
//!   drops and `rx_otherhost_dropped` equal the foreign unicast sent, and
//!   are null where it does not;
//! - [`bridge`]: a two-port `BridgeLab`, a mix into p1, exact counts on p1,
//!   br0 (what the bridge passed up, cross-checked with br0's own
//!   `rx_packets`) and p2;
//! - [`incident`]: the bridge's MAC removed from its FDB, frames to it
//!   counted as `host_ip_wrong_mac` on p1 and never on br0; `macdrop
//!   status` names the finding;
//! - [`jumbo`]: a veth whose peer has MTU 9000, frames of 8000 bytes:
//!   counted exactly, or refused cleanly (exit 3); anything else fails;
//! - [`pcap`]: `--pcap FILE` on the standalone veth; the file, read back
//!   with the pcap-file crate (no tshark in the matrix's initramfs), holds
//!   exactly the mismatched frames, byte for byte up to 128 bytes;
//! - [`fate`]: the fate oracle over every lab the kernel can build (a lab
//!   it cannot is a skipped part), with macdrop's default hooks;
//! - [`sigkill`]: after SIGKILL exactly the documented leftovers, removed
//!   by the next start, nothing after its SIGINT;
//! - [`vlan_gap`]: a VLAN-filtering bridge with a port without PVID and
//!   the bridge in no VLAN: `status` and `diagnose` name exactly
//!   `bridge_vlan_filtering_gap` and its facts (skipped where the kernel
//!   cannot filter VLANs).
//!
//! Every scenario also requires that macdrop left nothing attached after
//! it exited, and that a tc hook is the one the kernel's BTF says
//! (`tcx` or `tc-clsact`).
//!
//! A scenario needs only what the matrix's initramfs has: the `macdrop`
//! binary, iproute2 (`ip`, `bridge`, `tc`), busybox and this crate; no
//! tshark, no tcpdump.

mod bridge;
mod fate;
mod incident;
mod jumbo;
mod pcap;
mod sigkill;
mod standalone;
mod vlan_gap;

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

use crate::{
    btf::KernelBtf,
    macdrop::{FrameCounts, Macdrop, Output, READY_PREFIX, Report},
    netns::NetNs,
};

/// Every scenario, in the order the matrix runs them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "standalone",
        run: standalone::run,
    },
    Scenario {
        name: "bridge",
        run: bridge::run,
    },
    Scenario {
        name: "incident",
        run: incident::run,
    },
    Scenario {
        name: "jumbo",
        run: jumbo::run,
    },
    Scenario {
        name: "pcap",
        run: pcap::run,
    },
    Scenario {
        name: "fate",
        run: fate::run,
    },
    Scenario {
        name: "sigkill",
        run: sigkill::run,
    },
    Scenario {
        name: "vlan_gap",
        run: vlan_gap::run,
    },
];

/// The scenario called `name`.
pub fn by_name(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// `--attach` values tried after macdrop's default. A value macdrop
/// rejects as a usage error is [`Outcome::Unsupported`], not a failure.
pub const ATTACH_MODES: &[&str] = &["xdp", "tc"];

/// How long counters may take to reach their expected values. Generous:
/// under QEMU's TCG everything is ~10x slower than on hardware.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Namespace prefix of the bridge labs, so a leftover is easy to tell
/// apart.
pub const NS_PREFIX: &str = "macdrop-km";

/// How macdrop is told to attach.
#[derive(Clone, Copy, Debug)]
pub enum Attach {
    /// No `--attach`: whatever macdrop picks.
    Default,
    /// `--attach MODE`.
    Mode(&'static str),
}

impl Attach {
    /// The name of the mode in check names (`standalone/xdp`).
    pub fn label(self) -> &'static str {
        match self {
            Attach::Default => "default",
            Attach::Mode(mode) => mode,
        }
    }

    /// The arguments for `macdrop watch`.
    pub fn args(self) -> Vec<&'static str> {
        match self {
            Attach::Default => Vec::new(),
            Attach::Mode(mode) => vec!["--attach", mode],
        }
    }
}

/// What one scenario saw besides its exact counts.
#[derive(Debug, Default)]
pub struct Observed {
    /// Role ("standalone", "port", "bridge") -> hook, from the JSON `hook`.
    pub hooks: BTreeMap<String, String>,
    /// Whether the JSON `drops` was non-null (confirmed drops available),
    /// with the standalone veth's OTHERHOST count when it was.
    pub drops: Option<bool>,
    pub drops_otherhost: Option<u64>,
    /// The top-level `drops_unavailable` reason.
    pub drops_unavailable: Option<String>,
    /// The top-level `drop_source` (`tp_btf` or `raw_tracepoint`): the
    /// kernels' tables show which program each kernel's verifier took.
    pub drop_source: Option<String>,
    /// Whether `rx_otherhost_dropped_since_attach` was non-null, and its value on
    /// the standalone veth.
    pub otherhost: Option<bool>,
    pub otherhost_value: Option<u64>,
    /// The readiness line and anything else macdrop said on stderr.
    pub watching: Option<String>,
    pub stderr: Vec<String>,
    /// The standalone veth's peer `max_mtu` while macdrop watched the
    /// veth (native XDP without multi-buffer support caps it).
    pub peer_max_mtu: Option<u64>,
    /// The jumbo scenario: "counted (HOOK)" or "refused: MESSAGE".
    pub jumbo: Option<String>,
    /// The pcap scenario: "N frames (HOOK)".
    pub pcap: Option<String>,
    /// The sigkill scenario: what stayed after SIGKILL, and that the next
    /// start removed it.
    pub sigkill: Option<String>,
    /// Parts of the scenario this kernel cannot run (a fate lab it cannot
    /// build): (part, why). Each is a skipped check of its own.
    pub skipped: Vec<(String, String)>,
    /// Lines for the console besides the summary (the fate oracle's table,
    /// what stayed after SIGKILL), printed by the runner before it.
    pub notes: Vec<String>,
}

impl Observed {
    /// One line for the console: hooks, availability, the scenario's own facts.
    pub fn summary(&self) -> String {
        let hooks: Vec<String> = self.hooks.iter().map(|(r, h)| format!("{r}={h}")).collect();
        let mut parts = Vec::new();
        if !hooks.is_empty() {
            parts.push(format!("hooks {}", hooks.join(" ")));
        }
        if let Some(drops) = self.drops {
            parts.push(match (drops, &self.drop_source) {
                (true, Some(source)) => format!("drops available via {source}"),
                (true, None) => "drops available".to_owned(),
                (false, _) => "drops null".to_owned(),
            });
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

/// What a scenario returns when nothing failed.
pub enum Outcome {
    /// It ran, and this is what it saw besides its exact counts.
    Ran(Box<Observed>),
    /// Not run here, and why: counted as skipped, never as passed.
    Skipped(String),
    /// macdrop refused the attach mode as a usage error (exit 2).
    Unsupported(String),
}

/// One end-to-end scenario: a name (the check is `NAME/ATTACH`) and the
/// function that runs it.
pub struct Scenario {
    pub name: &'static str,
    pub run: fn(&Path, &Attach, &KernelFacts) -> Result<Outcome>,
}

/// Starts `macdrop watch --format json ...` in `ns`. A usage error (exit
/// 2, e.g. an `--attach` value this build does not know) is `Unsupported`.
pub fn spawn(
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
pub fn settle(macdrop: &mut Macdrop, cond: impl FnMut(&Report) -> bool) -> Result<Report> {
    match macdrop.wait_for(cond, SETTLE) {
        Ok(report) => Ok(report),
        Err(error) => macdrop.latest().cloned().ok_or(error),
    }
}

/// Fails with both sides and the raw report unless `actual == expected`.
pub fn expect_counts(
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
pub fn observe(macdrop: &Macdrop, kernel: &KernelFacts) -> Result<Observed> {
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
            !hook.starts_with("tc") || hook == kernel.btf.tc_hook(),
            "{role}: hook {hook}, but this kernel's BTF says tc attaches as {}",
            kernel.btf.tc_hook()
        );
        observed.hooks.insert(role, hook);
        observed.drops = Some(!iface["kernel_drops"].is_null());
        observed.otherhost = Some(!iface["rx_otherhost_dropped_since_attach"].is_null());
    }
    observed.drops_unavailable = json["drops_unavailable"].as_str().map(str::to_owned);
    observed.drop_source = json["drop_source"].as_str().map(str::to_owned);
    for line in macdrop.stderr().lines() {
        if line.starts_with(READY_PREFIX) {
            observed.watching = Some(line.to_owned());
        } else if !line.trim().is_empty() {
            observed.stderr.push(line.to_owned());
        }
    }
    Ok(observed)
}

/// What the running kernel offers macdrop, read independently of it: from
/// the kernel's BTF (`crate::btf`) and the length of the
/// `IFLA_STATS64` it sends (`crate::kernel::stats64_len`), never
/// from its version. It decides what the scenarios require.
pub struct KernelFacts {
    pub btf: KernelBtf,
    /// `rx_otherhost_dropped` in the kernel's `rtnl_link_stats64`.
    pub otherhost_counter: bool,
    stats64_len: usize,
}

impl KernelFacts {
    /// Reads the running kernel's BTF and the size of its `IFLA_STATS64`.
    pub fn read() -> Result<Self> {
        let btf = KernelBtf::read().context("reading the kernel's BTF")?;
        let stats64_len =
            crate::kernel::stats64_len(1).context("reading IFLA_STATS64 of lo over netlink")?;
        let otherhost_counter = crate::kernel::has_otherhost_counter()?;
        Ok(Self {
            btf,
            otherhost_counter,
            stats64_len,
        })
    }

    /// The facts as the matrix's `kernel_has` object.
    pub fn to_json(&self) -> Value {
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
    pub fn want_drops_otherhost(&self, foreign: u64) -> Option<u64> {
        self.btf
            .drop_reasons
            .then_some(if self.btf.reason_otherhost {
                foreign
            } else {
                0
            })
    }

    /// `rx_otherhost_dropped_since_attach` macdrop must report there: `None`
    /// where the kernel's struct has no such counter.
    pub fn want_otherhost_counter(&self, foreign: u64) -> Option<u64> {
        self.otherhost_counter.then_some(foreign)
    }
}
/// Fails if anything macdrop attached in `ns` outlived it: an XDP program
/// on a link, an ingress filter, a clsact qdisc (the labs have none of
/// their own). TCX links are file descriptors and cannot outlive it.
pub fn expect_nothing_left(ns: &NetNs) -> Result<()> {
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

/// `max_mtu` of `ifname` in `ns` (`ip -d -j link show`), if iproute2 says.
pub fn max_mtu(ns: &NetNs, ifname: &str) -> Result<Option<u64>> {
    let json = ns.exec(&["ip", "-d", "-j", "link", "show", "dev", ifname])?;
    let links: Value = serde_json::from_slice(&json).context("parsing `ip -d -j link show`")?;
    Ok(links[0]["max_mtu"].as_u64())
}

/// The scenarios' bridge lab: `br0` with ports p1 and p2, its namespaces
/// named with the matrix's prefix.
fn two_port_lab() -> Result<crate::lab::BridgeLab> {
    crate::lab::BridgeLab::with_options(crate::lab::BridgeLabOptions {
        ports: 2,
        ns_prefix: NS_PREFIX.to_owned(),
        ..crate::lab::BridgeLabOptions::default()
    })
}
