//! The view every host has: which processes live in which network
//! namespace (/proc/PID/ns/net), what they run (/proc/PID/comm) and which
//! container their cgroup says they are in (/proc/PID/cgroup).

use std::{collections::BTreeMap, os::unix::fs::MetadataExt as _, path::Path};

use super::{Kind, Workload, clean};

/// The first process of a namespace, by PID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub comm: String,
    pub cgroup: CgroupRef,
}

impl Owner {
    /// The process view of the namespace: kind `process`, the command as
    /// its name, and the container id and pod the cgroup names.
    pub fn workload(&self) -> Workload {
        Workload {
            kind: Kind::Process,
            id: self.cgroup.id.clone(),
            name: Some(self.comm.clone()),
            namespace: None,
            pod: self.cgroup.pod.clone(),
            pid: Some(self.pid),
            compose_project: None,
            compose_service: None,
        }
    }
}

/// Every network namespace some process lives in, by inode, with its
/// lowest-PID process. Processes that exit during the walk, or whose
/// namespace cannot be read, are left out.
pub fn scan() -> BTreeMap<u64, Owner> {
    scan_in(Path::new("/proc"))
}

fn scan_in(proc: &Path) -> BTreeMap<u64, Owner> {
    let mut out: BTreeMap<u64, Owner> = BTreeMap::new();
    for (pid, dir, inode) in namespaces_of_pids(proc) {
        if out.contains_key(&inode) {
            continue;
        }
        out.insert(inode, owner(&dir, pid));
    }
    out
}

/// The network namespaces some process lives in, by inode: what `scan`
/// finds, without reading any process's command or cgroup. The resolver's
/// cheap check of whether a namespace came or went since its last scan.
pub fn namespaces() -> std::collections::BTreeSet<u64> {
    namespaces_of_pids(Path::new("/proc"))
        .map(|(_, _, inode)| inode)
        .collect()
}

/// Each process under `proc` (lowest PID first) with its directory and
/// its network namespace's inode; processes that exit meanwhile, or whose
/// namespace cannot be read, are left out.
fn namespaces_of_pids(proc: &Path) -> impl Iterator<Item = (u32, std::path::PathBuf, u64)> {
    pids(proc).into_iter().filter_map(move |pid| {
        let dir = proc.join(pid.to_string());
        // stat follows the ns link to the namespace's own inode (what
        // `lsns` and macdrop's `netns` show); reading another process's
        // needs CAP_SYS_PTRACE, which macdrop keeps.
        let inode = std::fs::metadata(dir.join("ns/net")).ok()?.ino();
        Some((pid, dir, inode))
    })
}

/// Every PID under `proc`, lowest first.
fn pids(proc: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(proc)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Process `pid` (its /proc directory `dir`) as an owner.
fn owner(dir: &Path, pid: u32) -> Owner {
    let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
    let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
    Owner {
        pid,
        comm: clean(&comm),
        cgroup: parse_cgroup(&cgroup),
    }
}

/// The holders of the taps named `names`: per name, the processes (lowest
/// PID first) with /dev/net/tun open on it, each with the inode of its
/// network namespace. The kernel writes the device's name in the open
/// file's fdinfo (`iff:\tNAME`, drivers/net/tun.c); only files that are
/// /dev/net/tun are read, so a host with many fds pays a readlink each.
pub fn tap_holders(names: &[&str]) -> BTreeMap<String, Vec<(Owner, u64)>> {
    tap_holders_in(Path::new("/proc"), names)
}

fn tap_holders_in(proc: &Path, names: &[&str]) -> BTreeMap<String, Vec<(Owner, u64)>> {
    let mut out: BTreeMap<String, Vec<(Owner, u64)>> = BTreeMap::new();
    if names.is_empty() {
        return out;
    }
    let pids = pids(proc);
    for pid in pids {
        let dir = proc.join(pid.to_string());
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let is_tun = std::fs::read_link(fd.path())
                .is_ok_and(|target| target == Path::new("/dev/net/tun"));
            if !is_tun {
                continue;
            }
            let info = std::fs::read_to_string(dir.join("fdinfo").join(fd.file_name()))
                .unwrap_or_default();
            let Some(name) = info.lines().find_map(|l| l.strip_prefix("iff:")) else {
                continue;
            };
            let name = name.trim();
            if !names.contains(&name) {
                continue;
            }
            let netns = std::fs::metadata(dir.join("ns/net")).map_or(0, |m| m.ino());
            let holders = out.entry(name.to_owned()).or_default();
            if !holders.iter().any(|(o, _)| o.pid == pid) {
                holders.push((owner(&dir, pid), netns));
            }
        }
    }
    out
}

/// What a process's cgroup path says about its container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupRef {
    /// "docker", "podman", "containerd", "crio"; None when only a bare id
    /// was found (cgroupfs kubepods paths).
    pub runtime: Option<&'static str>,
    pub id: Option<String>,
    /// The Kubernetes pod's UID (dashes restored where systemd wrote
    /// underscores).
    pub pod: Option<String>,
}

