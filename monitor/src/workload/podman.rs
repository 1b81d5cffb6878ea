//! Podman's view (rootful): container names, ids and Compose labels, by
//! the network namespace each container's process lives in. One read-only
//! call per refresh, `GET /v4.0.0/libpod/containers/json` (the running
//! containers, with their PIDs), over the socket of `podman system
//! service` (`/run/podman/podman.sock`, socket-activated by podman.socket
//! on systemd hosts), bounded by `unix_http::CALL_TIMEOUT`. Its
//! Engine-compatible `/events` nudges the resolver as Docker's does
//! (`events`): on a container's `start` (its end is `exited` or `died`
//! there, outside the filter, which costs nothing: a port that goes needs
//! no name).
//!
//! Why the API and not Podman's on-disk state: the state is a database
//! (BoltDB or SQLite) whose schema is Podman's internal business and
//! changes between releases, and reading it would race Podman's writers;
//! the API is versioned, documented and read-only here.
//! A host where the socket is not there (the service is not enabled) keeps
//! the process view, which still names the container id from its cgroup
//! (`libpod-<id>.scope`).
//!
//! Containers of a Podman pod share its infra container's namespace: the
//! first container that is not the infra one names it.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::{Kind, Workload, clean, pid_namespace, unix_http};

/// The libpod API's list of running containers. The version in the path
/// is the oldest API this was written against; Podman 4 and 5 serve it.
const LIST: &str = "/v4.0.0/libpod/containers/json";

pub struct Podman {
    socket: PathBuf,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    is_infra: bool,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

impl Podman {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every running container, by the inode of its network namespace.
    /// An error means Podman's service is not there (or not answering).
    pub async fn by_namespace(&mut self) -> anyhow::Result<HashMap<u64, Workload>> {
        let list: Vec<Listed> = unix_http::get(&self.socket, LIST).await?;
        Ok(by_namespace(&list))
    }
}

fn by_namespace(list: &[Listed]) -> HashMap<u64, Workload> {
    let mut out: HashMap<u64, (bool, Workload)> = HashMap::new();
    for c in list {
        let Some(inode) = (c.pid > 0).then(|| pid_namespace(c.pid)).flatten() else {
            continue;
        };
        // A pod's own container wins over its infra container.
        if out.get(&inode).is_some_and(|(infra, _)| !infra) {
            continue;
        }
        out.insert(inode, (c.is_infra, workload(c)));
    }
    out.into_iter().map(|(inode, (_, w))| (inode, w)).collect()
}

fn workload(c: &Listed) -> Workload {
    let label = |key: &str| c.labels.as_ref().and_then(|l| l.get(key)).map(|v| clean(v));
    Workload {
        kind: Kind::Podman,
        id: Some(clean(&c.id)),
        name: c.names.first().map(|n| clean(n)),
        namespace: None,
        pod: None,
        pid: Some(c.pid),
        // podman-compose sets Docker Compose's labels too.
        compose_project: label("com.docker.compose.project"),
        compose_service: label("com.docker.compose.service"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_container_is_named_by_its_namespace_and_a_pod_by_its_own_container() {
        let pid = std::process::id();
        let me = pid_namespace(pid).unwrap();
        let json = format!(
            r#"[{{"Id":"aaaa","Names":["3f2a-infra"],"Pid":{pid},"IsInfra":true}},
               {{"Id":"bbbb","Names":["web\u001b1"],"Pid":{pid},"IsInfra":false,
                 "Labels":{{"com.docker.compose.project":"shop"}}}},
               {{"Id":"cccc","Names":["stopped"],"Pid":0}}]"#
        );
        let list: Vec<Listed> = serde_json::from_str(&json).unwrap();
        let named = by_namespace(&list);
        assert_eq!(named.len(), 1);
        let w = &named[&me];
        assert_eq!(w.kind, Kind::Podman);
        assert_eq!(w.id.as_deref(), Some("bbbb"));
        assert_eq!(w.name.as_deref(), Some("web\\u{1b}1"));
        assert_eq!(w.compose_project.as_deref(), Some("shop"));
        assert_eq!(w.pid, Some(pid));
    }
}
