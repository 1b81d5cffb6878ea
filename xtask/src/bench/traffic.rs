//! The end-to-end load: small UDP datagrams (60-byte frames) from one
//! sender thread into two twin labs in turn (`PairedFlow`), each from a
//! namespace of its own to a receiver namespace of its own, and a receiver
//! thread draining both sockets; the sender pinned to CPU 0, the receiver
//! to CPU 1. On veth the whole receive path (veth, XDP or tc, the IP
//! stack, the socket queue) runs in the sender's softirq on the sender's
//! CPU, so a lab's rate is the single-core cost of its path.
//!
//! Other work on the machine takes turns on that CPU too, so besides the
//! rate per wall-clock second each lab's rate is given per second of CPU
//! time its path actually got: the sender thread's own CPU clock (which,
//! without IRQ time accounting, includes the softirq work done in its
//! context) plus the CPU's ksoftirqd (the softirq work deferred to it),
//! over the phases the sender spent on that lab.

use std::{
    fs::File,
    net::SocketAddrV4,
    os::fd::AsRawFd as _,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use macdrop_tests::netns::NetNs;

/// UDP payload: 14 (Ethernet) + 20 (IPv4) + 8 (UDP) + 18 = 60 bytes.
const PAYLOAD: usize = 18;
/// Datagrams per sendmmsg/recvmmsg.
pub const BATCH: usize = 64;

/// One lab's rates over a measurement window.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// Datagrams received per second.
    pub received: f64,
    /// Datagrams sent per second.
    pub sent: f64,
    /// Datagrams received per second of CPU time spent on the path.
    pub per_cpu_second: f64,
    /// Share of the sender's CPU the path got.
    pub cpu_share: f64,
}

/// /proc/PID/schedstat of `ksoftirqd/CPU`.
fn ksoftirqd(cpu: usize) -> Option<PathBuf> {
    let name = format!("ksoftirqd/{cpu}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == name).then(|| e.path().join("schedstat"))
    })
}

/// Moves the calling thread into the namespace and onto the CPU.
fn enter(ns: &PathBuf, cpu: usize) -> Result<()> {
    let file = File::open(ns).with_context(|| format!("open {}", ns.display()))?;
    // SAFETY: plain syscalls; the fd is open, the cpu set is initialised.
    unsafe {
        if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(std::io::Error::last_os_error()).context("setns");
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
        }
    }
    Ok(())
}

struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: our own open fd.
        unsafe { libc::close(self.0) };
    }
}

fn udp_socket() -> Result<Fd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket");
    }
    Ok(Fd(fd))
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn setsockopt<T>(fd: &Fd, level: i32, name: i32, value: &T) -> Result<()> {
    // SAFETY: `value` points to a valid T of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd.0,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setsockopt");
    }
    Ok(())
}

fn receiver_socket(dst: SocketAddrV4) -> Result<Fd> {
    let fd = udp_socket()?;
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &(16i32 << 20))?;
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
    // Any address of the namespace: a flood's destination may be an
    // address nobody has (its frames never arrive anyway).
    let dst = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, dst.port());
    let addr = sockaddr(dst);
    // SAFETY: a valid sockaddr_in of the given size.
    let rc = unsafe {
        libc::bind(
            fd.0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("bind {dst}"));
    }
    Ok(fd)
}

fn sender_socket(dst: SocketAddrV4) -> Result<Fd> {
    let fd = udp_socket()?;
    let addr = sockaddr(dst);
    // SAFETY: a valid sockaddr_in of the given size.
    let rc = unsafe {
        libc::connect(
            fd.0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("connect {dst}"));
    }
    Ok(fd)
}

/// Two flows through two identical labs, interleaved by one sender thread:
/// it alternates between them every `PHASE_BATCHES` batches (about a
/// millisecond) and charges each phase's CPU time (its own CPU clock plus
/// ksoftirqd's) to the lab it sent into. A setup attached in one lab is
/// compared with nothing attached in the other under the same machine
/// state: this guest's speed changes over tens of milliseconds to seconds
/// (one flow measured for 1.5 s varied by ±20 % from window to window),
/// which the alternation cancels and separate windows cannot.
///
/// The receiver drains both sockets without waiting on them (never a
/// socket waiter, so the path never pays a wakeup, whose cost depended on
/// whether the receiver happened to be asleep), every `DRAIN_EVERY`.
pub struct PairedFlow {
    stop: Arc<AtomicBool>,
    arms: Arc<[Arm; 2]>,
    threads: Vec<JoinHandle<Result<()>>>,
}

