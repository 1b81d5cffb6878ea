//! The Docker Engine's view: container names, ids, Compose labels, by the
//! network namespace each container's process lives in. Read-only calls
//! (`GET /containers/json`, `GET /containers/{id}/json`) over the Engine's
//! unix socket (`unix_http`), each bounded by `unix_http::CALL_TIMEOUT`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, de::DeserializeOwned};

use super::{Kind, Workload, clean, namespace_file, pid_namespace, unix_http};

pub struct Docker {
    socket: PathBuf,
    /// Per container id: its workload and namespace inode, so a container
    /// is inspected once, not on every refresh.
    known: HashMap<String, (Workload, u64)>,
}

#[derive(Deserialize)]
struct Summary {
    #[serde(rename = "Id")]
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    config: Option<Config>,
    #[serde(default)]
    state: Option<State>,
    #[serde(default)]
    network_settings: Option<NetworkSettings>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Config {
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct State {
    #[serde(default)]
    pid: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkSettings {
    #[serde(default)]
    sandbox_key: Option<String>,
}

impl Docker {
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            known: HashMap::new(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every running container, by the inode of its network namespace.
    /// An error means the Engine is not there (or not answering).
    pub async fn by_namespace(&mut self) -> anyhow::Result<HashMap<u64, Workload>> {
        let list: Vec<Summary> = self.get("/containers/json").await?;
        self.known.retain(|id, _| list.iter().any(|s| &s.id == id));
        let mut out = HashMap::new();
        for Summary { id } in list {
            // A restarted container keeps its id, not its process.
            let still = self
                .known
                .get(&id)
                .filter(|(w, inode)| w.pid.and_then(pid_namespace) == Some(*inode));
            if let Some((w, inode)) = still {
                out.insert(*inode, w.clone());
                continue;
            }
            if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                continue; // never put a strange id in a path
            }
            let inspect: Inspect = match self.get(&format!("/containers/{id}/json")).await {
                Ok(i) => i,
                // Gone between the two calls.
                Err(_) => continue,
            };
            if let Some((w, inode)) = from_inspect(&inspect) {
                self.known.insert(id, (w.clone(), inode));
                out.insert(inode, w);
            }
        }
        Ok(out)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        unix_http::get(&self.socket, path).await
    }
}

/// The workload of an inspected container and its namespace's inode: by
/// its main process's /proc/PID/ns/net, else by its sandbox key when that
/// is a namespace file here.
fn from_inspect(c: &Inspect) -> Option<(Workload, u64)> {
    let pid = c.state.as_ref().map_or(0, |s| s.pid);
    let sandbox = c
        .network_settings
        .as_ref()
        .and_then(|n| n.sandbox_key.as_deref())
        .filter(|k| !k.is_empty());
    let inode = (pid > 0)
        .then(|| pid_namespace(pid))
        .flatten()
        .or_else(|| sandbox.and_then(namespace_file))?;
    let label = |key: &str| {
        c.config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(key))
            .map(|v| clean(v))
    };
    let workload = Workload {
        kind: Kind::Docker,
        id: Some(clean(&c.id)),
        name: Some(clean(c.name.trim_start_matches('/'))),
        namespace: None,
        pod: None,
        pid: (pid > 0).then_some(pid),
        compose_project: label("com.docker.compose.project"),
        compose_service: label("com.docker.compose.service"),
    };
    Some((workload, inode))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{unix_http::CALL_TIMEOUT, *};

    #[test]
    fn an_inspected_container_is_named_and_cleaned() {
        let pid = std::process::id();
        let json = format!(
            r#"{{"Id":"3f2a1b9c0d4e","Name":"/web\u001b[2J1","State":{{"Pid":{pid},"Running":true}},
               "Config":{{"Labels":{{"com.docker.compose.project":"shop","com.docker.compose.service":"web"}}}},
               "NetworkSettings":{{"SandboxKey":"/var/run/docker/netns/abc"}}}}"#
        );
        let inspect: Inspect = serde_json::from_str(&json).unwrap();
        let (w, inode) = from_inspect(&inspect).unwrap();
        assert_eq!(inode, pid_namespace(pid).unwrap());
        assert_eq!(w.kind, Kind::Docker);
        assert_eq!(w.name.as_deref(), Some("web\\u{1b}[2J1"));
        assert_eq!(w.compose_project.as_deref(), Some("shop"));
        assert_eq!(w.compose_service.as_deref(), Some("web"));
        assert_eq!(w.pid, Some(pid));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_socket_is_an_error_not_a_hang() {
        let mut d = Docker::new("/nonexistent/macdrop-test/docker.sock".into());
        let started = std::time::Instant::now();
        assert!(d.by_namespace().await.is_err());
        assert!(started.elapsed() <= CALL_TIMEOUT + Duration::from_millis(200));
    }
}
