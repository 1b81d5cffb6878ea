//! A Kubernetes node's view: pods by their sandbox's network namespace,
//! from the container runtime's CRI (containerd, CRI-O) over gRPC on its
//! unix socket, as the kubelet asks it; no kubectl, no API server.
//!
//! Read-only calls, each bounded by `unix_http::CALL_TIMEOUT`:
//! `ListPodSandbox` (the ready sandboxes: id, name, namespace, UID), then
//! once per new sandbox `PodSandboxStatus` with `verbose`, whose `info`
//! JSON (containerd's and CRI-O's alike) holds the sandbox's PID and its
//! runtime spec with the network namespace's path. The path
//! (/var/run/netns/cni-...) names the namespace without /proc (a
//! DaemonSet without hostPID mounts /run/netns); the PID is the fallback.
//! Pods on the node's network (hostNetwork) are left out: their namespace
//! is the node's.
//!
//! The protos are the `k8s-cri` crate's (generated from the kubelet's
//! api.proto with tonic); the v1 API, the one the kubelet itself has
//! required since Kubernetes 1.26 (tested here with containerd 1.6). A socket that answers without a CRI (containerd with its CRI
//! plugin disabled, as Docker hosts run it) is a host without Kubernetes:
//! nothing to say, nothing named.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ListPodSandboxRequest, NamespaceMode, PodSandboxFilter, PodSandboxState, PodSandboxStateValue,
    PodSandboxStatusRequest, PodSandboxStatusResponse,
    runtime_service_client::RuntimeServiceClient,
};
use serde::Deserialize;
use tonic::transport::{Channel, Endpoint};

use super::{Kind, Workload, clean, namespace_file, pid_namespace, unix_http::CALL_TIMEOUT};

pub struct Cri {
    socket: PathBuf,
    /// Per sandbox id: what its status said (None: on the node's network,
    /// or no namespace found), so each sandbox's status is asked once.
    known: HashMap<String, Option<Sandbox>>,
}

/// A pod sandbox as named here.
#[derive(Debug, PartialEq)]
struct Sandbox {
    workload: Workload,
    /// Its network namespace's inode.
    inode: u64,
    /// Its namespace file, when that is one here.
    file: Option<PathBuf>,
}

/// The part of a sandbox's verbose `info` JSON used here.
#[derive(Deserialize, Default)]
struct Info {
    #[serde(default)]
    pid: u32,
    #[serde(default, rename = "runtimeSpec")]
    runtime_spec: Option<Spec>,
}

#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    linux: Option<Linux>,
}

#[derive(Deserialize)]
struct Linux {
    #[serde(default)]
    namespaces: Vec<SpecNamespace>,
}

#[derive(Deserialize)]
struct SpecNamespace {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

impl Cri {
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            known: HashMap::new(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every ready pod sandbox, by the inode of its network namespace. An
    /// error means the runtime is not there (or not answering); a runtime
    /// without the CRI answers nothing.
    pub async fn by_namespace(&mut self) -> anyhow::Result<HashMap<u64, Workload>> {
        let mut client = RuntimeServiceClient::new(self.channel().await?);
        let request = ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                state: Some(PodSandboxStateValue {
                    state: PodSandboxState::SandboxReady as i32,
                }),
                ..Default::default()
            }),
        };
        let listed = match client.list_pod_sandbox(request).await {
            Ok(r) => r.into_inner().items,
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                self.known.clear();
                return Ok(HashMap::new());
            }
            Err(s) => anyhow::bail!("ListPodSandbox: {}", s.message()),
        };
        self.known
            .retain(|id, _| listed.iter().any(|s| &s.id == id));
        let mut out = HashMap::new();
        for sandbox in listed {
            if !self.known.contains_key(&sandbox.id) {
                let request = PodSandboxStatusRequest {
                    pod_sandbox_id: sandbox.id.clone(),
                    verbose: true,
                };
                // Gone between the two calls: asked again next time if not.
                let Ok(status) = client.pod_sandbox_status(request).await else {
                    continue;
                };
                self.known
                    .insert(sandbox.id.clone(), from_status(&status.into_inner()));
            }
            if let Some(Some(s)) = self.known.get(&sandbox.id) {
                out.insert(s.inode, s.workload.clone());
            }
        }
        Ok(out)
    }

    /// The namespace files of the sandboxes known, by inode: how their
    /// namespaces are found where their processes cannot be seen (a
    /// DaemonSet without hostPID).
    pub fn namespace_files(&self) -> Vec<(u64, PathBuf)> {
        self.known
            .values()
            .flatten()
            .filter_map(|s| Some((s.inode, s.file.clone()?)))
            .collect()
    }

    /// A gRPC channel over the unix socket; every call on it is bounded.
    async fn channel(&self) -> anyhow::Result<Channel> {
        let socket = self.socket.clone();
        // The URI is tonic's placeholder: the connector ignores it.
        Endpoint::from_static("http://cri")
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .with_context(|| format!("cannot connect to {}", self.socket.display()))
    }
}

