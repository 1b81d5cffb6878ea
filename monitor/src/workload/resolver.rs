//! The thread that names the owners of watched veths' peers, off the report
//! path: the monitor tells it which ports have a peer elsewhere
//! (`Resolver::want`) and reads the latest answers (`Resolver::get`),
//! neither of which waits on /proc, netlink or the Engine.
//!
//! When it works: as soon as the ports wanted change (a port came or
//! went) or the Engine reports a container starting or stopping
//! (`events`), and again every `RETRY` while a port has no answer (a
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
    path::PathBuf,
    sync::{
        Arc, Mutex,
        mpsc::{self, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    Workload,
    docker::Docker,
    events::{self, Events},
    process,
};
use crate::netlink::NsidLookup;

/// The Engine's socket unless `MACDROP_DOCKER_HOST` names another (a path,
/// or `unix://PATH` as `DOCKER_HOST` spells it).
pub const DEFAULT_DOCKER_HOST: &str = "/var/run/docker.sock";
pub const DOCKER_HOST_VAR: &str = "MACDROP_DOCKER_HOST";

const MIN_GAP: Duration = Duration::from_millis(250);
const RETRY: Duration = Duration::from_secs(1);
const REFRESH: Duration = Duration::from_secs(5);
/// How long after a change unanswered ports are retried every `RETRY`.
const RETRY_WINDOW: Duration = Duration::from_secs(30);
/// Bound on one RTM_GETNSID round trip.
const NSID_TIMEOUT: Duration = Duration::from_millis(500);

/// Ports wanted per watching namespace: its nsid lookup and, per ifindex,
/// the peer's namespace id.
type Wanted = HashMap<u32, (NsidLookup, BTreeMap<u32, i32>)>;

enum Message {
    Want(u32, NsidLookup, BTreeMap<u32, i32>),
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
    /// Holds a sender of the channel: dropped first.
    events: Option<Events>,
    tx: Option<mpsc::Sender<Message>>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

impl Resolver {
    /// Starts the thread. Start it after macdrop dropped its capabilities:
    /// a thread inherits its creator's.
    pub fn start(docker_host: Option<String>) -> anyhow::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, rx) = mpsc::channel();
        let worker = Worker::new(docker_host, rx, Arc::clone(&shared))?;
        let events = Events::start(
            worker.docker.socket().to_owned(),
            events::sender(tx.clone(), || Message::Nudge),
        )?;
        let thread = std::thread::Builder::new()
            .name("macdrop-workload".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            events: Some(events),
            tx: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    /// The ports of namespace `netns` with a peer elsewhere: ifindex ->
    /// the peer namespace's id there. Cheap when nothing changed.
    pub fn want(&self, netns: u32, lookup: NsidLookup, peers: BTreeMap<u32, i32>) {
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
        self.events = None;
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
    docker_host: Option<String>,
    netns: u32,
    lookup: NsidLookup,
    peers: BTreeMap<u32, i32>,
) -> anyhow::Result<(BTreeMap<u32, Workload>, Vec<String>)> {
    if peers.is_empty() {
        return Ok(Default::default());
    }
    let shared = Arc::new(Mutex::new(Shared::default()));
    let (_tx, rx) = mpsc::channel();
    let mut worker = Worker::new(docker_host, rx, Arc::clone(&shared))?;
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

/// `MACDROP_DOCKER_HOST`'s socket path (`unix://` optional), else the
/// default.
fn docker_socket(host: Option<&str>) -> PathBuf {
    let host = host
        .filter(|h| !h.is_empty())
        .unwrap_or(DEFAULT_DOCKER_HOST);
    PathBuf::from(host.strip_prefix("unix://").unwrap_or(host))
}

struct Worker {
    rx: mpsc::Receiver<Message>,
    shared: Arc<Mutex<Shared>>,
    runtime: tokio::runtime::Runtime,
    docker: Docker,
    /// Whether the Engine answered last time; None before the first ask.
    docker_up: Option<bool>,
    wanted: Wanted,
}

impl Worker {
    fn new(
        docker_host: Option<String>,
        rx: mpsc::Receiver<Message>,
        shared: Arc<Mutex<Shared>>,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            rx,
            shared,
            runtime,
            docker: Docker::new(docker_socket(docker_host.as_deref())),
            docker_up: None,
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
        let engine = self.runtime.block_on(self.docker.by_namespace());
        let containers = match engine {
            Ok(c) => {
                if self.docker_up == Some(false) {
                    self.note(format!(
                        "the Docker Engine at {} answers again: ports are named by container",
                        self.docker.socket().display()
                    ));
                }
                self.docker_up = Some(true);
                c
            }
            // No socket and never an answer: a host without Docker, the
            // normal case, and nothing to say about it.
            Err(_) if self.docker_up.is_none() && !self.docker.socket().exists() => HashMap::new(),
            Err(e) => {
                if self.docker_up != Some(false) {
                    self.note(format!(
                        "cannot reach the Docker Engine ({e:#}): ports are named by the \
                         processes in their peers' namespaces"
                    ));
                }
                self.docker_up = Some(false);
                HashMap::new()
            }
        };
        let mut unresolved = false;
        let mut answers = Vec::new();
        for (&netns, (lookup, peers)) in &self.wanted {
            let inodes = self.namespaces_by_id(netns, lookup, peers, &owners);
            for (&ifindex, nsid) in peers {
                let workload = inodes.get(nsid).and_then(|inode| {
                    containers
                        .get(inode)
                        .cloned()
                        .or_else(|| owners.get(inode).map(process::Owner::workload))
                });
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
    /// until every id is named. Namespaces without any process cannot be
    /// named this way (and have no owner to show).
    fn namespaces_by_id(
        &self,
        netns: u32,
        lookup: &NsidLookup,
        peers: &BTreeMap<u32, i32>,
        owners: &BTreeMap<u64, process::Owner>,
    ) -> HashMap<i32, u64> {
        let mut left: BTreeSet<i32> = peers.values().copied().collect();
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
fn still_answered(old: &BTreeMap<u32, i32>, new: &BTreeMap<u32, i32>, ifindex: u32) -> bool {
    new.get(&ifindex)
        .is_some_and(|nsid| old.get(&ifindex) == Some(nsid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_ports_that_went_or_changed_peer_are_forgotten() {
        let old = BTreeMap::from([(3, 0), (4, 1), (5, 2)]);
        // 3 stays, 4 went, 5's ifindex now has its peer elsewhere, 6 is new.
        let new = BTreeMap::from([(3, 0), (5, 7), (6, 1)]);
        let kept: Vec<u32> = (3..=6).filter(|&i| still_answered(&old, &new, i)).collect();
        assert_eq!(kept, [3]);
    }

    #[test]
    fn the_docker_host_may_be_spelled_as_docker_does() {
        assert_eq!(docker_socket(None), PathBuf::from(DEFAULT_DOCKER_HOST));
        assert_eq!(docker_socket(Some("")), PathBuf::from(DEFAULT_DOCKER_HOST));
        assert_eq!(
            docker_socket(Some("unix:///tmp/d/docker.sock")),
            PathBuf::from("/tmp/d/docker.sock")
        );
        assert_eq!(
            docker_socket(Some("/tmp/d.sock")),
            PathBuf::from("/tmp/d.sock")
        );
    }
}
