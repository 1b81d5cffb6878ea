//! Kubernetes (`deploy/kubernetes`): the kustomization renders with
//! kubectl, every object passes `kubernetes-validate --strict` for the
//! oldest and newest Kubernetes bundled, and the DaemonSet, Service and
//! PodMonitor are what they must be: least privilege, exactly the host paths
//! macdrop needs, selectors and ports that match. Then macdrop runs in a lab
//! the way the DaemonSet's pod runs it, within the memory formula of its
//! manifest. The kube-rbac-proxy overlay renders, validates and fronts the
//! metrics as it must.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use anyhow::Result;
use macdrop_tests::lab::BridgeLab;
use serde_json::Value;

use crate::{
    INSTALLED_BIN, POD_CAPABILITIES,
    deployed::{Deployed, cap_mask, credentials, http_get, send_frames},
    helpers::{TempPath, deploy, each_str, read, run, run_ok, venv, yaml_documents},
};

/// Kubernetes versions the manifests are validated against: the oldest and
/// the newest kubernetes-validate bundles.
const KUBERNETES_VERSIONS: &[&str] = &["1.25.0", "1.37.0"];

/// The only host paths the DaemonSet mounts.
const POD_HOST_PATHS: &[&str] = &[
    "/run/netns",
    "/run/docker/netns",
    "/run/containerd/containerd.sock",
];

/// The node address `$(POD_IP)` stands for in the lab: br0's.
pub(crate) const LAB_NODE_IP: &str = "192.0.2.1";

/// The rendered kustomization: the YAML and its objects.
struct Rendered {
    yaml: String,
    objects: Vec<Value>,
}

/// The base, `deploy/kubernetes`.
const BASE: &str = "kubernetes";
/// The overlay with kube-rbac-proxy in front of the metrics.
const PROXIED: &str = "kubernetes-kube-rbac-proxy";

fn rendered() -> &'static Rendered {
    static RENDERED: OnceLock<Rendered> = OnceLock::new();
    RENDERED.get_or_init(|| render(BASE).expect("deploy/kubernetes renders"))
}

fn rendered_proxied() -> &'static Rendered {
    static RENDERED: OnceLock<Rendered> = OnceLock::new();
    RENDERED.get_or_init(|| render(PROXIED).expect("the kube-rbac-proxy overlay renders"))
}

fn render(dir: &str) -> Result<Rendered> {
    // kustomize as built into kubectl: offline, no templating.
    let yaml = run_ok(
        Command::new(venv().join("bin/kubectl"))
            .arg("kustomize")
            .arg(deploy(dir)),
    )?;
    let objects = yaml_documents(&yaml)?;
    Ok(Rendered { yaml, objects })
}

impl Rendered {
    /// The one object of `kind` named `name` (any name: `None`).
    fn named(&self, kind: &str, name: Option<&str>) -> &Value {
        let found: Vec<&Value> = self
            .objects
            .iter()
            .filter(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n))
            .collect();
        assert_eq!(found.len(), 1, "exactly one {kind} {name:?}");
        found[0]
    }
}

pub(crate) fn object<'a>(kind: &str) -> &'a Value {
    rendered().named(kind, None)
}

pub(crate) fn strings(v: &Value) -> Vec<&str> {
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

    validate_strictly(r, "rendered.yaml");
}

