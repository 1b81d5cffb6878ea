//! Ports named by the CRI: a containerd of the test's own, with its CRI
//! plugin and the CNI bridge plugin, runs a pod sandbox the test creates
//! through the CRI (`RunPodSandbox`, as a kubelet would); macdrop, pointed
//! at the socket (`MACDROP_CRI_ENDPOINT`), names the sandbox's port by pod
//! (kind kubernetes, name, namespace, UID). Then again as the DaemonSet
//! sees a node: a macdrop in a PID namespace of its own (no process of the
//! pod visible, as without hostPID) finds the pod's namespace through the
//! namespace file the CRI names.

use std::{path::PathBuf, time::Duration};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    StopPodSandboxRequest, runtime_service_client::RuntimeServiceClient,
};
use macdrop_tests::{
    cri::{BRIDGE, CriLab},
    lab::{BRIDGE as LAB_BRIDGE, BridgeLab, port_name},
    macdrop::{Macdrop, Output, Report, WorkloadReport, macdrop_bin, watch_argv},
    netns::Sleeper,
    skip,
};
use tonic::transport::{Channel, Endpoint};

const NAMED: Duration = Duration::from_secs(20);
const POD: &str = "web-0";
const NAMESPACE: &str = "shop";
const UID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

/// The port named by a pod, and its workload.
fn pod_port(r: &Report) -> Option<(&str, &WorkloadReport)> {
    r.interfaces.iter().find_map(|i| {
        let w = i.workload.as_ref()?;
        (w.kind == "kubernetes").then_some((i.name.as_str(), w))
    })
}

/// The workload names the test's pod, sandbox `id`.
fn assert_is_the_pod(w: &WorkloadReport, id: &str) {
    assert_eq!(w.id.as_deref(), Some(id), "{w:?}");
    assert_eq!(w.name.as_deref(), Some(POD), "{w:?}");
    assert_eq!(w.namespace.as_deref(), Some(NAMESPACE), "{w:?}");
    assert_eq!(w.pod.as_deref(), Some(UID), "{w:?}");
}

/// The test's own CRI client: a kubelet's calls, on a runtime of its own.
struct Kubelet {
    runtime: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

impl Kubelet {
    fn connect(socket: PathBuf) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let channel =
            runtime.block_on(Endpoint::from_static("http://cri").connect_with_connector(
                tower::service_fn(move |_| {
                    let socket = socket.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(socket).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }),
            ))?;
        Ok(Self {
            runtime,
            client: RuntimeServiceClient::new(channel),
        })
    }

    /// RunPodSandbox of a pod on the pod network; its sandbox id.
    fn run_pod(&mut self, dir: &std::path::Path) -> Result<String, tonic::Status> {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: POD.into(),
                uid: UID.into(),
                namespace: NAMESPACE.into(),
                attempt: 0,
            }),
            hostname: POD.into(),
            log_directory: dir.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let answer = self
            .runtime
            .block_on(self.client.run_pod_sandbox(request))?;
        Ok(answer.into_inner().pod_sandbox_id)
    }

    /// StopPodSandbox and RemovePodSandbox: what kubelet does when a pod
    /// goes (its network torn down through CNI, its sandbox deleted).
    fn remove_pod(&mut self, id: &str) {
        let stop = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let _ = self.runtime.block_on(self.client.stop_pod_sandbox(stop));
        let remove = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let _ = self
            .runtime
            .block_on(self.client.remove_pod_sandbox(remove));
    }
}

/// A pod sandbox removed when dropped, also after a failed assertion.
struct Pod<'a> {
    kubelet: &'a mut Kubelet,
    id: String,
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        self.kubelet.remove_pod(&self.id);
    }
}