/// Batches sent into one lab before switching to the other.
pub const PHASE_BATCHES: usize = 4;
/// How often the receiver drains the sockets.
const DRAIN_EVERY: Duration = Duration::from_micros(200);

/// One lab's running totals.
#[derive(Default)]
struct Arm {
    sent: AtomicU64,
    received: AtomicU64,
    /// CPU time of the phases spent on this lab (sender thread +
    /// ksoftirqd), ns.
    cpu_ns: AtomicU64,
    /// Wall-clock time of those phases, ns.
    wall_ns: AtomicU64,
}

/// One lab's totals at one instant.
#[derive(Clone, Copy)]
pub struct ArmSample {
    pub received: u64,
    pub sent: u64,
    pub cpu_ns: u64,
    pub wall_ns: u64,
}

/// Where one of the two flows goes: the sender's and the receiver's
/// namespaces and the destination.
pub struct Path<'a> {
    pub tx: &'a NetNs,
    pub rx: &'a NetNs,
    pub dst: SocketAddrV4,
}

impl PairedFlow {
    /// Starts the receiver (both sockets, on `rx_cpu`), then the sender
    /// (on `tx_cpu`).
    pub fn start(paths: [Path<'_>; 2], tx_cpu: usize, rx_cpu: usize) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let arms: Arc<[Arm; 2]> = Arc::new(Default::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let rx = {
            let (stop, arms) = (stop.clone(), arms.clone());
            let ns = [paths[0].rx.path(), paths[1].rx.path()];
            let dst = [paths[0].dst, paths[1].dst];
            thread::spawn(move || -> Result<()> {
                let fds = (|| {
                    let a = enter(&ns[0], rx_cpu).and_then(|()| receiver_socket(dst[0]))?;
                    let b = enter(&ns[1], rx_cpu).and_then(|()| receiver_socket(dst[1]))?;
                    Ok::<_, anyhow::Error>([a, b])
                })();
                let fds = match fds {
                    Ok(fds) => {
                        let _ = ready_tx.send(Ok(()));
                        fds
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                drain(&fds, &stop, &arms)
            })
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("receiver: {e}"),
            Err(_) => bail!("receiver did not start"),
        }
        let tx = {
            let (stop, arms) = (stop.clone(), arms.clone());
            let ns = [paths[0].tx.path(), paths[1].tx.path()];
            let dst = [paths[0].dst, paths[1].dst];
            let ksoftirqd = ksoftirqd(tx_cpu);
            thread::spawn(move || -> Result<()> {
                let a = enter(&ns[0], tx_cpu).and_then(|()| sender_socket(dst[0]))?;
                let b = enter(&ns[1], tx_cpu).and_then(|()| sender_socket(dst[1]))?;
                send_interleaved(&[a, b], ksoftirqd, &stop, &arms)
            })
        };
        Ok(Self {
            stop,
            arms,
            threads: vec![rx, tx],
        })
    }

    /// Both labs' totals now.
    pub fn sample(&self) -> [ArmSample; 2] {
        self.arms.each_ref().map(|a| ArmSample {
            received: a.received.load(Ordering::Relaxed),
            sent: a.sent.load(Ordering::Relaxed),
            cpu_ns: a.cpu_ns.load(Ordering::Relaxed),
            wall_ns: a.wall_ns.load(Ordering::Relaxed),
        })
    }

    /// Stops both threads; an error of either is returned.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(anyhow::anyhow!("a traffic thread panicked")),
            }
        }
        result
    }
}

impl Drop for PairedFlow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One lab's rates between two samples. `wall` is the time its phases
/// took, so `received` is the rate while the sender was sending into it.
pub fn arm_rates(a: ArmSample, b: ArmSample) -> Rates {
    let wall = (b.wall_ns - a.wall_ns) as f64 / 1e9;
    let cpu = (b.cpu_ns - a.cpu_ns) as f64 / 1e9;
    let received = (b.received - a.received) as f64;
    Rates {
        received: received / wall,
        sent: (b.sent - a.sent) as f64 / wall,
        per_cpu_second: received / cpu,
        cpu_share: cpu / wall,
    }
}

