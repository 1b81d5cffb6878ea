//! The two-step start: a big initial batch of interfaces whose hook is TCX
//! is first attached through generic XDP (no RCU grace period per attach:
//! 1,000 ports in well under a second), so reports start at once, and then
//! moved to TCX one interface at a time by a thread of its own, while the
//! reports go on.
//!
//! Why a thread: every TCX link create takes RTNL and waits for an RCU
//! grace period under it (`tcx_entry_sync()`), milliseconds per interface
//! and more on a loaded host (the attach part of `cargo xtask bench`
//! measures it: docs/performance.md); 1,000 of them on
//! the monitor's loop would stall its reports for as long. The thread
//! enters the session's namespace once and only creates links; the session
//! takes the results on its ticks (`Session::advance_handoff`) and does the
//! rest, which is quick.
//!
//! Why TCX at all, when generic XDP is faster to attach: generic XDP costs
//! 7-9% of a veth's receive rate for as long as it is attached, TCX 2-4%.
//!
//! Exactness while both are attached, per interface (`IfConfig::flags`):
//! 1. `IF_TC_MUTED`: tc counts nothing; XDP counts every frame. Then the
//!    thread creates the TCX link.
//! 2. `IF_HANDOFF | IF_TC_MUTED`: XDP also marks each frame it counts in
//!    the per-CPU `HANDOFF_SEEN`; tc clears a mark it finds. One RCU grace
//!    period (`grace_period`): every frame that reaches tc from now on was
//!    seen by XDP under this configuration, so it carries the mark.
//! 3. `IF_HANDOFF`: tc counts exactly the frames without the mark. Generic
//!    XDP is detached (BPF_LINK_DETACH: off the hook on return), then one
//!    more grace period, so no XDP run is still in flight.
//! 4. No bit: tc counts everything, as on an interface attached directly.
//!
//! The mute step is what keeps the marker from going stale: had XDP marked
//! frames before the TCX link existed, a CPU could keep the mark of a
//! frame no tc program ever saw, and the first frame tc alone sees there
//! would not be counted. Marks made after step 2's grace period are
//! cleared by the tc run of the same frame. The receive path runs in
//! softirq, which an RCU grace period waits for
//! (`membarrier(MEMBARRIER_CMD_GLOBAL)` is `synchronize_rcu()`).

use std::{
    collections::HashSet,
    os::fd::{AsFd as _, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
};

use super::*;
use crate::{kernel::tc, netns::Namespace};

/// The two-step start is used when more interfaces than this would go to
/// TCX at start: below, TCX directly costs well under a second even on a
/// loaded host (16 × 49-64 ms), and one hook is simpler.
pub const MIN_BATCH: usize = 16;

/// What the thread sends back: one interface's TCX attach.
pub type Attached = (u32, anyhow::Result<tc::TcAttachment>);

/// The thread creating the TCX links of a hand-off.
pub struct Worker {
    stop: Arc<AtomicBool>,
    /// Interfaces that left while waiting: not attached any more.
    cancelled: Arc<Mutex<HashSet<u32>>>,
    rx: mpsc::Receiver<Attached>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts attaching `prog` (the tc program) through TCX to `ifindexes`
    /// of `ns`, in order.
    pub fn spawn(ns: &Namespace, prog: OwnedFd, ifindexes: Vec<u32>) -> anyhow::Result<Self> {
        let ns = ns.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let cancelled = Arc::new(Mutex::new(HashSet::new()));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let (stop, cancelled) = (stop.clone(), cancelled.clone());
            std::thread::Builder::new()
                .name("macdrop-handoff".into())
                .spawn(move || {
                    match ns.enter_for_good() {
                        Ok(()) => {}
                        Err(e) => {
                            let why = format!("{e:#}");
                            for ifindex in ifindexes {
                                let _ = tx.send((ifindex, Err(anyhow::anyhow!("{why}"))));
                            }
                            return;
                        }
                    };
                    // This thread only creates TCX links: keep what that
                    // needs (capabilities are per thread).
                    let _ = keep_only_attach_capabilities();
                    for ifindex in ifindexes {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        if cancelled.lock().is_ok_and(|c| c.contains(&ifindex)) {
                            continue;
                        }
                        let result = tc::attach_tcx_fd(prog.as_fd(), ifindex);
                        // The session is gone: the link drops (detaches).
                        if tx.send((ifindex, result)).is_err() {
                            return;
                        }
                    }
                })?
        };
        Ok(Self {
            stop,
            cancelled,
            rx,
            thread: Some(thread),
        })
    }

    /// The interface left the session: do not attach it (if not yet).
    pub fn cancel(&self, ifindex: u32) {
        if let Ok(mut c) = self.cancelled.lock() {
            c.insert(ifindex);
        }
    }

    /// The attaches done since the last call.
    pub fn take(&mut self) -> Vec<Attached> {
        self.rx.try_iter().collect()
    }

    /// The thread has attached everything (or stopped) and all its results
    /// were taken.
    pub fn finished(&mut self) -> bool {
        let done = self.thread.as_ref().is_none_or(|t| t.is_finished());
        if !done {
            return false;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        true
    }

    /// Stops the thread after its current attach and returns what it
    /// attached and nobody took, for the caller to detach.
    pub fn stop(&mut self) -> Vec<Attached> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.take()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Links not taken detach as they drop.
        drop(self.stop());
    }
}

