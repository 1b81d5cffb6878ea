//! Counts and fingerprints the frames an interface receives, from inside its
//! namespace: the witness that macdrop changes no frame and loses none.
//!
//! A packet socket bound to the interface with protocol ETH_P_ALL sees every
//! frame the interface receives (it joins no promiscuous membership, so it
//! changes nothing about what the interface accepts). Only frames whose
//! source MAC is the test's sender are counted.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use anyhow::{Context as _, Result, bail};

use crate::{frames::Mac, netns::NetNs};

/// What was received: how many frames, and an order-independent digest of
/// their bytes (sum of FNV-1a hashes), so equal digests mean the same
/// frames, byte for byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub frames: u64,
    pub digest: u64,
}

impl Received {
    /// The same fingerprint over frames as sent.
    pub fn of<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut r = Self::default();
        for f in frames {
            r.add(f);
        }
        r
    }

    fn add(&mut self, frame: &[u8]) {
        self.frames += 1;
        self.digest = self.digest.wrapping_add(fnv1a(frame));
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A receiving thread; `stop` returns what it saw.
pub struct Receiver {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<Received>>>,
}

impl Receiver {
    pub fn start(ns: &NetNs, ifname: &str, from: Mac) -> Result<Self> {
        let fd = ns.enter_thread(|| open(ifname))??;
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), count.clone());
        let thread = std::thread::spawn(move || receive(fd, from, &s, &c));
        Ok(Self {
            stop,
            count,
            thread: Some(thread),
        })
    }

    /// Frames counted so far (for pacing the sender).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) -> Result<Received> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| anyhow::anyhow!("receiver thread panicked"))?
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A raw AF_PACKET socket for every protocol (ETH_P_ALL), not yet bound.
pub fn packet_socket() -> Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain syscall.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn open(ifname: &str) -> Result<OwnedFd> {
    let name = CString::new(ifname).context("interface name")?;
    // SAFETY: NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {ifname}");
    }
    let fd = packet_socket()?;
    // A large queue, and a receive timeout so `stop` is noticed.
    let size: libc::c_int = 64 << 20;
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: valid fd and option values of the given sizes.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: an initialised sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("bind");
    }
    Ok(fd)
}

fn receive(fd: OwnedFd, from: Mac, stop: &AtomicBool, count: &AtomicU64) -> Result<Received> {
    let mut got = Received::default();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(got);
                    }
                    continue;
                }
                _ => return Err(err).context("recv"),
            }
        }
        let frame = &buf[..n as usize];
        if frame.len() >= 12 && frame[6..12] == from {
            got.add(frame);
            count.store(got.frames, Ordering::Relaxed);
        }
    }
}