/// This thread's CPU time, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// ksoftirqd's time on the CPU so far (the first field of its schedstat),
/// read through a file kept open.
fn softirq_ns(schedstat: Option<&File>) -> u64 {
    use std::os::unix::fs::FileExt as _;
    let Some(f) = schedstat else { return 0 };
    let mut buf = [0u8; 64];
    let n = f.read_at(&mut buf, 0).unwrap_or(0);
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn send_interleaved(
    fds: &[Fd; 2],
    ksoftirqd: Option<PathBuf>,
    stop: &AtomicBool,
    arms: &[Arm; 2],
) -> Result<()> {
    let schedstat = ksoftirqd.and_then(|p| File::open(p).ok());
    let mut payload = [0x5au8; PAYLOAD];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: PAYLOAD,
    };
    // SAFETY: all-zero mmsghdrs are valid; each then points at the iovec.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut cpu = thread_cpu_ns() + softirq_ns(schedstat.as_ref());
    let mut wall = Instant::now();
    'phases: for arm in (0..2).cycle() {
        for _ in 0..PHASE_BATCHES {
            if stop.load(Ordering::Relaxed) {
                break 'phases;
            }
            // SAFETY: `msgs` holds BATCH valid headers pointing at the payload.
            let n = unsafe { libc::sendmmsg(fds[arm].0, msgs.as_mut_ptr(), BATCH as u32, 0) };
            if n > 0 {
                arms[arm].sent.fetch_add(n as u64, Ordering::Relaxed);
            } else if n < 0 {
                let e = std::io::Error::last_os_error();
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS | libc::ECONNREFUSED)
                ) {
                    return Err(e).context("sendmmsg");
                }
            }
        }
        let (cpu_now, wall_now) = (
            thread_cpu_ns() + softirq_ns(schedstat.as_ref()),
            Instant::now(),
        );
        arms[arm]
            .cpu_ns
            .fetch_add(cpu_now.saturating_sub(cpu), Ordering::Relaxed);
        arms[arm]
            .wall_ns
            .fetch_add((wall_now - wall).as_nanos() as u64, Ordering::Relaxed);
        (cpu, wall) = (cpu_now, wall_now);
    }
    Ok(())
}

/// Drains both sockets without waiting on them, every `DRAIN_EVERY`.
fn drain(fds: &[Fd; 2], stop: &AtomicBool, arms: &[Arm; 2]) -> Result<()> {
    let mut bufs = vec![[0u8; 128]; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: all-zero mmsghdrs are valid; each then points at its iovec.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        for (fd, arm) in fds.iter().zip(arms) {
            loop {
                // SAFETY: `msgs` holds BATCH valid headers pointing at live buffers.
                let n = unsafe {
                    libc::recvmmsg(
                        fd.0,
                        msgs.as_mut_ptr(),
                        BATCH as u32,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if n > 0 {
                    arm.received.fetch_add(n as u64, Ordering::Relaxed);
                    continue;
                }
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                        return Err(e).context("recvmmsg");
                    }
                }
                break;
            }
        }
        thread::sleep(DRAIN_EVERY);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_labs_rates_are_over_its_own_phases() {
        let at = |received, sent, cpu_ns, wall_ns| ArmSample {
            received,
            sent,
            cpu_ns,
            wall_ns,
        };
        // 1000 datagrams sent, 900 received, in phases that took 0.5 s of
        // wall-clock time, 0.4 s of it on the CPU.
        let r = arm_rates(
            at(100, 100, 1_000_000_000, 2_000_000_000),
            at(1_000, 1_100, 1_400_000_000, 2_500_000_000),
        );
        assert_eq!(r.received, 1_800.0);
        assert_eq!(r.sent, 2_000.0);
        assert_eq!(r.per_cpu_second, 2_250.0);
        assert!((r.cpu_share - 0.8).abs() < 1e-12);
    }
}