#[test]
fn a_port_is_named_by_its_kubernetes_pod() {
    let lab = match CriLab::start() {
        Ok(lab) => lab,
        Err(e) => {
            skip::record("ports named by the CRI (containerd)", &format!("{e:#}"));
            return;
        }
    };
    let mut kubelet = Kubelet::connect(lab.socket()).unwrap();
    let logs = std::env::temp_dir().join(format!("{}-logs", lab.host().name()));
    let id = match kubelet.run_pod(&logs) {
        Ok(id) => id,
        Err(e) => panic!("RunPodSandbox: {e}\n{}", lab.log_tail()),
    };
    let pod = Pod {
        kubelet: &mut kubelet,
        id,
    };
    let socket = lab.socket().display().to_string();
    let mut watch = Macdrop::spawn_with_env(
        &macdrop_bin(),
        lab.host(),
        &["--bridge", BRIDGE],
        Output::Json,
        &[("MACDROP_CRI_ENDPOINT", &socket)],
    )
    .unwrap();
    let report = watch.wait_for(|r| pod_port(r).is_some(), NAMED).unwrap();
    let (port, w) = pod_port(&report).unwrap();
    assert!(port.starts_with("veth"), "{port}");
    assert_is_the_pod(w, &pod.id);
    assert_eq!(w.pid, lab.task_pid(&pod.id), "{w:?}");
    assert!(w.pid.is_some(), "{w:?}");
    let stderr = watch.stderr();
    assert!(!stderr.contains("cannot reach"), "{stderr}");
    let port = port.to_owned();
    watch.stop().unwrap();

    // As a DaemonSet without hostPID: a PID namespace of its own, in the
    // mount namespace where the pod's namespace file is mounted.
    let bin = macdrop_bin();
    let args = ["--bridge", BRIDGE];
    let mut argv: Vec<&std::ffi::OsStr> = [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child=SIGTERM",
    ]
    .map(std::ffi::OsStr::new)
    .to_vec();
    argv.extend(watch_argv(&bin, &args, Output::Json));
    let mut cmd = lab.command(&argv);
    cmd.env("MACDROP_CRI_ENDPOINT", &socket);
    let mut pod_view = Macdrop::spawn_command(cmd, Output::Json).unwrap();
    let report = pod_view.wait_for(|r| pod_port(r).is_some(), NAMED).unwrap();
    let (seen, w) = pod_port(&report).unwrap();
    assert_eq!(seen, port);
    assert_is_the_pod(w, &pod.id);
    // unshare ends on the signal; its child, macdrop, gets SIGTERM then.
    let _ = pod_view.kill_with(libc::SIGTERM);

    drop(pod);
    drop(lab);
    let _ = std::fs::remove_dir_all(logs);
}

/// A containerd without its CRI (a Docker host's) answers the CRI with
/// "unimplemented": not a Kubernetes node, so nothing on stderr, and the
/// port keeps the process view.
#[test]
fn a_containerd_without_its_cri_is_no_kubernetes_node() {
    let containerd = match CriLab::start_without_cri() {
        Ok(lab) => lab,
        Err(e) => {
            skip::record("a containerd without CRI names nothing", &format!("{e:#}"));
            return;
        }
    };
    let lab = BridgeLab::new(1).unwrap();
    let sleeper = Sleeper::start(lab.peer(1)).unwrap();
    let socket = containerd.socket().display().to_string();
    let mut watch = Macdrop::spawn_with_env(
        &macdrop_bin(),
        lab.host(),
        &["--bridge", LAB_BRIDGE],
        Output::Json,
        &[("MACDROP_CRI_ENDPOINT", &socket)],
    )
    .unwrap();
    let p1 = port_name(1);
    let report = watch
        .wait_for(
            |r| r.interface(&p1).is_some_and(|i| i.workload.is_some()),
            NAMED,
        )
        .unwrap();
    let w = report.interface(&p1).unwrap().workload.clone().unwrap();
    assert_eq!((w.kind.as_str(), w.pid), ("process", Some(sleeper.pid())));
    // A resolver pass says what it lost before its answers show; ten
    // reports (2 s) more leave room for a second pass.
    let mut reports = 0;
    watch
        .wait_for(
            |_| {
                reports += 1;
                reports > 10
            },
            NAMED,
        )
        .unwrap();
    let stderr = watch.stderr();
    assert!(!stderr.contains("cannot reach"), "{stderr}");
    watch.stop().unwrap();
}