/// The pod of a sandbox's verbose status and its namespace's inode: by
/// the namespace path of its runtime spec when that is a namespace file
/// here, else by its PID. None for a pod on the node's network.
fn from_status(r: &PodSandboxStatusResponse) -> Option<Sandbox> {
    let status = r.status.as_ref()?;
    let network = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .map(|o| o.network);
    if network == Some(NamespaceMode::Node as i32) {
        return None;
    }
    let info: Info = r
        .info
        .get("info")
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let path = info
        .runtime_spec
        .as_ref()
        .and_then(|s| s.linux.as_ref())
        .and_then(|l| l.namespaces.iter().find(|n| n.kind == "network"))
        .map(|n| n.path.as_str())
        .filter(|p| !p.is_empty());
    let pid = info.pid;
    // Runtimes write /var/run/netns/...; /var/run is /run on any current
    // system, and a container image (the DaemonSet's) may have only /run.
    let path = path.map(|p| match p.strip_prefix("/var/run/") {
        Some(rest) => format!("/run/{rest}"),
        None => p.to_owned(),
    });
    let file = path.and_then(|p| Some((namespace_file(&p)?, PathBuf::from(p))));
    let inode = file
        .as_ref()
        .map(|(inode, _)| *inode)
        .or_else(|| (pid > 0).then(|| pid_namespace(pid)).flatten())?;
    let metadata = status.metadata.as_ref()?;
    let workload = Workload {
        kind: Kind::Kubernetes,
        id: Some(clean(&status.id)),
        name: Some(clean(&metadata.name)),
        namespace: Some(clean(&metadata.namespace)),
        pod: Some(clean(&metadata.uid)),
        pid: (pid > 0).then_some(pid),
        compose_project: None,
        compose_service: None,
    };
    Some(Sandbox {
        workload,
        inode,
        file: file.map(|(_, p)| p),
    })
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::{
        LinuxPodSandboxStatus, Namespace, NamespaceOption, PodSandboxMetadata, PodSandboxStatus,
    };

    use super::*;

    fn response(network: NamespaceMode, info: &str) -> PodSandboxStatusResponse {
        PodSandboxStatusResponse {
            status: Some(PodSandboxStatus {
                id: "5e1f".into(),
                metadata: Some(PodSandboxMetadata {
                    name: "web\u{1b}-0".into(),
                    uid: "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9".into(),
                    namespace: "shop".into(),
                    attempt: 0,
                }),
                linux: Some(LinuxPodSandboxStatus {
                    namespaces: Some(Namespace {
                        options: Some(NamespaceOption {
                            network: network as i32,
                            ..Default::default()
                        }),
                    }),
                }),
                ..Default::default()
            }),
            info: [("info".to_owned(), info.to_owned())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_sandbox_is_named_by_its_namespace_path_else_its_pid() {
        let pid = std::process::id();
        let me = pid_namespace(pid).unwrap();
        // containerd's shape: the path is a namespace file here.
        let by_path = format!(
            r#"{{"pid":1,"runtimeSpec":{{"linux":{{"namespaces":[{{"type":"pid"}},
               {{"type":"network","path":"/proc/{pid}/ns/net"}}]}}}}}}"#
        );
        let s = from_status(&response(NamespaceMode::Pod, &by_path)).unwrap();
        assert_eq!(s.inode, me);
        assert_eq!(s.file, Some(PathBuf::from(format!("/proc/{pid}/ns/net"))));
        let w = s.workload;
        assert_eq!(w.kind, Kind::Kubernetes);
        assert_eq!(w.name.as_deref(), Some("web\\u{1b}-0"));
        assert_eq!(w.namespace.as_deref(), Some("shop"));
        assert_eq!(
            w.pod.as_deref(),
            Some("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9")
        );
        assert_eq!(w.id.as_deref(), Some("5e1f"));
        // A path that is no namespace here: the PID.
        let by_pid = format!(
            r#"{{"pid":{pid},"runtimeSpec":{{"linux":{{"namespaces":[
               {{"type":"network","path":"/proc/self/status"}}]}}}}}}"#
        );
        let s = from_status(&response(NamespaceMode::Pod, &by_pid)).unwrap();
        assert_eq!((s.inode, s.workload.pid, s.file), (me, Some(pid), None));
        // Neither: nothing to match a port by.
        assert_eq!(from_status(&response(NamespaceMode::Pod, "{}")), None);
        assert_eq!(from_status(&response(NamespaceMode::Pod, "not json")), None);
    }

    #[test]
    fn a_pod_on_the_node_network_names_no_port() {
        let pid = std::process::id();
        let info = format!(r#"{{"pid":{pid}}}"#);
        assert_eq!(from_status(&response(NamespaceMode::Node, &info)), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_socket_is_an_error_not_a_hang() {
        let mut c = Cri::new("/nonexistent/macdrop-test/cri.sock".into());
        let started = std::time::Instant::now();
        assert!(c.by_namespace().await.is_err());
        assert!(started.elapsed() <= CALL_TIMEOUT * 2);
    }
}
