//! The thread that names the owners of watched veths' peers, off the report
//! path: the monitor tells it which ports have a peer elsewhere
//! (`Resolver::want`) and reads the latest answers (`Resolver::get`),
//! neither of which waits on /proc, netlink or the Engine.
//!
//! When it works: as soon as the ports wanted change (a port came or
//! went) or the Docker Engine or Podman reports a container starting or
//! stopping (`events`), and again every `RETRY` while a port has no answer (a
//! container's process may start after its veth) or every `REFRESH`
//! regardless (a container replaced, the Engine stopped or back); never
//! more often than `MIN_GAP`, which bounds its cost (a /proc scan and a
//! few calls to the Engine) under churn. Answers are kept by (watching
//! namespace, ifindex) while the port is wanted with the same peer
//! namespace: a port that goes keeps its last one in the report (the
//! session's copy), and the thread forgets it, so its memory is bounded
//! and a new port that reuses the ifindex never shows the old one's owner.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        mpsc::{self, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    Peer, Workload,
    cri::Cri,
    docker::Docker,
    events::{self, Events},
    podman::Podman,
    process,
};
use crate::netlink::NsidLookup;

/// The Engine's socket unless `MACDROP_DOCKER_HOST` names another (a path,
/// or `unix://PATH` as `DOCKER_HOST` spells it).
pub const DEFAULT_DOCKER_HOST: &str = "/var/run/docker.sock";
pub const DOCKER_HOST_VAR: &str = "MACDROP_DOCKER_HOST";
/// Podman's service socket (rootful) unless `MACDROP_PODMAN_HOST` names
/// another, spelled the same way.
pub const DEFAULT_PODMAN_HOST: &str = "/run/podman/podman.sock";
pub const PODMAN_HOST_VAR: &str = "MACDROP_PODMAN_HOST";
/// The CRI sockets asked (each that exists) unless `MACDROP_CRI_ENDPOINT`
/// names one (a path, or `unix://PATH` as crictl's
/// `CONTAINER_RUNTIME_ENDPOINT` spells it).
pub const DEFAULT_CRI_ENDPOINTS: &[&str] =
    &["/run/containerd/containerd.sock", "/run/crio/crio.sock"];
pub const CRI_ENDPOINT_VAR: &str = "MACDROP_CRI_ENDPOINT";

/// Where the container runtimes answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sockets {
    pub docker: PathBuf,
    pub podman: PathBuf,
    pub cri: Vec<PathBuf>,
}

impl Sockets {
    /// The defaults, or what the environment variables name.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok();
        Self::from_vars(
            var(DOCKER_HOST_VAR).as_deref(),
            var(PODMAN_HOST_VAR).as_deref(),
            var(CRI_ENDPOINT_VAR).as_deref(),
        )
    }

    fn from_vars(docker: Option<&str>, podman: Option<&str>, cri: Option<&str>) -> Self {
        Self {
            docker: unix_socket(docker, DEFAULT_DOCKER_HOST),
            podman: unix_socket(podman, DEFAULT_PODMAN_HOST),
            cri: match cri.filter(|c| !c.is_empty()) {
                Some(c) => vec![unix_socket(Some(c), "")],
                None => DEFAULT_CRI_ENDPOINTS.iter().map(PathBuf::from).collect(),
            },
        }
    }
}

const MIN_GAP: Duration = Duration::from_millis(250);
const RETRY: Duration = Duration::from_secs(1);
const REFRESH: Duration = Duration::from_secs(5);
/// How long after a change unanswered ports are retried every `RETRY`.
const RETRY_WINDOW: Duration = Duration::from_secs(30);
/// Bound on one RTM_GETNSID round trip.
const NSID_TIMEOUT: Duration = Duration::from_millis(500);

/// Ports wanted per watching namespace: its nsid lookup and, per ifindex,
/// what names its owner (`Peer`).
type Wanted = HashMap<u32, (NsidLookup, BTreeMap<u32, Peer>)>;

