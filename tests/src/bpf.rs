//! The kernel's own listing of BPF objects, as an independent witness of
//! what macdrop leaves attached: which programs and links a process holds
//! (from its file descriptors' fdinfo), whether they still exist after it
//! exits, and how many entries its hash maps hold (`bpftool -j`, read
//! through serde).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    process::Command,
};

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
    let [programs, links] = fd_ids(pid, ["prog_id:", "link_id:"])?;
    Ok(Held { programs, links })
}

/// The ids `pid`'s file descriptors name under each fdinfo key.
fn fd_ids<const N: usize>(pid: u32, keys: [&str; N]) -> Result<[BTreeSet<u32>; N]> {
    let mut ids: [BTreeSet<u32>; N] = std::array::from_fn(|_| BTreeSet::new());
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let Ok(text) = fs::read_to_string(entry?.path()) else {
            continue; // closed meanwhile
        };
        for line in text.lines() {
            for (key, set) in keys.iter().zip(ids.iter_mut()) {
                if let Some(id) = line
                    .strip_prefix(key)
                    .and_then(|v| v.trim().parse::<u32>().ok())
                {
                    set.insert(id);
                }
            }
        }
    }
    Ok(ids)
}

/// How many entries each hash map `pid` holds has, by map name (summed
/// over maps of one name: one per namespace macdrop watches): what the
/// kernel keeps for it, besides the fixed-size arrays.
pub fn hash_map_entries(pid: u32) -> Result<BTreeMap<String, usize>> {
    #[derive(Deserialize)]
    struct Map {
        name: String,
        #[serde(rename = "type")]
        kind: String,
    }
    let bpftool = |args: &[&str]| -> Result<Vec<u8>> {
        let out = Command::new("bpftool")
            .args(args)
            .output()
            .context("cannot run bpftool (cargo xtask setup installs it)")?;
        if !out.status.success() {
            bail!(
                "bpftool {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    };
    let [maps] = fd_ids(pid, ["map_id:"])?;
    let mut out = BTreeMap::new();
    for id in maps {
        let id = id.to_string();
        let map: Map = serde_json::from_slice(&bpftool(&["-j", "map", "show", "id", &id])?)
            .context("bpftool map show output")?;
        if !map.kind.contains("hash") {
            continue;
        }
        let dump = bpftool(&["-j", "map", "dump", "id", &id])?;
        let entries = if dump.iter().all(u8::is_ascii_whitespace) {
            0
        } else {
            serde_json::from_slice::<Vec<serde_json::Value>>(&dump)
                .context("bpftool map dump output")?
                .len()
        };
        *out.entry(map.name).or_default() += entries;
    }
    Ok(out)
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