/// `kubernetes-validate --strict` for the oldest and newest Kubernetes.
fn validate_strictly(r: &Rendered, name: &str) {
    let file = TempPath::new(name);
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
    assert_eq!(each_str(&c["ports"], "name"), ["metrics"]);
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
    "tlsConfig",
    "authorization",
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

/// A misspelt PodMonitor endpoint field fails here, not silently in the
/// operator.
fn only_known_endpoint_fields(ep: &Value) {
    for field in keys(ep) {
        assert!(
            PODMONITOR_ENDPOINT_FIELDS.contains(&field),
            "podMetricsEndpoints[0].{field}"
        );
    }
}

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
    only_known_endpoint_fields(ep);
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
    // Scrapes no faster than macdrop reports, and the manifest's comment
    // names the DaemonSet's real interval.
    let macdrop = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "macdrop")
        .expect("a container named macdrop");
    let args = strings(&macdrop["args"]);
    let at = args.iter().position(|a| *a == "--interval").unwrap();
    let report_secs: u64 = args[at + 1].parse().unwrap();
    let scrape_secs: u64 = ep["interval"]
        .as_str()
        .and_then(|i| i.strip_suffix('s'))
        .and_then(|i| i.parse().ok())
        .expect("interval: Ns");
    assert!(
        scrape_secs >= report_secs,
        "{scrape_secs} s < {report_secs} s"
    );
    let text = read(&deploy("kubernetes/podmonitor.yaml"));
    assert!(
        text.contains(&format!("a report every {report_secs} s")),
        "podmonitor.yaml's comment does not say {report_secs} s"
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

/// The kube-rbac-proxy overlay: macdrop on loopback with no port of its
/// own, the proxy on the node's address in front of it with TLS, a token
/// only in the proxy's container, RBAC for exactly the reviews it makes,
/// and a PodMonitor that scrapes it with a token allowed to get /metrics.
#[test]
fn kube_rbac_proxy_overlay_fronts_the_metrics() {
    let r = rendered_proxied();
    validate_strictly(r, "proxied.yaml");
    let ds = r.named("DaemonSet", Some("macdrop"));
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    let containers: BTreeMap<&str, &Value> = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c))
        .collect();
    assert_eq!(
        containers.keys().copied().collect::<Vec<_>>(),
        ["kube-rbac-proxy", "macdrop"]
    );
    let (macdrop, proxy) = (containers["macdrop"], containers["kube-rbac-proxy"]);

    // macdrop: loopback only, no declared port, probed there directly.
    let args = strings(&macdrop["args"]);
    let listen = args
        .windows(2)
        .find(|w| w[0] == "--metrics")
        .map(|w| w[1])
        .unwrap();
    assert_eq!(listen, "127.0.0.1:9815", "{args:?}");
    assert!(args.contains(&"--all-netns"), "{args:?}");
    assert!(macdrop["ports"].as_array().is_none_or(Vec::is_empty));
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &macdrop[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(
            format!("{}:{}", get["host"].as_str().unwrap(), get["port"]),
            listen,
            "{probe}"
        );
    }
    // Everything else of macdrop's container is the base's.
    let base = &object("DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    for key in ["securityContext", "volumeMounts", "resources", "image"] {
        assert_eq!(macdrop[key], base[key], "{key}");
    }

    // The proxy: the node's address over TLS, upstream macdrop's address,
    // /metrics only; unprivileged; the only container with a token.
    let pargs = strings(&proxy["args"]);
    for want in [
        "--secure-listen-address=$(POD_IP):9815".to_owned(),
        format!("--upstream=http://{listen}/"),
        "--allow-paths=/metrics".to_owned(),
    ] {
        assert!(pargs.contains(&want.as_str()), "{want}: {pargs:?}");
    }
    assert!(
        !pargs
            .iter()
            .any(|a| a.starts_with("--insecure-listen-address")),
        "{pargs:?}"
    );
    assert_eq!(proxy["ports"][0]["name"], "metrics");
    assert_eq!(proxy["ports"][0]["containerPort"], 9815);
    assert_eq!(
        proxy["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    let sc = &proxy["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(sc["capabilities"]["add"].is_null());
    for what in ["requests", "limits"] {
        let res = &proxy["resources"][what];
        assert!(
            res["cpu"].is_string() && res["memory"].is_string(),
            "{what}"
        );
    }
    let token_mounts = |c: &Value| {
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount")
            .count()
    };
    assert_eq!(token_mounts(proxy), 1);
    assert_eq!(
        token_mounts(macdrop),
        0,
        "macdrop never talks to the API server"
    );

    // RBAC: the proxy's ServiceAccount may create the two reviews, nothing
    // else; the scraper may get /metrics, nothing else.
    let sa = pod["serviceAccountName"].as_str().unwrap();
    let rules_of = |role: &str| r.named("ClusterRole", Some(role))["rules"].clone();
    let bound_to = |binding: &str| {
        let b = r.named("ClusterRoleBinding", Some(binding));
        let s = &b["subjects"][0];
        assert_eq!(b["subjects"].as_array().unwrap().len(), 1, "{binding}");
        assert_eq!(s["kind"], "ServiceAccount", "{binding}");
        assert_eq!(s["namespace"], "macdrop", "{binding}");
        (
            b["roleRef"]["name"].as_str().unwrap().to_owned(),
            s["name"].as_str().unwrap().to_owned(),
        )
    };
    let (proxy_role, proxy_sa) = bound_to("macdrop-kube-rbac-proxy");
    assert_eq!(proxy_sa, sa);
    assert_eq!(
        rules_of(&proxy_role),
        serde_json::json!([
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
        ])
    );
    let (reader_role, scraper) = bound_to("macdrop-metrics-reader");
    assert_eq!(
        rules_of(&reader_role),
        serde_json::json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])
    );
    assert_eq!(
        r.named("ServiceAccount", Some(&scraper))["automountServiceAccountToken"],
        false
    );
    let token = r.named("Secret", Some("macdrop-scraper-token"));
    assert_eq!(token["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        token["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        scraper.as_str()
    );

    // The PodMonitor scrapes the proxy over HTTPS with that token.
    let ep = &r.named("PodMonitor", None)["spec"]["podMetricsEndpoints"][0];
    only_known_endpoint_fields(ep);
    assert_eq!(ep["port"], "metrics");
    assert_eq!(ep["scheme"], "https");
    assert_eq!(ep["authorization"]["type"], "Bearer");
    assert_eq!(
        ep["authorization"]["credentials"]["name"],
        "macdrop-scraper-token"
    );
    assert_eq!(ep["authorization"]["credentials"]["key"], "token");
    let svc = r.named("Service", None);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
}

