//! `sigkill`: what SIGKILL leaves behind, and that the next start removes it.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::{Attach, KernelFacts, Observed, Outcome, expect_nothing_left, observe, settle, spawn};
use crate::{lab::BRIDGE, macdrop::Report, netns::NetNs};

/// After SIGKILL, exactly the documented leftovers stay (README,
/// "Guarantees"): on every interface whose hook is `tc-clsact` (kernels
/// whose BTF has no TCX), the clsact qdisc macdrop added and one cls_bpf
/// ingress filter `macdrop_tc`, its program still loaded; nothing else
/// anywhere (TCX and XDP links are file descriptors and go with the
/// process). The next start in the namespace removes them: while it runs,
/// each such interface holds one `macdrop_tc` filter, its own, with another
/// program; after its SIGINT nothing at all is left.
pub fn run(bin: &Path, attach: &Attach, kernel: &KernelFacts) -> Result<Outcome> {
    const WATCHED: [&str; 3] = ["p1", "p2", BRIDGE];
    let lab = super::two_port_lab()?;
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
    let observed = observe(&macdrop, kernel)?;
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
    Ok(Outcome::Ran(Box::new(Observed {
        notes: vec![format!("sigkill/{}: {sigkill}", attach.label())],
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
            // `macdrop_tc/OWNER-TOKEN` (`macdrop::kernel::tc::owner`), or
            // plain `macdrop_tc` from a macdrop that recorded no owner.
            let name = options["bpf_name"].as_str().unwrap_or_default();
            if name == "macdrop_tc" || name.starts_with("macdrop_tc/") {
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
