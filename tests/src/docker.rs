//! A Docker Engine of the test's own: `dockerd` in a lab namespace with its
//! own data root, exec root, pid file, socket and bridge (an address from
//! 198.51.100.0/24), touching no firewall rule (`--iptables=false`, no
//! forwarding or masquerading), in a mount namespace of its own (what it
//! mounts goes when it goes). Images come from a tarball of busybox-static
//! (`docker import`), never from a registry.
//!
//! Dropping the guard removes everything, also after a failed assertion:
//! the containers (with a restarted daemon if the test stopped it; it runs
//! with `--live-restore`, so stopping it leaves them running), the daemon,
//! any process still running from the temp directory, the directory, and
//! the namespace.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{
    engine::{BUSYBOX, Daemon, busybox_tarball, kill_leftovers, require, run},
    frames::{Mac, mac_to_string},
    kernel,
    lab::links,
    netns::NetNs,
};

/// The bridge the daemon attaches containers to.
pub const DOCKER_BRIDGE: &str = "mdbr0";
/// Its MAC, set before the daemon starts (so the seed incident can remove
/// a MAC the test knows from its FDB).
pub const DOCKER_BRIDGE_MAC: Mac = [0x02, 0, 0, 0, 0x0d, 0x01];
/// Its address: the containers get the rest of 198.51.100.0/24.
pub const DOCKER_BRIDGE_IPV4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 1);
/// The image `import_busybox` makes.
pub const IMAGE: &str = "macdrop-test/busybox:1";

pub struct DockerLab {
    ns: NetNs,
    dir: PathBuf,
    daemon: Option<Daemon>,
    containers: Vec<(String, u32)>,
}

impl DockerLab {
    /// Starts the daemon and waits until it answers. An error says why it
    /// cannot run here (no dockerd, no busybox, the daemon failing).
    pub fn start() -> Result<Self> {
        require(&["/usr/sbin/dockerd", BUSYBOX])?;
        let ns = NetNs::with_prefix("macdrop-t-docker")?;
        links::add_bridge(&ns, DOCKER_BRIDGE, Some(DOCKER_BRIDGE_MAC))?;
        links::add_ipv4(&ns, DOCKER_BRIDGE, DOCKER_BRIDGE_IPV4)?;
        links::up(&ns, DOCKER_BRIDGE)?;
        let dir = std::env::temp_dir().join(ns.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let mut lab = Self {
            ns,
            dir,
            daemon: None,
            containers: Vec::new(),
        };
        lab.start_daemon()?;
        Ok(lab)
    }

    pub fn host(&self) -> &NetNs {
        &self.ns
    }

    /// The daemon's socket, for `MACDROP_DOCKER_HOST`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn start_daemon(&mut self) -> Result<()> {
        let d = |name: &str| self.dir.join(name).display().to_string();
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "slave", "nsenter"])
            .arg(format!("--net={}", self.ns.path().display()))
            .args(["dockerd", "--live-restore", "--storage-driver=vfs"])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
            .arg(format!("--bridge={DOCKER_BRIDGE}"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ])
            .arg(format!("--data-root={}", d("data")))
            .arg(format!("--exec-root={}", d("exec")))
            .arg(format!("--pidfile={}", d("dockerd.pid")))
            .arg(format!("--host=unix://{}", d("docker.sock")));
        let daemon = Daemon::start("dockerd", cmd, self.dir.join("dockerd.log"), || {
            self.docker(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
        })?;
        self.daemon = Some(daemon);
        Ok(())
    }

    /// `docker -H unix://SOCKET ARGS`; its stdout, trimmed.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("docker");
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args);
        run(&mut cmd)
    }

    /// Makes [`IMAGE`]: busybox-static as /bin/busybox, `sleep` and `sh`
    /// its links, imported from a tarball.
    pub fn import_busybox(&self) -> Result<()> {
        let tarball = busybox_tarball(&self.dir)?;
        self.docker(&["import", &tarball.display().to_string(), IMAGE])?;
        Ok(())
    }

    /// Runs `sleep` in a container called `name`; its full id and PID.
    pub fn run(&mut self, name: &str) -> Result<(String, u32)> {
        let id = self.docker(&["run", "-d", "--name", name, IMAGE, "/bin/sleep", "600"])?;
        let pid: u32 = self
            .docker(&["inspect", "--format", "{{.State.Pid}}", &id])?
            .parse()
            .context("State.Pid")?;
        self.containers.push((id.clone(), pid));
        Ok((id, pid))
    }

    /// The seed incident on this Engine's bridge: its own MAC removed from
    /// its FDB (`bridge fdb del MAC dev mdbr0 self`, checked in the FDB).
    pub fn remove_bridge_mac_from_fdb(&self) -> Result<()> {
        let mac = mac_to_string(&DOCKER_BRIDGE_MAC);
        self.ns
            .exec(&["bridge", "fdb", "del", &mac, "dev", DOCKER_BRIDGE, "self"])?;
        anyhow::ensure!(
            !kernel::fdb_has_bridge_entry(&self.ns, DOCKER_BRIDGE, &mac)?,
            "{mac} is still in the FDB of {DOCKER_BRIDGE} after `bridge fdb del`"
        );
        Ok(())
    }

    /// A command run in container `pid`'s network namespace (the host's
    /// tools, e.g. ping: the image has only sleep and sh).
    pub fn in_container(&self, pid: u32, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(pid.to_string()).arg("-n").args(argv);
        cmd
    }

    /// Starts the daemon again after `stop_daemon` (the containers it left
    /// running are its own again).
    pub fn restart_daemon(&mut self) -> Result<()> {
        if self.daemon.is_some() {
            bail!("the daemon is running");
        }
        self.start_daemon()
    }

    /// Stops the daemon (SIGTERM; its containers keep running).
    pub fn stop_daemon(&mut self) -> Result<()> {
        self.daemon = None;
        Ok(())
    }
}

impl Drop for DockerLab {
    fn drop(&mut self) {
        // The daemon removes what it made (mounts, cgroups, namespaces):
        // bring it back if the test stopped it.
        if self.daemon.is_none() && !self.containers.is_empty() {
            let _ = self.start_daemon();
        }
        if self.daemon.is_some() {
            for (id, _) in &self.containers {
                let _ = self.docker(&["rm", "-f", id]);
            }
            self.daemon = None;
        }
        // Whatever still runs: the containers' processes, then anything
        // started from the directory.
        kill_leftovers(&self.dir, self.containers.iter().map(|(_, pid)| *pid));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
