//! containerd with its CRI plugin, of the test's own: its root, state,
//! socket and config in the test's directory, in a lab namespace and a
//! mount namespace of its own (`engine::Anchor`: CNI's cache,
//! /var/lib/cni, is a private tmpfs there, and the pods' namespaces are
//! mounted under the state directory), attaching pods through the CNI
//! bridge plugin (Debian's containernetworking-plugins) to a bridge on
//! 203.0.113.0/24 that lives in the lab namespace. The sandbox ("pause")
//! image is busybox-static running `sleep`, made with `podman import` and
//! `podman save` from a tarball and imported with `ctr`: no registry.
//!
//! Pods are created through the CRI by the test itself (the tests' CRI
//! client is a dev-dependency; this library builds without protoc).
//! Dropping the guard kills and deletes every task containerd still runs,
//! stops it, kills anything left from the test's directory (shims), and
//! removes the directory, both namespaces and the parent cgroup if
//! nothing else uses it.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::{
    engine::{
        Anchor, BUSYBOX, Daemon, busybox_tarball, kill_leftovers, remove_empty_cgroups, require,
        run,
    },
    netns::NetNs,
};

/// The bridge the CNI config names.
pub const BRIDGE: &str = "mdcri0";
pub const SUBNET: &str = "203.0.113.0/24";
/// The sandbox image: what every pod's sandbox runs.
pub const PAUSE_IMAGE: &str = "localhost/macdrop-test/pause:1";
/// The CNI plugins' directory in Debian.
const CNI_BIN: &str = "/usr/lib/cni";
/// containerd's namespace for the CRI's images and containers.
const K8S_NAMESPACE: &str = "k8s.io";
/// Paths no configuration moves: CNI's cache, and what `podman import`
/// writes while the image is made.
const PRIVATE: &[&str] = &["/var/lib/cni", "/run/containers", "/var/lib/containers"];

pub struct CriLab {
    anchor: Anchor,
    ns: NetNs,
    dir: PathBuf,
    daemon: Option<Daemon>,
}

impl CriLab {
    /// Makes the image, starts containerd and imports the image into it.
    /// An error says why the CRI cannot run here.
    pub fn start() -> Result<Self> {
        require(&[
            "/usr/bin/podman",
            &format!("{CNI_BIN}/bridge"),
            &format!("{CNI_BIN}/host-local"),
            BUSYBOX,
        ])?;
        let mut lab = Self::new(PRIVATE)?;
        let image = lab.make_pause_image()?;
        lab.write_config(true)?;
        lab.start_daemon()?;
        lab.ctr(&["images", "import", &image.display().to_string()])?;
        Ok(lab)
    }

    /// containerd with its CRI plugin disabled, as Docker hosts run it:
    /// no pod, so no CNI, no image, and nothing of the host's made private
    /// (a lab running beside it keeps its own).
    pub fn start_without_cri() -> Result<Self> {
        let mut lab = Self::new(&[])?;
        lab.write_config(false)?;
        lab.start_daemon()?;
        Ok(lab)
    }

    fn new(private: &[&str]) -> Result<Self> {
        require(&["/usr/bin/containerd", "/usr/bin/ctr"])?;
        let ns = NetNs::with_prefix("macdrop-t-cri")?;
        let dir = std::env::temp_dir().join(ns.name());
        std::fs::create_dir_all(dir.join("cni"))
            .with_context(|| format!("mkdir {}", dir.display()))?;
        let anchor = Anchor::start(&ns, private)?;
        Ok(Self {
            anchor,
            ns,
            dir,
            daemon: None,
        })
    }

    pub fn host(&self) -> &NetNs {
        &self.ns
    }

    /// containerd's socket, for `MACDROP_CRI_ENDPOINT` and the test's CRI
    /// client.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// `argv` in the lab's mount and network namespaces, where containerd
    /// runs and the pods' namespace files are mounted.
    pub fn command(&self, argv: &[&std::ffi::OsStr]) -> std::process::Command {
        self.anchor.command(argv)
    }