enum Message {
    Want(u32, NsidLookup, BTreeMap<u32, Peer>),
    Forget(u32),
    /// The Engine reported a container starting or stopping.
    Nudge,
}

#[derive(Default)]
struct Shared {
    by_port: HashMap<(u32, u32), Workload>,
    notes: Vec<String>,
}

pub struct Resolver {
    /// Docker's and Podman's event streams; each holds a sender of the
    /// channel: dropped first.
    events: Vec<Events>,
    tx: Option<mpsc::Sender<Message>>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

impl Resolver {
    /// Starts the thread. Start it after macdrop dropped its capabilities:
    /// a thread inherits its creator's.
    pub fn start(sockets: Sockets) -> anyhow::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, rx) = mpsc::channel();
        // Podman's service serves the Engine's `/events` too.
        let streams = [sockets.docker.clone(), sockets.podman.clone()];
        let worker = Worker::new(sockets, rx, Arc::clone(&shared))?;
        let events = streams
            .into_iter()
            .map(|socket| Events::start(socket, events::sender(tx.clone(), || Message::Nudge)))
            .collect::<anyhow::Result<_>>()?;
        let thread = std::thread::Builder::new()
            .name("macdrop-workload".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            events,
            tx: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    /// The ports of namespace `netns` with a peer elsewhere: ifindex ->
    /// the peer namespace's id there. Cheap when nothing changed.
    pub fn want(&self, netns: u32, lookup: NsidLookup, peers: BTreeMap<u32, Peer>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Want(netns, lookup, peers));
        }
    }

    /// The namespace is no longer watched.
    pub fn forget(&self, netns: u32) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Forget(netns));
        }
    }

    /// The latest answer for a port, if any.
    pub fn get(&self, netns: u32, ifindex: u32) -> Option<Workload> {
        self.lock().by_port.get(&(netns, ifindex)).cloned()
    }

    /// Lines for stderr (the Engine lost or back), each said once.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().notes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        locked(&self.shared)
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop (once the events
        // thread, which holds a sender, is gone); a resolution under way
        // ends within its timeouts.
        self.events.clear();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One pass over the ports `peers` (ifindex -> peer namespace id) of
/// namespace `netns`, for one-shot commands (`status`): their owners, and
/// the lines for stderr. Bounded by the sources' timeouts. It runs a
/// runtime of its own, so call it off the async threads (spawn_blocking);
/// `lookup`'s socket must be served meanwhile.
pub fn resolve_once(
    sockets: Sockets,
    netns: u32,
    lookup: NsidLookup,
    peers: BTreeMap<u32, Peer>,
) -> anyhow::Result<(BTreeMap<u32, Workload>, Vec<String>)> {
    if peers.is_empty() {
        return Ok(Default::default());
    }
    let shared = Arc::new(Mutex::new(Shared::default()));
    let (_tx, rx) = mpsc::channel();
    let mut worker = Worker::new(sockets, rx, Arc::clone(&shared))?;
    worker.wanted.insert(netns, (lookup, peers));
    worker.resolve();
    let mut shared = locked(&shared);
    let owners = shared
        .by_port
        .drain()
        .map(|((_, ifindex), w)| (ifindex, w))
        .collect();
    Ok((owners, std::mem::take(&mut shared.notes)))
}

/// A socket variable's path (`unix://` optional), else the default.
fn unix_socket(host: Option<&str>, default: &str) -> PathBuf {
    let host = host.filter(|h| !h.is_empty()).unwrap_or(default);
    PathBuf::from(host.strip_prefix("unix://").unwrap_or(host))
}

/// A container runtime that names namespaces.
enum Source {
    Docker(Docker),
    Podman(Podman),
    Cri(Cri),
}

impl Source {
    /// For stderr: "cannot reach {what}".
    fn what(&self) -> &'static str {
        match self {
            Source::Docker(_) => "the Docker Engine",
            Source::Podman(_) => "Podman's service",
            Source::Cri(_) => "the CRI runtime",
        }
    }

    /// What it names ports by.
    fn names_by(&self) -> &'static str {
        match self {
            Source::Docker(_) | Source::Podman(_) => "container",
            Source::Cri(_) => "pod",
        }
    }

    fn socket(&self) -> &Path {
        match self {
            Source::Docker(d) => d.socket(),
            Source::Podman(p) => p.socket(),
            Source::Cri(c) => c.socket(),
        }
    }

    /// Namespace files by inode, for namespaces no visible process lives
    /// in: the CRI's pod namespaces.
    fn namespace_files(&self) -> Vec<(u64, PathBuf)> {
        match self {
            Source::Cri(c) => c.namespace_files(),
            Source::Docker(_) | Source::Podman(_) => Vec::new(),
        }
    }

    async fn by_namespace(&mut self) -> anyhow::Result<HashMap<u64, Workload>> {
        match self {
            Source::Docker(d) => d.by_namespace().await,
            Source::Podman(p) => p.by_namespace().await,
            Source::Cri(c) => c.by_namespace().await,
        }
    }
}