/// VmHWM of `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A memory quantity (`512Mi`, `1Gi`) in MiB.
fn mebibytes(quantity: &str) -> f64 {
    let (number, unit) = quantity.split_at(quantity.find(|c: char| c.is_alphabetic()).unwrap());
    let n: f64 = number.parse().unwrap();
    match unit {
        "Mi" => n,
        "Gi" => n * 1024.0,
        other => panic!("unit {other} in {quantity}"),
    }
}

/// The DaemonSet's memory sizing, from its comment: `sizing:` gives the
/// constants, `limit:` and `request:` the namespaces and CPUs each covers.
struct Sizing {
    rss_mib: f64,
    maps_mib: f64,
    maps_per_cpu_mib: f64,
    /// (namespaces, cpus) of the limit, then of the request.
    covers: [(f64, f64); 2],
}

fn sizing() -> Sizing {
    let text = read(&deploy("kubernetes/daemonset.yaml"));
    let fields = |prefix: &str| -> BTreeMap<String, f64> {
        let line = text
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in daemonset.yaml"));
        line.split(['-', ' '])
            .take_while(|w| !w.starts_with('>'))
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
            .collect()
    };
    let constants = fields("# sizing:");
    let covers = ["# limit:", "# request:"].map(|p| {
        let f = fields(p);
        (f["namespaces"], f["cpus"])
    });
    Sizing {
        rss_mib: constants["rss_mib"],
        maps_mib: constants["maps_mib"],
        maps_per_cpu_mib: constants["maps_per_cpu_mib"],
        covers,
    }
}

impl Sizing {
    fn need_mib(&self, (namespaces, cpus): (f64, f64)) -> f64 {
        self.rss_mib + namespaces * (self.maps_mib + cpus * self.maps_per_cpu_mib)
    }
}