/// Waits for an RCU grace period: every receive path (softirq) running
/// when it is called has finished when it returns.
pub fn grace_period() -> std::io::Result<()> {
    /// `MEMBARRIER_CMD_GLOBAL` (include/uapi/linux/membarrier.h): on a
    /// host with more than one CPU, `synchronize_rcu()`.
    const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
    // SAFETY: a syscall without pointers.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Narrows the calling thread's capabilities to those a TCX link create
/// needs.
fn keep_only_attach_capabilities() -> anyhow::Result<()> {
    use caps::{CapSet, Capability};
    let permitted = caps::read(None, CapSet::Permitted)?;
    let mut keep: HashSet<Capability> = [Capability::CAP_BPF, Capability::CAP_NET_ADMIN].into();
    if !permitted.contains(&Capability::CAP_BPF) {
        keep.insert(Capability::CAP_SYS_ADMIN);
    }
    crate::privileges::keep_only(keep).map(drop)
}

impl Session {
    /// Mutes tc on the interfaces now on generic XDP (step 1 of
    /// `crate::session::handoff`), then starts the thread creating their TCX links.
    pub(super) fn start_handoff(&mut self, ifindexes: Vec<u32>) -> anyhow::Result<()> {
        for &ifindex in &ifindexes {
            self.config.set_handoff(ifindex, IF_TC_MUTED)?;
        }
        let prog = self.attacher.tc_program_fd(&mut self.ebpf)?;
        self.moving = ifindexes.iter().copied().collect();
        self.handoff = Some(handoff::Worker::spawn(&self.ns, prog, ifindexes)?);
        Ok(())
    }

    /// Whether interfaces are still moving from generic XDP to TCX.
    pub fn handing_off(&self) -> bool {
        self.handoff.is_some()
    }

    /// Takes the TCX links the hand-off's thread created since the last
    /// call and moves their interfaces to them (steps 2-4 of
    /// `crate::session::handoff`); quick: two RCU grace periods per call, whatever
    /// the number of interfaces. Called on every tick while
    /// `handing_off`.
    pub fn advance_handoff(&mut self) -> anyhow::Result<()> {
        let Some(worker) = &mut self.handoff else {
            return Ok(());
        };
        let finished = worker.finished();
        let arrived = worker.take();
        let mut ready = Vec::new();
        for (ifindex, result) in arrived {
            // Not moving any more: the interface left meanwhile (the link,
            // if any, detaches as it drops).
            if !self.moving.remove(&ifindex) {
                continue;
            }
            match result {
                Ok(link) => ready.push((ifindex, link)),
                Err(e) => {
                    // It stays on generic XDP, which counts it.
                    self.config.set_handoff(ifindex, 0)?;
                    if let Some(m) = self.member_at(ifindex) {
                        let name = m.watched.name.clone();
                        self.notes.push(format!(
                            "{name}: cannot move to tcx ({e:#}); watching through xdp-generic"
                        ));
                    }
                }
            }
        }
        if !ready.is_empty() {
            self.take_over(ready)?;
        }
        if finished && self.moving.is_empty() {
            self.handoff = None;
        }
        Ok(())
    }

    pub(super) fn take_over(&mut self, ready: Vec<(u32, tc::TcAttachment)>) -> anyhow::Result<()> {
        for (ifindex, _) in &ready {
            self.config
                .set_handoff(*ifindex, IF_HANDOFF | IF_TC_MUTED)?;
        }
        if let Err(e) = handoff::grace_period() {
            // Without a grace period the marks cannot be trusted: the
            // muted TCX links go (dropped), generic XDP keeps counting.
            for (ifindex, _) in &ready {
                self.config.set_handoff(*ifindex, 0)?;
            }
            self.notes.push(format!(
                "cannot wait for an RCU grace period (membarrier: {e}); {} interface(s) stay on                  xdp-generic",
                ready.len()
            ));
            return Ok(());
        }
        let mut moved = Vec::new();
        for (ifindex, link) in ready {
            self.config.set_handoff(ifindex, IF_HANDOFF)?;
            // Detaching needs no namespace: both links are file descriptors.
            match self.attacher.take_over(ifindex, link) {
                Ok(()) => moved.push(ifindex),
                Err(link) => {
                    drop(link);
                    self.config.set_handoff(ifindex, 0)?;
                }
            }
        }
        // No XDP run is in flight after this; if it fails, the bit stays
        // (tc still counts every frame without a mark, as it must).
        if handoff::grace_period().is_ok() {
            for &ifindex in &moved {
                self.config.set_handoff(ifindex, 0)?;
                // A bridge now answers at tc alone (no XDP run is left).
                self.tell_config_the_hook(ifindex)?;
            }
        }
        let now = SystemTime::now();
        for ifindex in moved {
            let Some(&i) = self.present.get(&ifindex) else {
                continue;
            };
            let to = self.attacher.hook(ifindex).unwrap_or(Hook::Tcx);
            let m = &mut self.members[i];
            m.model.hook = Some(to);
            self.events.push(Event {
                ts: now,
                ifname: m.watched.name.clone(),
                ifindex,
                kind: EventKind::HookChanged {
                    from: Hook::XdpGeneric.as_str(),
                    to: to.as_str(),
                },
            });
        }
        Ok(())
    }
}