/// Reads /proc/PID/cgroup (v1 and v2 lines alike, `ID:CONTROLLERS:PATH`):
/// the first line whose path names a container wins. Forms known:
/// `docker-<id>.scope` and `/docker/<id>` (Docker, systemd and cgroupfs
/// drivers), `libpod-<id>.scope` (Podman; `libpod-conmon-` is its monitor),
/// `cri-containerd-<id>.scope`, `crio-<id>.scope` (`crio-conmon-` is not
/// the container), and Kubernetes' `kubepods...pod<uid>` with the container
/// id as the next component or scope.
pub fn parse_cgroup(text: &str) -> CgroupRef {
    let mut best = CgroupRef::default();
    for line in text.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        let found = parse_path(path);
        if found.id.is_some() {
            return found;
        }
        if best.pod.is_none() {
            best = found;
        }
    }
    best
}

fn parse_path(path: &str) -> CgroupRef {
    let mut out = CgroupRef::default();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (n, part) in parts.iter().enumerate() {
        let unit = part.strip_suffix(".scope").unwrap_or(part);
        let prefixed = [
            ("docker-", "docker"),
            ("libpod-", "podman"),
            ("cri-containerd-", "containerd"),
            ("crio-", "crio"),
        ];
        for (prefix, runtime) in prefixed {
            if let Some(id) = unit.strip_prefix(prefix)
                && is_container_id(id)
            {
                out.runtime = Some(runtime);
                out.id = Some(id.to_owned());
            }
        }
        if *part == "docker"
            && let Some(id) = parts.get(n + 1).filter(|id| is_container_id(id))
        {
            out.runtime = Some("docker");
            out.id = Some((*id).to_owned());
        }
        if let Some(uid) = pod_uid(unit) {
            out.pod = Some(uid);
            // cgroupfs: kubepods/<qos>/pod<uid>/<id>.
            if let Some(id) = parts.get(n + 1).filter(|id| is_container_id(id))
                && out.id.is_none()
            {
                out.id = Some((*id).to_owned());
            }
        }
    }
    out
}

/// `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid>.slice` (systemd, with
/// underscores for the UID's dashes).
fn pod_uid(part: &str) -> Option<String> {
    let part = part.strip_suffix(".slice").unwrap_or(part);
    let at = part.rfind("pod")?;
    if at != 0 && !part[..at].ends_with('-') {
        return None;
    }
    let uid = part[at + 3..].replace('_', "-");
    (uid.len() >= 32 && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(uid)
}

/// A container id: at least 12 hex digits (64 as the engines write them).
fn is_container_id(s: &str) -> bool {
    s.len() >= 12 && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    const UID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

    fn parsed(text: &str) -> (Option<&'static str>, Option<String>, Option<String>) {
        let r = parse_cgroup(text);
        (r.runtime, r.id, r.pod)
    }

    #[test]
    fn docker_with_the_systemd_and_the_cgroupfs_drivers() {
        assert_eq!(
            parsed(&format!("0::/system.slice/docker-{ID}.scope\n")),
            (Some("docker"), Some(ID.into()), None)
        );
        // cgroup v1, several hierarchies: any line will do.
        let v1 = format!(
            "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n"
        );
        assert_eq!(parsed(&v1), (Some("docker"), Some(ID.into()), None));
    }

    #[test]
    fn podman_but_not_its_conmon() {
        let user = format!(
            "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
        );
        assert_eq!(parsed(&user), (Some("podman"), Some(ID.into()), None));
        let conmon = format!("0::/machine.slice/libpod-conmon-{ID}.scope\n");
        assert_eq!(parsed(&conmon), (None, None, None));
    }

    #[test]
    fn kubernetes_pods_with_containerd_crio_and_cgroupfs() {
        let uid_ = UID.replace('-', "_");
        let containerd = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(
            parsed(&containerd),
            (Some("containerd"), Some(ID.into()), Some(UID.into()))
        );
        let crio = format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/crio-{ID}.scope\n");
        assert_eq!(
            parsed(&crio),
            (Some("crio"), Some(ID.into()), Some(UID.into()))
        );
        let cgroupfs = format!("4:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}\n");
        assert_eq!(parsed(&cgroupfs), (None, Some(ID.into()), Some(UID.into())));
        // The pod's sandbox cgroup alone still names the pod.
        let pod_only = format!("0::/kubepods/besteffort/pod{UID}\n");
        assert_eq!(parsed(&pod_only), (None, None, Some(UID.into())));
    }

    #[test]
    fn host_processes_have_no_container() {
        for text in [
            "0::/init.scope\n",
            "0::/user.slice/user-0.slice/session-3.scope\n",
            "12:pids:/\n1:name=systemd:/\n",
            "0::/system.slice/docker.service\n",
            "",
            "garbage",
        ] {
            assert_eq!(parsed(text), (None, None, None), "{text:?}");
        }
    }

    #[test]
    fn this_process_is_found_in_its_namespace() {
        let all = scan();
        let me = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let owner = all.get(&me).expect("own namespace in the scan");
        assert!(owner.pid <= std::process::id());
    }
}