/// The limit and the request are at least what the formula in their
/// comment gives for the namespaces and CPUs each claims to cover.
#[test]
fn memory_fits_the_formula_in_the_manifest() {
    let s = sizing();
    let resources = &object("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["resources"];
    for (what, covers) in [("limits", s.covers[0]), ("requests", s.covers[1])] {
        let have = mebibytes(resources[what]["memory"].as_str().unwrap());
        let need = s.need_mib(covers);
        assert!(
            have >= need,
            "{what}.memory {have} MiB < {need:.0} MiB for {covers:?} (namespaces, cpus)"
        );
    }
    // The comment's worked sums are the formula's.
    let text = read(&deploy("kubernetes/daemonset.yaml"));
    for (prefix, covers) in [("# limit:", s.covers[0]), ("# request:", s.covers[1])] {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap();
        let stated: f64 = line
            .rsplit("= ")
            .next()
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `= N MiB` in {line:?}"));
        assert_eq!(stated, s.need_mib(covers).round(), "{line}");
    }
}

/// What one macdrop's BPF maps cost the memory cgroup, from the memlock
/// of each map in /proc/PID/fdinfo: (fixed MiB, MiB per possible CPU).
fn map_memory(pid: u32) -> (f64, f64) {
    // BPF_MAP_TYPE_PERCPU_HASH, _PERCPU_ARRAY, _LRU_PERCPU_HASH,
    // _PERCPU_CGROUP_STORAGE: one value per possible CPU.
    const PER_CPU_TYPES: &[u32] = &[5, 6, 10, 21];
    let possible = fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let cpus: f64 = possible
        .trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<f64>().unwrap() - a.parse::<f64>().unwrap() + 1.0,
            None => 1.0,
        })
        .sum();
    let (mut fixed, mut per_cpu) = (0.0, 0.0);
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let Ok(info) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let (Some(kind), Some(memlock)) = (field("map_type:"), field("memlock:")) else {
            continue;
        };
        let mib = memlock / (1024.0 * 1024.0);
        if PER_CPU_TYPES.contains(&(kind as u32)) {
            per_cpu += mib / cpus;
        } else {
            fixed += mib;
        }
    }
    (fixed, per_cpu)
}

/// The DaemonSet's container as the lab runs it.
pub(crate) struct Pod {
    /// Its arguments, `$(POD_IP)` expanded to the lab's node address.
    pub(crate) args: Vec<String>,
    /// The `--metrics` address among them.
    pub(crate) metrics: String,
    /// The `--interval` among them, in seconds.
    pub(crate) interval: u64,
    /// The capabilities it adds (after dropping ALL), as written (`BPF`).
    pub(crate) added: Vec<String>,
}

pub(crate) fn pod() -> Pod {
    let c = &object("DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = strings(&c["args"])
        .into_iter()
        .map(|a| a.replace("$(POD_IP)", LAB_NODE_IP))
        .collect();
    let metrics = args
        .windows(2)
        .find(|w| w[0] == "--metrics")
        .map(|w| w[1].clone())
        .expect("the DaemonSet's --metrics");
    let interval: u64 = args
        .windows(2)
        .find(|w| w[0] == "--interval")
        .map_or(Ok(1), |w| w[1].parse())
        .expect("the DaemonSet's --interval");
    let added = strings(&c["securityContext"]["capabilities"]["add"])
        .into_iter()
        .map(str::to_owned)
        .collect();
    Pod {
        args,
        metrics,
        interval,
        added,
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
    let Pod {
        args,
        metrics,
        interval,
        added,
    } = pod();
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
    let added: Vec<&str> = added.iter().map(String::as_str).collect();
    let (uid, eff) = credentials(m.macdrop_pid().unwrap());
    assert_eq!(uid, 0);
    assert_eq!(eff & !cap_mask(&added), 0, "CapEff {eff:#x}");
    // The memory formula's constants hold for this namespace's maps.
    let s = sizing();
    let (fixed, per_cpu) = map_memory(m.macdrop_pid().unwrap());
    assert!(
        fixed > 0.0 && per_cpu > 0.0,
        "no maps seen: {fixed} {per_cpu}"
    );
    assert!(fixed <= s.maps_mib, "maps {fixed:.2} MiB > maps_mib");
    assert!(
        per_cpu <= s.maps_per_cpu_mib,
        "per CPU {per_cpu:.2} MiB > maps_per_cpu_mib"
    );
    send_frames(&lab).unwrap();
    // The first report comes one interval after attaching.
    m.scrape_until_exact(lab.host(), &metrics, Duration::from_secs(2 * interval + 20))
        .unwrap();
    let (status, body) = http_get(lab.host(), &metrics, "/healthz").unwrap();
    assert_eq!(status, 200, "readiness and liveness probe: {body}");
    let peak = peak_rss_mib(m.macdrop_pid().unwrap());
    assert!(peak <= s.rss_mib, "peak RSS {peak:.1} MiB > rss_mib");
    assert_eq!(m.terminate().unwrap(), Some(0));
}
