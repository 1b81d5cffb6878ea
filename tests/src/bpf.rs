//! The kernel's own listing of BPF objects, as an independent witness of
//! what macdrop leaves attached: which programs and links a process holds
//! (from its file descriptors' fdinfo), and whether they still exist after
//! it exits (`bpftool -j`, read through serde).

use std::{collections::BTreeSet, fs, process::Command};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

/// BPF program and link ids held open by a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub programs: BTreeSet<u32>,
    pub links: BTreeSet<u32>,
}

/// Reads `/proc/PID/fdinfo/*`: a BPF program fd has a `prog_id:` line, a
/// BPF link fd a `link_id:` line (kernel-provided key/value text).
pub fn held_by(pid: u32) -> Result<Held> {
    let mut held = Held::default();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let Ok(text) = fs::read_to_string(entry?.path()) else {
            continue; // closed meanwhile
        };
        for line in text.lines() {
            let value = |key: &str| {
                line.strip_prefix(key)
                    .and_then(|v| v.trim().parse::<u32>().ok())
            };
            if let Some(id) = value("prog_id:") {
                held.programs.insert(id);
            } else if let Some(id) = value("link_id:") {
                held.links.insert(id);
            }
        }
    }
    Ok(held)
}

/// Ids of every BPF program and link that exists now.
pub fn existing() -> Result<Held> {
    #[derive(Deserialize)]
    struct Obj {
        id: u32,
    }
    let list = |what: &str| -> Result<BTreeSet<u32>> {
        let out = Command::new("bpftool")
            .args(["-j", what, "show"])
            .output()
            .context("cannot run bpftool (cargo xtask setup installs it)")?;
        if !out.status.success() {
            bail!(
                "bpftool {what} show: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // bpftool prints nothing at all (not `[]`) when there is none.
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(BTreeSet::new());
        }
        let objs: Vec<Obj> = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("bpftool {what} show output"))?;
        Ok(objs.into_iter().map(|o| o.id).collect())
    };
    Ok(Held {
        programs: list("prog")?,
        links: list("link")?,
    })
}

/// Of `held`, what still exists, asked id by id (`bpftool -j {prog,link}
/// show id N`): a listing of everything fails as a whole when any object
/// vanishes while bpftool walks them, which parallel tests make likely.
pub fn still_existing(held: &Held) -> Result<Held> {
    let exists = |what: &str, id: u32| -> Result<bool> {
        let out = Command::new("bpftool")
            .args(["-j", what, "show", "id", &id.to_string()])
            .output()
            .context("cannot run bpftool (cargo xtask setup installs it)")?;
        if out.status.success() {
            return Ok(true);
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Only "no such object" means gone; any other failure is an error,
        // so the check cannot pass by accident.
        if text.contains("No such file or directory") {
            return Ok(false);
        }
        bail!("bpftool {what} show id {id}: {text}")
    };
    let mut left = Held::default();
    for id in &held.programs {
        if exists("prog", *id)? {
            left.programs.insert(*id);
        }
    }
    for id in &held.links {
        if exists("link", *id)? {
            left.links.insert(*id);
        }
    }
    Ok(left)
}

/// The kernel's run count of a program (`bpftool prog show id N`): zero
/// unless BPF run-time statistics were on while it ran.
pub fn run_count(program_id: u32) -> Result<u64> {
    #[derive(Deserialize)]
    struct Prog {
        #[serde(default)]
        run_cnt: u64,
    }
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show", "id", &program_id.to_string()])
        .output()
        .context("cannot run bpftool")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show id {program_id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice::<Prog>(&out.stdout)?.run_cnt)
}