struct Engine {
    source: Source,
    /// Whether it answered last time; None before the first ask.
    up: Option<bool>,
}

impl Engine {
    fn new(source: Source) -> Self {
        Self { source, up: None }
    }

    /// Its workloads by namespace inode; none when it does not answer,
    /// with one note when it stops answering and one when it is back.
    fn ask(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        notes: &mut Vec<String>,
    ) -> HashMap<u64, Workload> {
        let what = self.source.what();
        match runtime.block_on(self.source.by_namespace()) {
            Ok(c) => {
                if self.up == Some(false) {
                    notes.push(format!(
                        "{what} at {} answers again: ports are named by {}",
                        self.source.socket().display(),
                        self.source.names_by()
                    ));
                }
                self.up = Some(true);
                c
            }
            // No socket and never an answer: a host without this runtime,
            // the normal case, and nothing to say about it.
            Err(_) if self.up.is_none() && !self.source.socket().exists() => HashMap::new(),
            Err(e) => {
                if self.up != Some(false) {
                    notes.push(format!(
                        "cannot reach {what} ({e:#}): ports are named by the \
                         processes in their peers' namespaces"
                    ));
                }
                self.up = Some(false);
                HashMap::new()
            }
        }
    }
}

struct Worker {
    rx: mpsc::Receiver<Message>,
    shared: Arc<Mutex<Shared>>,
    runtime: tokio::runtime::Runtime,
    /// In order of precedence: the first to name a namespace names it.
    engines: Vec<Engine>,
    wanted: Wanted,
}

