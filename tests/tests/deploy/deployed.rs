//! macdrop run in a lab the way a deployment runs it (the systemd unit, the
//! DaemonSet's pod): started in a private mount namespace that shows it only
//! the lab's namespaces, fed known frames, scraped until the counts are
//! exact, and stopped with SIGTERM as systemd and the kubelet stop it.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use macdrop_tests::{
    frames::{BROADCAST, ipv4_udp},
    lab::{
        BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE, peer_ipv4,
        peer_mac,
    },
    macdrop,
    netns::NetNs,
    sender::RawSender,
};

use crate::helpers::{TempPath, read};

/// The frames peer 1 sends into p1, and what macdrop must count on p1.
const OWN: u64 = 3;
pub(crate) const HOST_IP_WRONG_MAC: u64 = 5;
const FOREIGN_ELSEWHERE: u64 = 2;
const BCAST: u64 = 4;

pub(crate) fn send_frames(lab: &BridgeLab) -> Result<()> {
    let tx = RawSender::new(lab.peer(1), PEER_IFACE)?;
    let (src, sip) = (peer_mac(1), peer_ipv4(1));
    let n = |c: u64| c as usize;
    tx.send(&ipv4_udp(BRIDGE_MAC, src, sip, BRIDGE_IPV4), n(OWN))?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, BRIDGE_IPV4),
        n(HOST_IP_WRONG_MAC),
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4),
        n(FOREIGN_ELSEWHERE),
    )?;
    tx.send(&ipv4_udp(BROADCAST, src, sip, BRIDGE_IPV4), n(BCAST))?;
    Ok(())
}

/// p1's series of [`want_p1`] as `name{class}` -> value, from a scrape.
fn p1_counts(body: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if !series.contains("interface=\"p1\"") {
            continue;
        }
        let name = series.split('{').next().unwrap();
        let class = series
            .split("class=\"")
            .nth(1)
            .and_then(|s| s.split('"').next());
        let key = match class {
            Some(c) => format!("{name}{{{c}}}"),
            None => name.to_owned(),
        };
        if want_p1().contains_key(&key) {
            out.insert(key, value.parse().unwrap_or(f64::NAN));
        }
    }
    out
}

fn want_p1() -> BTreeMap<String, f64> {
    [
        ("macdrop_frames_total{own}", OWN),
        ("macdrop_frames_total{broadcast}", BCAST),
        ("macdrop_frames_total{multicast}", 0),
        (
            "macdrop_frames_total{foreign_unicast}",
            HOST_IP_WRONG_MAC + FOREIGN_ELSEWHERE,
        ),
        ("macdrop_frames_total{runt}", 0),
        ("macdrop_host_ip_wrong_mac_frames_total", HOST_IP_WRONG_MAC),
        ("macdrop_stale_mac_frames_total", 0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v as f64))
    .collect()
}

/// GET `path` from `addr`, connecting from inside `ns`: (status, body).
pub(crate) fn http_get(ns: &NetNs, addr: &str, path: &str) -> Result<(u16, String)> {
    let addr: SocketAddr = addr.parse()?;
    let mut stream =
        ns.enter_thread(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))??;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    Ok((status, body.to_owned()))
}

/// How a deployment enters the lab's host network namespace.
pub(crate) enum Enter {
    /// `ip netns exec`, which also mounts that namespace's own /sys, as a
    /// host's services see it.
    IpNetnsExec,
    /// `nsenter --net`: the network namespace only. The host's /sys, with
    /// its cgroup mounts, stays, which a container engine needs (the
    /// container mounts the namespace's /sys itself).
    Nsenter,
}

/// A macdrop started the way a deployment starts it, in a lab.
pub(crate) struct Deployed {
    child: Child,
    stderr: TempPath,
    _stdout: TempPath,
}

impl Deployed {
    /// Runs `argv` (its program is `/usr/local/bin/macdrop` or a wrapper
    /// around it) in the lab's host namespace, in a private mount namespace
    /// where /run/netns holds only the lab's namespaces, /run/docker/netns
    /// (if any) nothing, and /usr/local/bin only the built macdrop.
    pub(crate) fn start(lab: &BridgeLab, argv: &[String]) -> Result<Self> {
        Self::start_with(lab, &macdrop::macdrop_bin(), argv, Enter::IpNetnsExec)
    }