    /// An OCI archive of busybox-static whose entrypoint sleeps.
    fn make_pause_image(&self) -> Result<PathBuf> {
        let tarball = busybox_tarball(&self.dir)?;
        let archive = self.dir.join("pause.tar");
        let d = |name: &str| self.dir.join(name).display().to_string();
        let (root, runroot, tmp) = (d("podman-root"), d("podman-run"), d("podman-tmp"));
        let podman = |args: &[&str]| {
            let mut argv = vec![
                "podman",
                "--root",
                &root,
                "--runroot",
                &runroot,
                "--tmpdir",
                &tmp,
                "--storage-driver",
                "vfs",
            ];
            argv.extend_from_slice(args);
            run(&mut self.anchor.command(&argv))
        };
        podman(&[
            "import",
            "--change",
            r#"ENTRYPOINT ["/bin/sleep", "100000"]"#,
            &tarball.display().to_string(),
            PAUSE_IMAGE,
        ])?;
        podman(&[
            "save",
            "--format",
            "oci-archive",
            "--output",
            &archive.display().to_string(),
            PAUSE_IMAGE,
        ])?;
        Ok(archive)
    }

    fn write_config(&self, cri: bool) -> Result<()> {
        let d = |name: &str| self.dir.join(name).display().to_string();
        let disabled = if cri {
            ""
        } else {
            r#""io.containerd.grpc.v1.cri""#
        };
        let config = format!(
            r#"version = 2
disabled_plugins = [{disabled}]
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  # The sandbox's oom_score_adj (-998) would need CAP_SYS_RESOURCE, which
  # a CI container may not grant: runc would fail to start the pod.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
"#,
            root = d("root"),
            state = d("state"),
            socket = d("containerd.sock"),
            opt = d("opt"),
            cni = d("cni"),
        );
        std::fs::write(self.dir.join("config.toml"), config)?;
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "macdrop-test",
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": d("ipam"),
                    "ranges": [[{ "subnet": SUBNET }]],
                },
            }],
        });
        std::fs::write(
            self.dir.join("cni/10-macdrop-test.conflist"),
            serde_json::to_vec_pretty(&conflist)?,
        )?;
        Ok(())
    }

    fn start_daemon(&mut self) -> Result<()> {
        let config = self.dir.join("config.toml").display().to_string();
        let cmd = self.anchor.command(&["containerd", "--config", &config]);
        let log = self.dir.join("containerd.log");
        let daemon = Daemon::start("containerd", cmd, log, || self.ctr(&["version"]).is_ok())?;
        self.daemon = Some(daemon);
        Ok(())
    }

    /// The last lines of containerd's log, for failures.
    pub fn log_tail(&self) -> String {
        self.daemon
            .as_ref()
            .map(Daemon::log_tail)
            .unwrap_or_default()
    }

    /// `ctr --address SOCKET -n k8s.io ARGS`; its stdout, trimmed.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let socket = self.socket().display().to_string();
        let mut argv = vec!["ctr", "--address", &socket, "--namespace", K8S_NAMESPACE];
        argv.extend_from_slice(args);
        run(&mut self.anchor.command(&argv))
    }

    /// The PID of task `id` (a sandbox's is its pause process).
    pub fn task_pid(&self, id: &str) -> Option<u32> {
        self.tasks()
            .into_iter()
            .find_map(|(task, pid)| (task == id).then_some(pid))
    }

    /// The tasks (running containers, sandboxes included): id and PID.
    fn tasks(&self) -> Vec<(String, u32)> {
        let listed = self.ctr(&["tasks", "list"]).unwrap_or_default();
        listed
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for CriLab {
    fn drop(&mut self) {
        // What a test left (it removes its pods itself when it can): the
        // tasks killed and deleted through containerd, which removes their
        // cgroups and mounts.
        let tasks = self.tasks();
        for (id, _) in &tasks {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
            let _ = self.ctr(&["tasks", "delete", "--force", id]);
            let _ = self.ctr(&["containers", "delete", id]);
        }
        self.daemon = None;
        kill_leftovers(&self.dir, tasks.iter().map(|(_, pid)| *pid));
        // containerd names its containers' parent cgroup by its namespace.
        remove_empty_cgroups(&[K8S_NAMESPACE]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
