//! The thread that names the owners of watched veths' peers, off the report
//! path: the monitor tells it which ports have a peer elsewhere
//! (`Resolver::want`) and reads the latest answers (`Resolver::get`),
//! neither of which waits on /proc, netlink or the Engine.
//!
//! When it works: as soon as the ports wanted change (a port came or
//! went) or the Docker Engine or Podman reports a container starting or
//! stopping (`events`); then it looks again while a port has no answer (a
//! container's process may start after its veth), first after `RETRY`
//! and backing off to every `REFRESH`, and every `REFRESH` regardless (a
//! container replaced, the Engine stopped or back); never more often than
//! `MIN_GAP`, which bounds its cost under churn. A look that is not asked
//! for by a change first lists the namespaces processes live in (a stat
//! per process) and does the whole pass (the /proc scan, an RTM_GETNSID
//! per namespace, the runtimes) only when that list changed since the last
//! pass: a port whose peer namespace no process lives in (a bridge's 1,000
//! veth peers in a bare namespace) stays unanswered at the cost of that
//! listing, not of a pass (`Schedule`). A runtime whose namespaces
//! processes do not show (the CRI's pods) is asked at every look while it
//! answers. Answers are kept by (watching
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
/// The first retry of unanswered ports after a change; each retry doubles
/// the wait, up to `REFRESH`.
const RETRY: Duration = Duration::from_secs(1);
const REFRESH: Duration = Duration::from_secs(5);
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
        let mut schedule = Schedule::default();
        loop {
            match self.rx.recv_timeout(schedule.wait(Instant::now())) {
                Ok(m) => {
                    let mut changed = self.take(m);
                    // Everything already queued, before working.
                    while let Ok(m) = self.rx.try_recv() {
                        changed |= self.take(m);
                    }
                    if changed {
                        schedule.changed();
                    }
                    if !schedule.due_on_change(Instant::now()) {
                        continue;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.wanted.values().all(|(_, peers)| peers.is_empty()) {
                schedule.passed(Instant::now(), false, None);
                continue;
            }
            if !schedule.needs_pass(Instant::now(), process::namespaces(), self.cri_up()) {
                continue;
            }
            let (unresolved, world) = self.resolve();
            schedule.passed(Instant::now(), unresolved, Some(world));
        }
    }

    /// Whether a runtime that names namespaces no process shows (the CRI's
    /// pods, which send no events) answered last time: then only asking
    /// it tells whether something changed.
    fn cri_up(&self) -> bool {
        self.engines
            .iter()
            .any(|e| matches!(e.source, Source::Cri(_)) && e.up == Some(true))
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
    /// an answer, and the namespaces processes live in (as
    /// `process::namespaces` lists them).
    fn resolve(&mut self) -> (bool, BTreeSet<u64>) {
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
        (unresolved, owners.into_keys().collect())
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

/// When the worker looks at the wanted ports again, and whether a look
/// needs the whole pass. Its own type so that the policy is tested with a
/// clock of the test's.
#[derive(Default)]
struct Schedule {
    /// The last look (a pass or a listing that found nothing new); None
    /// before the first: nothing is wanted yet.
    last: Option<Instant>,
    /// The ports wanted, or what owns them, may have changed.
    dirty: bool,
    /// Some port had no answer after the last pass.
    unresolved: bool,
    /// Looks since the last change: unanswered ports are retried after
    /// `RETRY`, then after twice as long at each look, up to `REFRESH`.
    retries: u32,
    /// The namespaces processes lived in at the last pass.
    world: Option<BTreeSet<u64>>,
    /// Whole passes and listings, for the tests.
    passes: u64,
    listings: u64,
}

impl Schedule {
    /// How long to wait for a message before looking again.
    fn wait(&self, now: Instant) -> Duration {
        let Some(at) = self.last else {
            return Duration::from_secs(3600);
        };
        let period = if self.dirty {
            RETRY
        } else if self.unresolved {
            (RETRY * 2u32.pow(self.retries.min(8))).min(REFRESH)
        } else {
            REFRESH
        };
        (at + period.max(MIN_GAP)).saturating_duration_since(now)
    }

    /// A message changed the ports wanted or said a container changed.
    fn changed(&mut self) {
        self.dirty = true;
    }

    /// After a message: whether to look now (a change, and `MIN_GAP`
    /// since the last look), else wait on.
    fn due_on_change(&self, now: Instant) -> bool {
        self.dirty && self.last.is_none_or(|at| now.duration_since(at) >= MIN_GAP)
    }

    /// Whether this look needs the whole pass: after a change, when the
    /// namespaces processes live in (`world`) are not those of the last
    /// pass, or when `always` (a runtime only asking tells about). Else the
    /// look is over: the last pass's answers, and its lack of them, stand.
    fn needs_pass(&mut self, now: Instant, world: BTreeSet<u64>, always: bool) -> bool {
        if self.dirty || always || self.world.as_ref() != Some(&world) {
            return true;
        }
        self.listings += 1;
        self.looked(now);
        false
    }

    /// A pass ended (`world`: None when there was nothing to look for).
    fn passed(&mut self, now: Instant, unresolved: bool, world: Option<BTreeSet<u64>>) {
        self.passes += u64::from(world.is_some());
        self.world = world;
        self.unresolved = unresolved;
        self.looked(now);
        self.dirty = false;
    }

    fn looked(&mut self, now: Instant) {
        self.last = Some(now);
        self.retries = if self.dirty { 0 } else { self.retries + 1 };
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

    /// Looks over `secs` seconds of reports (each sends the same ports)
    /// with the namespaces `world(t)` at each look; (passes, listings).
    fn simulate(secs: u64, world: impl Fn(Duration) -> BTreeSet<u64>) -> (u64, u64) {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        // The first message: the ports, unanswerable (their peer
        // namespace has no process).
        s.changed();
        assert!(s.due_on_change(t0));
        s.passed(t0, true, Some(world(Duration::ZERO)));
        let mut now = t0;
        while now < t0 + Duration::from_secs(secs) {
            // A report a second sends the same ports: no change, and not
            // due; the worker looks when its wait runs out.
            let wake = now + s.wait(now);
            now = wake;
            if s.needs_pass(now, world(now - t0), false) {
                s.passed(now, true, Some(world(now - t0)));
            }
        }
        (s.passes, s.listings)
    }

    #[test]
    fn unanswerable_ports_cost_one_pass_until_a_namespace_comes() {
        let same = |_| BTreeSet::from([1, 2, 3]);
        let (passes, listings) = simulate(120, same);
        // Measured before: a pass every second for 30 s, then every 5 s
        // (42 passes in 2 minutes, each a /proc scan, an RTM_GETNSID per
        // namespace and the runtimes).
        assert_eq!(passes, 1, "no namespace came: the first pass stands");
        // Backing off 1, 2, 4, then every 5 s: bounded listings.
        assert!(
            (20..=30).contains(&listings),
            "{listings} listings in 120 s"
        );
        // A process starting in a new namespace after 10 s: one pass more.
        let later = |t: Duration| {
            let mut w = BTreeSet::from([1, 2, 3]);
            if t >= Duration::from_secs(10) {
                w.insert(4);
            }
            w
        };
        assert_eq!(simulate(120, later).0, 2);
    }

    #[test]
    fn a_change_or_a_runtime_without_events_always_passes() {
        let t0 = Instant::now();
        let world = BTreeSet::from([1]);
        let mut s = Schedule::default();
        s.passed(t0, true, Some(world.clone()));
        let t1 = t0 + Duration::from_secs(1);
        assert!(s.needs_pass(t1, world.clone(), true), "the CRI is asked");
        s.changed();
        assert!(s.due_on_change(t1));
        assert!(s.needs_pass(t1, world.clone(), false), "a change: a pass");
        s.passed(t1, false, Some(world.clone()));
        assert!(!s.due_on_change(t1), "nothing changed since");
        assert_eq!(s.wait(t1), REFRESH, "all answered: the refresh");
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
