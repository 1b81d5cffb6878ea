//! Whether bridged frames go through iptables/nftables, in the current
//! network namespace: br_netfilter's switches (per namespace since Linux
//! 5.3, under /proc/sys/net/bridge, present only while br_netfilter is
//! loaded) and the forward base chains whose policy drops. One job: read
//! those facts; `diagnose::rules::br_netfilter_forward_drop` judges them.
//!
//! The ruleset is read from nft's JSON output (`nft -j list chains`, the
//! documented libnftables-json format), which also holds iptables-nft's
//! chains; iptables-legacy's tables are not visible there.

use std::{path::Path, process::Command};

use serde::Deserialize;

/// Where the switches are; the thread's namespace decides which.
const SYSCTL_DIR: &str = "/proc/sys/net/bridge";
/// nft at the paths Debian and others install it, never looked up in PATH
/// (macdrop runs privileged).
const NFT_PATHS: [&str; 2] = ["/usr/sbin/nft", "/sbin/nft"];

/// A forward base chain whose policy is drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropChain {
    /// "ip", "ip6", "inet" (the families bridged IP frames meet with
    /// br_netfilter).
    pub family: String,
    pub table: String,
    pub chain: String,
}

impl DropChain {
    /// "ip filter FORWARD", escaped for a terminal (the names are the
    /// ruleset's).
    pub fn describe(&self) -> String {
        crate::untrusted::escape_controls(&format!("{} {} {}", self.family, self.table, self.chain))
    }
}

/// The namespace's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// `bridge-nf-call-iptables`: None when br_netfilter is not loaded
    /// (no switch, bridged frames meet no IP hook).
    pub call_iptables: Option<bool>,
    /// `bridge-nf-call-ip6tables`.
    pub call_ip6tables: Option<bool>,
    /// The forward base chains with policy drop, or why they are unknown.
    pub drop_chains: Result<Vec<DropChain>, String>,
}

impl Facts {
    /// Reads them in the current thread's namespace.
    pub fn read() -> Self {
        let dir = Path::new(SYSCTL_DIR);
        Facts {
            call_iptables: switch(&dir.join("bridge-nf-call-iptables")),
            call_ip6tables: switch(&dir.join("bridge-nf-call-ip6tables")),
            drop_chains: forward_drop_chains(),
        }
    }

    /// Whether bridged IPv4 or IPv6 frames meet the IP hooks.
    pub fn bridged_ip_filtered(&self) -> bool {
        self.call_iptables == Some(true) || self.call_ip6tables == Some(true)
    }
}

fn switch(path: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim() != "0")
}

fn forward_drop_chains() -> Result<Vec<DropChain>, String> {
    let nft = NFT_PATHS
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or_else(|| "nft is not installed (Debian: apt-get install nftables)".to_owned())?;
    let out = Command::new(nft)
        .args(["-j", "list", "chains"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", nft.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(crate::untrusted::escape_controls(&format!(
            "nft -j list chains failed: {}",
            err.trim()
        )));
    }
    drop_chains_from_json(&out.stdout)
}

/// libnftables-json: `{"nftables": [{"metainfo": ...}, {"chain": ...}]}`.
#[derive(Deserialize)]
struct Document {
    nftables: Vec<Object>,
}

/// One element; only chains matter here, the rest is ignored.
#[derive(Deserialize)]
struct Object {
    chain: Option<Chain>,
}

#[derive(Deserialize)]
struct Chain {
    family: String,
    table: String,
    name: String,
    /// Base chains only.
    hook: Option<String>,
    policy: Option<String>,
}

/// The forward base chains of families bridged IP frames meet whose
/// policy is drop, from `nft -j list chains`.
pub fn drop_chains_from_json(json: &[u8]) -> Result<Vec<DropChain>, String> {
    let doc: Document = serde_json::from_slice(json)
        .map_err(|e| format!("nft printed JSON macdrop cannot read: {e}"))?;
    Ok(doc
        .nftables
        .into_iter()
        .filter_map(|o| o.chain)
        .filter(|c| {
            c.hook.as_deref() == Some("forward")
                && c.policy.as_deref() == Some("drop")
                && matches!(c.family.as_str(), "ip" | "ip6" | "inet")
        })
        .map(|c| DropChain {
            family: c.family,
            table: c.table,
            chain: c.name,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from nft 1.0.6 (`nft -j list chains`) with iptables-nft's
    /// FORWARD policy DROP, an nft inet table and a bridge-family chain.
    const RECORDED: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}, {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}, {"chain": {"family": "inet", "table": "fw", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"chain": {"family": "inet", "table": "fw", "name": "user", "handle": 2}}, {"chain": {"family": "bridge", "table": "b", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}]}"#;

    #[test]
    fn only_ip_forward_base_chains_with_policy_drop() {
        assert_eq!(
            drop_chains_from_json(RECORDED.as_bytes()).unwrap(),
            [DropChain {
                family: "ip".into(),
                table: "filter".into(),
                chain: "FORWARD".into()
            }]
        );
    }

    #[test]
    fn not_json_is_a_one_line_reason() {
        let err = drop_chains_from_json(b"table ip filter {").unwrap_err();
        assert!(
            err.starts_with("nft printed JSON macdrop cannot read"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn names_are_escaped() {
        let c = DropChain {
            family: "ip".into(),
            table: "t\x1b[2J".into(),
            chain: "c".into(),
        };
        assert!(!c.describe().contains('\x1b'));
    }
}