impl Worker {
    fn new(
        sockets: Sockets,
        rx: mpsc::Receiver<Message>,
        shared: Arc<Mutex<Shared>>,
    ) -> anyhow::Result<Self> {
        // The pods first: on a node whose CRI is Docker (cri-dockerd) the
        // pod says more than its containers.
        let mut engines: Vec<Engine> = sockets
            .cri
            .into_iter()
            .map(|s| Engine::new(Source::Cri(Cri::new(s))))
            .collect();
        engines.push(Engine::new(Source::Podman(Podman::new(sockets.podman))));
        engines.push(Engine::new(Source::Docker(Docker::new(sockets.docker))));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            rx,
            shared,
            runtime,
            engines,
            wanted: HashMap::new(),
        })
    }

    fn run(mut self) {
        let mut last: Option<Instant> = None;
        let mut changed_at = Instant::now();
        let mut dirty = false;
        let mut unresolved = false;
        loop {
            // Unanswered ports are retried quickly for a while after a
            // change (a process joining its namespace late), then only
            // with the refresh: a namespace nobody lives in stays so.
            let eager = unresolved && changed_at.elapsed() < RETRY_WINDOW;
            let wait = match last {
                None => Duration::from_secs(3600),
                Some(at) => {
                    let period = if dirty || eager { RETRY } else { REFRESH };
                    (at + period.max(MIN_GAP)).saturating_duration_since(Instant::now())
                }
            };
            match self.rx.recv_timeout(wait) {
                Ok(m) => {
                    let changed = self.take(m);
                    dirty |= changed;
                    if changed {
                        changed_at = Instant::now();
                    }
                    // Everything already queued, before working.
                    while let Ok(m) = self.rx.try_recv() {
                        if self.take(m) {
                            dirty = true;
                            changed_at = Instant::now();
                        }
                    }
                    let due = last.is_none_or(|at| at.elapsed() >= MIN_GAP);
                    if !(dirty && due) {
                        continue;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.wanted.values().all(|(_, peers)| peers.is_empty()) {
                dirty = false;
                unresolved = false;
                last = Some(Instant::now());
                continue;
            }
            unresolved = self.resolve();
            dirty = false;
            last = Some(Instant::now());
        }
    }

    /// Takes one message; whether the ports wanted, or what owns them,
    /// may have changed.
    fn take(&mut self, m: Message) -> bool {
        match m {
            Message::Want(netns, lookup, peers) => {
                let same = self.wanted.get(&netns).is_some_and(|(_, p)| *p == peers);
                let old = self
                    .wanted
                    .insert(netns, (lookup, peers.clone()))
                    .map(|(_, p)| p)
                    .unwrap_or_default();
                if !same {
                    self.lock().by_port.retain(|&(n, ifindex), _| {
                        n != netns || still_answered(&old, &peers, ifindex)
                    });
                }
                !same
            }
            Message::Forget(netns) => {
                self.lock().by_port.retain(|&(n, _), _| n != netns);
                self.wanted.remove(&netns).is_some()
            }
            Message::Nudge => true,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        locked(&self.shared)
    }

    /// One pass over every wanted port; whether some port stayed without
    /// an answer.
    fn resolve(&mut self) -> bool {
        let owners = process::scan();
        let mut notes = Vec::new();
        let mut containers: HashMap<u64, Workload> = HashMap::new();
        for engine in &mut self.engines {
            for (inode, w) in engine.ask(&self.runtime, &mut notes) {
                containers.entry(inode).or_insert(w);
            }
        }
        for line in notes {
            self.note(line);
        }
        let files: Vec<(u64, PathBuf)> = self
            .engines
            .iter()
            .flat_map(|e| e.source.namespace_files())
            .collect();
        let taps: Vec<&str> = self
            .wanted
            .values()
            .flat_map(|(_, peers)| peers.values())
            .filter_map(|p| match p {
                Peer::Tap(name) => Some(name.as_str()),
                Peer::Netns(_) => None,
            })
            .collect();
        let holders = process::tap_holders(&taps);
        let mut unresolved = false;
        let mut answers = Vec::new();
        for (&netns, (lookup, peers)) in &self.wanted {
            let inodes = self.namespaces_by_id(netns, lookup, peers, &owners, &files);
            for (&ifindex, peer) in peers {
                let workload = match peer {
                    Peer::Netns(nsid) => inodes.get(nsid).and_then(|inode| {
                        containers
                            .get(inode)
                            .cloned()
                            .or_else(|| owners.get(inode).map(process::Owner::workload))
                    }),
                    // Names are per namespace: a holder living in the
                    // watched namespace first, else the lowest PID.
                    Peer::Tap(name) => holders.get(name).and_then(|found| {
                        found
                            .iter()
                            .find(|(_, ns)| *ns == u64::from(netns))
                            .or(found.first())
                            .map(|(owner, _)| owner.workload())
                    }),
                };
                match workload {
                    Some(w) => answers.push(((netns, ifindex), w)),
                    None => unresolved = true,
                }
            }
        }
        let mut shared = self.lock();
        shared.by_port.extend(answers);
        unresolved
    }

    /// The namespaces (by inode) of the ids wanted in `netns`: one
    /// RTM_GETNSID per namespace that has a process, asked in inode order
    /// until every id is named, then per namespace file a runtime named
    /// (`files`). Namespaces without either cannot be named this way (and
    /// have no owner to show).
    fn namespaces_by_id(
        &self,
        netns: u32,
        lookup: &NsidLookup,
        peers: &BTreeMap<u32, Peer>,
        owners: &BTreeMap<u64, process::Owner>,
        files: &[(u64, PathBuf)],
    ) -> HashMap<i32, u64> {
        let mut left: BTreeSet<i32> = peers.values().filter_map(Peer::nsid).collect();
        let mut out = HashMap::new();
        for (&inode, owner) in owners {
            if left.is_empty() {
                break;
            }
            if inode == u64::from(netns) {
                continue;
            }
            let asked = self.runtime.block_on(async {
                tokio::time::timeout(NSID_TIMEOUT, lookup.of_pid(owner.pid)).await
            });
            if let Ok(Ok(Some(id))) = asked
                && left.remove(&id)
            {
                out.insert(id, inode);
            }
        }
        for (inode, file) in files {
            if left.is_empty() {
                break;
            }
            if *inode == u64::from(netns) || owners.contains_key(inode) {
                continue; // asked above
            }
            let asked = self
                .runtime
                .block_on(async { tokio::time::timeout(NSID_TIMEOUT, lookup.of_file(file)).await });
            if let Ok(Ok(Some(id))) = asked
                && left.remove(&id)
            {
                out.insert(id, *inode);
            }
        }
        out
    }

    fn note(&self, line: String) {
        let mut shared = self.lock();
        shared.notes.push(line);
    }
}

/// The answers and notes. Every change to them is one call, so a thread
/// that panicked holding the lock left none half made: a poisoned lock is
/// taken as it is.
fn locked(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the answer for port `ifindex` still holds when the ports wanted
/// change from `old` to `new` (ifindex -> the peer's namespace id): the
/// port is still wanted, with its peer in the same namespace.
fn still_answered(old: &BTreeMap<u32, Peer>, new: &BTreeMap<u32, Peer>, ifindex: u32) -> bool {
    new.get(&ifindex)
        .is_some_and(|nsid| old.get(&ifindex) == Some(nsid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_ports_that_went_or_changed_peer_are_forgotten() {
        let n = Peer::Netns;
        let tap = |name: &str| Peer::Tap(name.into());
        let old = BTreeMap::from([(3, n(0)), (4, n(1)), (5, n(2)), (7, tap("tap0"))]);
        // 3 stays, 4 went, 5's ifindex now has its peer elsewhere, 6 is
        // new, 7 is a tap renamed.
        let new = BTreeMap::from([(3, n(0)), (5, n(7)), (6, n(1)), (7, tap("vm1"))]);
        let kept: Vec<u32> = (3..=7).filter(|&i| still_answered(&old, &new, i)).collect();
        assert_eq!(kept, [3]);
    }

    #[test]
    fn sockets_may_be_spelled_as_the_runtimes_do() {
        let defaults = Sockets::from_vars(None, Some(""), None);
        assert_eq!(defaults.docker, PathBuf::from(DEFAULT_DOCKER_HOST));
        assert_eq!(defaults.podman, PathBuf::from(DEFAULT_PODMAN_HOST));
        assert_eq!(
            defaults.cri,
            DEFAULT_CRI_ENDPOINTS
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        );
        let given = Sockets::from_vars(
            Some("unix:///tmp/d/docker.sock"),
            Some("/tmp/p.sock"),
            Some("unix:///tmp/c/containerd.sock"),
        );
        assert_eq!(given.docker, PathBuf::from("/tmp/d/docker.sock"));
        assert_eq!(given.podman, PathBuf::from("/tmp/p.sock"));
        assert_eq!(given.cri, vec![PathBuf::from("/tmp/c/containerd.sock")]);
    }
}
