//! A rootful Podman of the test's own: its storage, run and temp
//! directories in the test's directory, `podman system service` on a
//! socket there, in a lab namespace and a mount namespace of its own
//! (`engine::Anchor`: Podman's fixed state paths, /run/containers and
//! /var/lib/containers, are private tmpfs there). Its network is a bridge
//! network the test creates on 203.0.113.0/24; netavark's bridge and
//! firewall rules live in the lab namespace and go with it. The image is
//! busybox-static from a tarball (`podman import`), never a registry's.
//!
//! Dropping the guard removes the containers and the network, stops the
//! service, kills anything still running from the test's directory
//! (conmon), and removes the directory, both namespaces and Podman's
//! parent cgroups if nothing else uses them.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};

use crate::{
    engine::{
        Anchor, BUSYBOX, Daemon, busybox_tarball, kill_leftovers, remove_empty_cgroups, require,
        run,
    },
    netns::NetNs,
};

/// The image `import_busybox` makes.
pub const IMAGE: &str = "macdrop-test/busybox:1";
/// The bridge network `create_network` makes.
pub const NETWORK: &str = "macdrop-test";
pub const SUBNET: &str = "203.0.113.0/24";

/// Podman's own paths that no flag moves.
const PRIVATE: &[&str] = &["/run/containers", "/var/lib/containers", "/run/netns"];

pub struct PodmanLab {
    // Dropped in this order after `Drop::drop`: the mount namespace's
    // holder, then the network namespace.
    anchor: Anchor,
    ns: NetNs,
    dir: PathBuf,
    service: Option<Daemon>,
    containers: Vec<(String, u32)>,
    network: bool,
}

impl PodmanLab {
    /// Starts the service and waits until it answers. An error says why
    /// Podman cannot run here.
    pub fn start() -> Result<Self> {
        require(&["/usr/bin/podman", BUSYBOX])?;
        let ns = NetNs::with_prefix("macdrop-t-podman")?;
        let dir = std::env::temp_dir().join(ns.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let anchor = Anchor::start(&ns, PRIVATE)?;
        let mut lab = Self {
            anchor,
            ns,
            dir,
            service: None,
            containers: Vec::new(),
            network: false,
        };
        lab.start_service()?;
        Ok(lab)
    }

    pub fn host(&self) -> &NetNs {
        &self.ns
    }

    /// The service's socket, for `MACDROP_PODMAN_HOST`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("podman.sock")
    }

    /// `podman` with the lab's paths and ARGS, in the lab's namespaces.
    fn podman_command(&self, args: &[&str]) -> std::process::Command {
        let d = |name: &str| self.dir.join(name).display().to_string();
        let (root, runroot, tmp, net) = (d("root"), d("run"), d("tmp"), d("networks"));
        let mut argv = vec![
            "podman",
            "--root",
            &root,
            "--runroot",
            &runroot,
            "--tmpdir",
            &tmp,
            "--network-config-dir",
            &net,
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ];
        argv.extend_from_slice(args);
        self.anchor.command(&argv)
    }

    /// `podman ARGS`; its stdout, trimmed.
    pub fn podman(&self, args: &[&str]) -> Result<String> {
        run(&mut self.podman_command(args))
    }

    fn start_service(&mut self) -> Result<()> {
        let socket = self.socket();
        let url = format!("unix://{}", socket.display());
        let cmd = self.podman_command(&["system", "service", "--time=0", &url]);
        let log = self.dir.join("service.log");
        self.service = Some(Daemon::start("podman system service", cmd, log, || {
            socket.exists()
        })?);
        Ok(())
    }

    /// Makes [`IMAGE`] from busybox-static's tarball.
    pub fn import_busybox(&self) -> Result<()> {
        let tarball = busybox_tarball(&self.dir)?;
        self.podman(&["import", &tarball.display().to_string(), IMAGE])?;
        Ok(())
    }

    /// Makes the bridge network [`NETWORK`]; its bridge's name.
    pub fn create_network(&mut self) -> Result<String> {
        self.podman(&[
            "network",
            "create",
            "--disable-dns",
            "--subnet",
            SUBNET,
            NETWORK,
        ])?;
        self.network = true;
        let bridge = self.podman(&[
            "network",
            "inspect",
            "--format",
            "{{.NetworkInterface}}",
            NETWORK,
        ])?;
        if bridge.is_empty() {
            bail!("podman network {NETWORK} has no bridge");
        }
        Ok(bridge)
    }

    /// Runs `sleep` in a container called `name` on [`NETWORK`]; its full
    /// id and PID. Its limits are set within this process's own: Podman's
    /// defaults (e.g. 1048576 open files) exceed the hard limits of a
    /// machine like a CI container, and runc would fail to set them.
    pub fn run(&mut self, name: &str) -> Result<(String, u32)> {
        let id = self.podman(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            NETWORK,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            IMAGE,
            "/bin/sleep",
            "600",
        ])?;
        let pid: u32 = self
            .podman(&["inspect", "--format", "{{.State.Pid}}", &id])?
            .parse()
            .context("State.Pid")?;
        self.containers.push((id.clone(), pid));
        Ok((id, pid))
    }

    /// Stops the service (its containers keep running under conmon).
    pub fn stop_service(&mut self) {
        self.service = None;
    }
}

impl Drop for PodmanLab {
    fn drop(&mut self) {
        // The CLI, not the service, removes what Podman made (mounts,
        // cgroups, the containers' namespaces).
        for (id, _) in &self.containers {
            let _ = self.podman(&["rm", "--force", "--time", "0", id]);
        }
        if self.network {
            let _ = self.podman(&["network", "rm", "--force", NETWORK]);
        }
        self.stop_service();
        kill_leftovers(&self.dir, self.containers.iter().map(|(_, pid)| *pid));
        remove_empty_cgroups(&["libpod_parent/conmon", "libpod_parent"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
