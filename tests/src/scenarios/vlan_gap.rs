//! `vlan_gap`: a VLAN-filtering bridge with gaps in its VLAN table, where
//! the kernel can filter VLANs (this is the only place the suite can
//! build one: the matrix guests have CONFIG_BRIDGE_VLAN_FILTERING, the
//! host need not). `macdrop status` warns `bridge_vlan_filtering_gap`
//! and nothing else, and `macdrop diagnose` gives the gaps exactly.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};

use super::{Attach, KernelFacts, Outcome, expect_nothing_left};
use crate::{kernel::has_vlan_filtering, lab::BRIDGE, macdrop};

/// How long one `status` or `diagnose` may take under emulation.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(bin: &Path, attach: &Attach, _kernel: &KernelFacts) -> Result<Outcome> {
    if let Attach::Mode(_) = attach {
        return Ok(Outcome::Skipped(
            "status and diagnose's rules do not depend on the hooks: run with the \
             default ones only"
                .into(),
        ));
    }
    let lab = super::two_port_lab()?;
    let host = lab.host();
    if !has_vlan_filtering(host) {
        return Ok(Outcome::Skipped(
            "this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)".into(),
        ));
    }
    // p2 without a PVID, br0 (which has the host's address) member of no
    // VLAN, so p1's PVID 1 is not br0's either.
    lab.set_vlan_filtering()?;
    for argv in [
        &["bridge", "vlan", "del", "vid", "1", "dev", "p2"][..],
        &["bridge", "vlan", "del", "vid", "1", "dev", BRIDGE, "self"],
    ] {
        host.exec(argv)?;
    }
    let bin = bin.to_str().context("macdrop path is not UTF-8")?;
    let json_of = |args: &[&str]| -> Result<Value> {
        let mut argv = vec![bin];
        argv.extend(args);
        let out = macdrop::run_command(host, &argv, RUN_TIMEOUT)?;
        ensure!(
            out.status.success(),
            "`macdrop {}` exited {}; stderr: {}",
            args.join(" "),
            out.status,
            out.stderr.trim()
        );
        serde_json::from_str(&out.stdout).context("macdrop printed no JSON")
    };
    let ids = |v: &Value| -> Vec<(String, String)> {
        v["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| (f["id"].to_string(), f["interface"].to_string()))
            .collect()
    };
    let want = vec![(
        "\"bridge_vlan_filtering_gap\"".to_owned(),
        format!("\"{BRIDGE}\""),
    )];
    let status = json_of(&["status", "--format", "json"])?;
    ensure!(
        ids(&status) == want,
        "status findings: {}",
        status["findings"]
    );
    let report = json_of(&[
        "diagnose",
        "--duration",
        "1",
        "--format",
        "json",
        "--bridge",
        BRIDGE,
    ])?;
    ensure!(
        ids(&report) == want,
        "diagnose findings: {}",
        report["findings"]
    );
    let facts = &report["findings"][0]["facts"];
    let expected = json!({
        "ports_without_pvid": ["p2"],
        "bridge_pvid": null,
        "bridge_vids": [],
        "pvids_not_on_bridge": [{"vid": 1, "ports": ["p1"]}],
        "bridge_has_addrs": true,
    });
    ensure!(*facts == expected, "facts {facts}, expected {expected}");
    expect_nothing_left(host)?;
    Ok(Outcome::Ran(Box::default()))
}
