//! The end-to-end load: small UDP datagrams (60-byte frames) from a sender
//! thread in one namespace to a receiver thread in another, each pinned to
//! its own CPU. On veth the whole receive path (veth, XDP or tc, the IP
//! stack, the socket queue) runs in the sender's softirq on the sender's
//! CPU, so the received rate is the single-core cost of that path; the
//! receiver only drains the socket, on the other CPU.
//!
//! Other work on the machine takes turns on that CPU too, so besides the
//! rate per wall-clock second the flow reports the rate per second of CPU
//! time the path actually got: the sender thread's own CPU clock (which,
//! without IRQ time accounting, includes the softirq work done in its
//! context) plus the CPU's ksoftirqd (the softirq work deferred to it).
//! That is the single-core cost of the path, whoever else ran meanwhile.

use std::{
    fs::File,
    net::SocketAddrV4,
    os::{fd::AsRawFd as _, unix::thread::JoinHandleExt as _},
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
const BATCH: usize = 64;

/// A running flow; `stop` ends it.
pub struct Flow {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    /// The sender thread's CPU-time clock.
    sender_clock: libc::clockid_t,
    /// /proc/PID/schedstat of the sender CPU's ksoftirqd.
    ksoftirqd: Option<PathBuf>,
    threads: Vec<JoinHandle<Result<()>>>,
}

/// Counts at one instant.
#[derive(Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub received: u64,
    pub sent: u64,
    /// CPU time of the path so far (sender thread + ksoftirqd), ns.
    pub cpu_ns: u64,
}

/// The rates between two samples.
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

impl Flow {
    /// Starts the receiver (bound to `dst` in `rx_ns`, on `rx_cpu`), then the
    /// sender (in `tx_ns`, on `tx_cpu`).
    pub fn start(
        tx_ns: &NetNs,
        rx_ns: &NetNs,
        dst: SocketAddrV4,
        tx_cpu: usize,
        rx_cpu: usize,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let rx = {
            let (stop, received, ns) = (stop.clone(), received.clone(), rx_ns.path());
            thread::spawn(move || -> Result<()> {
                let fd = (|| {
                    enter(&ns, rx_cpu)?;
                    receiver_socket(dst)
                })();
                let fd = match fd {
                    Ok(fd) => {
                        let _ = ready_tx.send(Ok(()));
                        fd
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                receive(&fd, &stop, &received)
            })
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("receiver: {e}"),
            Err(_) => bail!("receiver did not start"),
        }
        let tx = {
            let (stop, sent, ns) = (stop.clone(), sent.clone(), tx_ns.path());
            thread::spawn(move || -> Result<()> {
                enter(&ns, tx_cpu)?;
                let fd = sender_socket(dst)?;
                send(&fd, &stop, &sent)
            })
        };
        let mut sender_clock: libc::clockid_t = 0;
        // SAFETY: the thread is alive (joined only in `stop`/drop) and the
        // out pointer is valid.
        let rc = unsafe { libc::pthread_getcpuclockid(tx.as_pthread_t(), &mut sender_clock) };
        let flow = Self {
            stop,
            received,
            sent,
            sender_clock,
            ksoftirqd: ksoftirqd(tx_cpu),
            threads: vec![rx, tx],
        };
        if rc != 0 {
            bail!("pthread_getcpuclockid failed ({rc})");
        }
        Ok(flow)
    }

    pub fn sample(&self) -> Sample {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and out pointer.
        unsafe { libc::clock_gettime(self.sender_clock, &mut ts) };
        let sender = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        // The first field of schedstat: time on the CPU, ns.
        let softirq = self
            .ksoftirqd
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        Sample {
            at: Instant::now(),
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            cpu_ns: sender + softirq,
        }
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

impl Drop for Flow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The rates between two samples.
pub fn rates(a: Sample, b: Sample) -> Rates {
    let secs = (b.at - a.at).as_secs_f64();
    let cpu = (b.cpu_ns - a.cpu_ns) as f64 / 1e9;
    let received = (b.received - a.received) as f64;
    Rates {
        received: received / secs,
        sent: (b.sent - a.sent) as f64 / secs,
        per_cpu_second: received / cpu,
        cpu_share: cpu / secs,
    }
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

fn receive(fd: &Fd, stop: &AtomicBool, received: &AtomicU64) -> Result<()> {
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
        // SAFETY: `msgs` holds BATCH valid headers pointing at live buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd.0,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            received.fetch_add(n as u64, Ordering::Relaxed);
        } else if n < 0 {
            let e = std::io::Error::last_os_error();
            if !matches!(
                e.raw_os_error(),
                Some(libc::EAGAIN | libc::EINTR | libc::ETIMEDOUT)
            ) {
                return Err(e).context("recvmmsg");
            }
        }
    }
    Ok(())
}

fn send(fd: &Fd, stop: &AtomicBool, sent: &AtomicU64) -> Result<()> {
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
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `msgs` holds BATCH valid headers pointing at the payload.
        let n = unsafe { libc::sendmmsg(fd.0, msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent.fetch_add(n as u64, Ordering::Relaxed);
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
    Ok(())
}