    /// [`Deployed::start`] with `bin` as /usr/local/bin/macdrop, entering
    /// the lab's host namespace as `enter` says.
    pub(crate) fn start_with(
        lab: &BridgeLab,
        bin: &Path,
        argv: &[String],
        enter: Enter,
    ) -> Result<Self> {
        const SCRIPT: &str = r#"set -eu
bin=$1; n=$2; shift 2
mount -t tmpfs -o mode=0755 macdrop-netns /mnt
i=0
while [ "$i" -lt "$n" ]; do
    touch "/mnt/$1"; mount --bind "/run/netns/$1" "/mnt/$1"; shift; i=$((i + 1))
done
mount --move /mnt /run/netns
if [ -d /run/docker/netns ]; then mount -t tmpfs macdrop-docker /run/docker/netns; fi
mount -t tmpfs -o mode=0755 macdrop-bin /usr/local/bin
cp "$bin" /usr/local/bin/macdrop
chmod 0755 /usr/local/bin/macdrop
exec "$@"
"#;
        let mut names = vec![lab.host().name().to_owned()];
        names.extend((1..=lab.ports()).map(|i| lab.peer(i).name().to_owned()));
        let mut full: Vec<String> = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
            .map(str::to_owned)
            .to_vec();
        full.push(SCRIPT.to_owned());
        full.push("sh".to_owned());
        full.push(bin.to_string_lossy().into_owned());
        full.push(names.len().to_string());
        full.extend(names);
        full.extend(argv.iter().cloned());
        let stdout = TempPath::new("stdout");
        let stderr = TempPath::new("stderr");
        let mut command = match enter {
            Enter::IpNetnsExec => lab.host().command(&full),
            Enter::Nsenter => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", lab.host().path().display()))
                    .args(&full);
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout.0)?)
            .stderr(fs::File::create(&stderr.0)?)
            .spawn()
            .with_context(|| format!("cannot start {full:?}"))?;
        Ok(Self {
            child,
            stderr,
            _stdout: stdout,
        })
    }

    pub(crate) fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr.0).unwrap_or_default()
    }

    /// Waits for "macdrop: watching" on stderr: everything is attached.
    pub(crate) fn wait_attached(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.stderr().contains("macdrop: watching") {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited ({status}) before attaching:\n{}", self.stderr());
            }
            ensure!(
                Instant::now() < deadline,
                "not attached:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The macdrop process: the child itself or a descendant (under strace).
    pub(crate) fn macdrop_pid(&self) -> Result<u32> {
        let root = self.child.id();
        let mut parents = BTreeMap::new();
        for entry in fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "PID (comm) STATE PPID ...": comm may hold spaces.
            let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.insert(pid, ppid);
            }
        }
        let descends = |mut pid: u32| {
            while pid > 1 {
                if pid == root {
                    return true;
                }
                pid = *parents.get(&pid).unwrap_or(&0);
            }
            false
        };
        parents
            .keys()
            .copied()
            .find(|&pid| {
                descends(pid)
                    && fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "macdrop")
            })
            .context("no macdrop process under the deployment")
    }

    /// Scrapes `addr` until p1's counts are exactly [`want_p1`].
    pub(crate) fn scrape_until_exact(
        &mut self,
        ns: &NetNs,
        addr: &str,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited ({status}):\n{}", self.stderr());
            }
            if let Ok((200, body)) = http_get(ns, addr, "/metrics") {
                if p1_counts(&body) == want_p1() {
                    return Ok(body);
                }
                last = body;
            }
            if Instant::now() > deadline {
                assert_eq!(
                    p1_counts(&last),
                    want_p1(),
                    "p1 on http://{addr}/metrics; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The deployment's exit code once it exits by itself (after `podman
    /// stop`, say), killing it after `timeout`.
    pub(crate) fn wait_exit(mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("still running after {timeout:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM to macdrop (what systemd and the kubelet send); the exit code
    /// of the deployment's process.
    pub(crate) fn terminate(self) -> Result<Option<i32>> {
        let pid = self.macdrop_pid()?;
        // SAFETY: plain kill(2) on a pid found under our own child.
        ensure!(unsafe { libc::kill(pid as i32, libc::SIGTERM) } == 0);
        self.wait_exit(Duration::from_secs(20))
            .context("after SIGTERM")
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = self.macdrop_pid() {
                // SAFETY: as in `terminate`.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// (uid, effective capabilities) of a process.
pub(crate) fn credentials(pid: u32) -> (u32, u64) {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    (
        field("Uid:").parse().unwrap(),
        u64::from_str_radix(&field("CapEff:"), 16).unwrap(),
    )
}

pub(crate) fn cap_mask(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| match n.trim_start_matches("CAP_") {
            "NET_ADMIN" => 1 << 12,
            "SYS_PTRACE" => 1 << 19,
            "SYS_ADMIN" => 1 << 21,
            "SYS_RESOURCE" => 1 << 24,
            "PERFMON" => 1 << 38,
            "BPF" => 1 << 39,
            other => panic!("capability {other} not known to the test"),
        })
        .fold(0, |a, b| a | b)
}
