//! Who holds an interface in promiscuous mode, as far as the kernel tells.
//!
//! The kernel counts promiscuity (`IFLA_PROMISCUITY`) but keeps no list of
//! who asked. Packet sockets are the one kind of holder userspace can trace
//! back to a process:
//!
//! - `/proc/thread-self/net/packet` lists every packet socket of the
//!   reader's network namespace with the interface it is bound to (`Iface`,
//!   0 = all interfaces) and its inode; `/proc/PID/fd/N -> socket:[INODE]`
//!   and `/proc/PID/comm` name the processes that hold it. `thread-self`,
//!   not `self`: `/proc/self` is the thread-group leader, so a thread that
//!   entered another namespace with `setns` would read the leader's table.
//! - Being bound is not holding promiscuity. `tcpdump -p` binds the same
//!   kind of socket without it, and a socket bound to all interfaces may
//!   hold it on one: promiscuity comes from `PACKET_ADD_MEMBERSHIP` with
//!   `PACKET_MR_PROMISC` on an ifindex, independent of the binding. Only
//!   packet sock_diag (`NETLINK_SOCK_DIAG`, `PACKET_SHOW_MCLIST`, Linux >=
//!   3.12 with `CONFIG_PACKET_DIAG`) shows these memberships; without it
//!   [`Holder::promisc`] is `None` (unknown).
//!
//! Processes in another PID namespace are invisible here; their sockets
//! show up as [`Holders::unowned`]. Holders that are not sockets at all are
//! counted by the kernel but not named: see the module documentation of
//! [`crate::promisc`].

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, Result, bail, ensure};

/// The kernel's packet socket table for the calling thread's namespace.
const PROC_NET_PACKET: &str = "/proc/thread-self/net/packet";

/// One row of `/proc/net/packet`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketSocket {
    /// Socket inode, the key to `/proc/PID/fd/* -> socket:[INODE]`.
    pub inode: u64,
    /// Bound interface: 0 = all interfaces, -1 = the bound interface was
    /// unregistered while the socket stayed open.
    pub ifindex: i32,
    /// `SOCK_RAW` (3) or `SOCK_DGRAM` (2).
    pub sock_type: u32,
    /// Ethernet protocol it receives, host order (`0x0003` = `ETH_P_ALL`,
    /// 0 = receives nothing).
    pub proto: u16,
    /// Hooked into the receive path (`R`), i.e. bound with a protocol.
    pub running: bool,
    /// Owner uid as the kernel shows it to the reader.
    pub uid: u32,
}

/// The header columns [`parse_proc_net_packet`] needs, by name.
const COLUMNS: [&str; 6] = ["Type", "Proto", "Iface", "R", "User", "Inode"];

/// Parses the text of `/proc/net/packet` (net/packet/af_packet.c,
/// `packet_seq_show`): one header line, then one whitespace-separated row per
/// socket. Columns are found by their header names, so added or reordered
/// columns are fine; a missing column or a row that does not have one value
/// per column is an error naming the line, never a guess.
pub fn parse_proc_net_packet(text: &str) -> Result<Vec<PacketSocket>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("/proc/net/packet is empty (no header line)")?
        .split_whitespace()
        .collect();
    let mut at = [0usize; COLUMNS.len()];
    for (slot, name) in at.iter_mut().zip(COLUMNS) {
        *slot = header
            .iter()
            .position(|column| *column == name)
            .with_context(|| format!("/proc/net/packet has no {name:?} column: {header:?}"))?;
    }
    let [type_at, proto_at, iface_at, r_at, user_at, inode_at] = at;

    let mut sockets = Vec::new();
    for (number, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let context = || format!("/proc/net/packet line {}: {line:?}", number + 2);
        ensure!(
            fields.len() == header.len(),
            "{}: {} values under {} columns",
            context(),
            fields.len(),
            header.len()
        );
        let running = match fields[r_at] {
            "0" => false,
            "1" => true,
            other => bail!("{}: R is {other:?}, not 0 or 1", context()),
        };
        sockets.push(PacketSocket {
            inode: fields[inode_at].parse().with_context(context)?,
            ifindex: fields[iface_at].parse().with_context(context)?,
            sock_type: fields[type_at].parse().with_context(context)?,
            // Printed with "%04x" after ntohs.
            proto: u16::from_str_radix(fields[proto_at], 16).with_context(context)?,
            running,
            uid: fields[user_at].parse().with_context(context)?,
        });
    }
    Ok(sockets)
}

/// A process holding a packet socket, seen from one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/PID/comm`: the name, at most 15 bytes.
    pub comm: String,
    /// The interface the socket is bound to: the one asked about, 0 (all
    /// interfaces) or, rarely, another one (see [`Holders::others`]).
    pub ifindex: u32,
    /// Socket inode; one process may hold several sockets, and one socket
    /// may be shared by several processes (fork, fd passing).
    pub inode: u64,
    /// Whether the socket joined `PACKET_MR_PROMISC` on the interface asked
    /// about. `None`: the kernel could not tell (no packet sock_diag).
    pub promisc: Option<bool>,
}

/// The packet sockets that concern one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holders {
    /// Sockets bound to the interface, one entry per (socket, process).
    /// Each sees the interface's traffic; each raised its promiscuity by
    /// one iff [`Holder::promisc`] says so (tcpdump: yes, `tcpdump -p`: no).
    pub bound: Vec<Holder>,
    /// Sockets bound to all interfaces (ifindex 0). They see this
    /// interface's traffic too, but raise its promiscuity only if they
    /// joined `PACKET_MR_PROMISC` on it (`promisc == Some(true)`).
    pub all_interfaces: Vec<Holder>,
    /// Sockets bound to another interface that joined `PACKET_MR_PROMISC`
    /// on this one (the membership's ifindex need not be the bound one).
    pub others: Vec<Holder>,
    /// Inodes of sockets bound here or holding promiscuity here that no
    /// visible process holds (a process in another PID namespace, or one
    /// that exited between the two reads).
    pub unowned: Vec<u64>,
}

impl Holders {
    /// The holders that raised, or may have raised, the interface's
    /// promiscuity: what [`describe`] wants. Bound sockets unless known not
    /// to have joined `PACKET_MR_PROMISC`, other sockets only if known to
    /// have joined it here.
    pub fn promiscuous(&self) -> Vec<Holder> {
        let bound = self.bound.iter().filter(|h| h.promisc != Some(false));
        let elsewhere = self
            .all_interfaces
            .iter()
            .chain(&self.others)
            .filter(|h| h.promisc == Some(true));
        bound.chain(elsewhere).cloned().collect()
    }
}

/// Packet sockets of the calling thread's namespace and the processes
/// holding them, read once so several interfaces can be asked about.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    sockets: Vec<PacketSocket>,
    /// Per socket inode: the ifindexes it joined `PACKET_MR_PROMISC` on.
    /// None when packet sock_diag is not available.
    memberships: Option<HashMap<u64, Vec<u32>>>,
    /// Per socket inode: (pid, comm) of each process holding it.
    owners: HashMap<u64, Vec<(u32, String)>>,
}

impl Snapshot {
    /// Reads the packet socket table, the promiscuous memberships and the
    /// processes holding the sockets. Fails only if the table itself cannot
    /// be read or parsed; unreadable processes are skipped, and a missing
    /// sock_diag leaves [`Holder::promisc`] unknown.
    pub fn read() -> Result<Self> {
        let text = fs::read_to_string(PROC_NET_PACKET)
            .with_context(|| format!("cannot read {PROC_NET_PACKET}"))?;
        let sockets = parse_proc_net_packet(&text)?;
        // Diagnostics only: a kernel without CONFIG_PACKET_DIAG still has
        // holders, just less knowledge about them.
        let memberships = promisc_memberships().ok();
        let wanted: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
        let owners = if wanted.is_empty() {
            HashMap::new()
        } else {
            socket_owners(Path::new("/proc"), &wanted)?
        };
        Ok(Self {
            sockets,
            memberships,
            owners,
        })
    }

    /// Every packet socket of the namespace.
    pub fn sockets(&self) -> &[PacketSocket] {
        &self.sockets
    }

    /// The sockets and processes that concern interface `ifindex`.
    pub fn holders(&self, ifindex: u32) -> Holders {
        let mut holders = Holders::default();
        for socket in &self.sockets {
            let promisc = self.memberships.as_ref().map(|joined| {
                joined
                    .get(&socket.inode)
                    .is_some_and(|ifindexes| ifindexes.contains(&ifindex))
            });
            let list = match socket.ifindex {
                bound if i64::from(bound) == i64::from(ifindex) => &mut holders.bound,
                0 => &mut holders.all_interfaces,
                _ if promisc == Some(true) => &mut holders.others,
                _ => continue,
            };
            let owners = self
                .owners
                .get(&socket.inode)
                .map_or(&[][..], Vec::as_slice);
            if owners.is_empty() {
                // An unbound socket without membership here concerns every
                // interface equally; only report the ones that matter here.
                if socket.ifindex != 0 || promisc == Some(true) {
                    holders.unowned.push(socket.inode);
                }
                continue;
            }
            for (pid, comm) in owners {
                list.push(Holder {
                    pid: *pid,
                    comm: comm.clone(),
                    ifindex: u32::try_from(socket.ifindex).unwrap_or(0),
                    inode: socket.inode,
                    promisc,
                });
            }
        }
        for list in [
            &mut holders.bound,
            &mut holders.all_interfaces,
            &mut holders.others,
        ] {
            list.sort_by_key(|h| (h.pid, h.inode));
        }
        holders.unowned.sort_unstable();
        holders
    }
}

/// [`Snapshot::read`] then [`Snapshot::holders`], for one interface.
pub fn holders(ifindex: u32) -> Result<Holders> {
    Ok(Snapshot::read()?.holders(ifindex))
}

/// One line on who holds an interface's promiscuity, e.g.
/// `promiscuity 2: bridge port, tcpdump (pid 4242)`.
///
/// `promiscuity` is `IFLA_PROMISCUITY`; `is_bridge_port` whether the
/// interface is a bridge port (the bridge raises each port's promiscuity by
/// one on enslaving — measured on 6.18, even while the port is down — except
/// on a VLAN-filtering bridge that can program the port's unicast filter
/// instead, see [`crate::promisc`]); `holders` usually
/// [`Holders::promiscuous`]. Holders known not to hold promiscuity
/// (`promisc == Some(false)`) are left out; what remains unexplained is
/// said as a count, since the kernel does not name those holders.
pub fn describe(promiscuity: u32, is_bridge_port: bool, holders: &[Holder]) -> String {
    describe_with_flag(promiscuity, false, is_bridge_port, holders)
}

/// Like [`describe`], knowing whether userspace set the flag (`ip link set
/// promisc on`, the IFF_PROMISC rtnetlink reports), which is one holder.
pub fn describe_with_flag(
    promiscuity: u32,
    user_flag: bool,
    is_bridge_port: bool,
    holders: &[Holder],
) -> String {
    let mut parts = Vec::new();
    let mut explained = 0u32;
    if user_flag && promiscuity > 0 {
        parts.push("`ip link set promisc on`".to_owned());
        explained += 1;
    }
    if is_bridge_port && promiscuity > explained {
        parts.push("bridge port".to_owned());
        explained += 1;
    }
    // One entry per process, in pid order, counting its sockets; a socket
    // shared by several processes (fork) holds promiscuity once.
    let mut per_process: BTreeMap<u32, (&str, u32)> = BTreeMap::new();
    let mut sockets = HashSet::new();
    for holder in holders.iter().filter(|h| h.promisc != Some(false)) {
        per_process.entry(holder.pid).or_insert((&holder.comm, 0)).1 += 1;
        sockets.insert(holder.inode);
    }
    explained = explained.saturating_add(u32::try_from(sockets.len()).unwrap_or(u32::MAX));
    for (pid, (comm, count)) in per_process {
        parts.push(match count {
            1 => format!("{comm} (pid {pid})"),
            n => format!("{comm} (pid {pid}, {n} sockets)"),
        });
    }
    if promiscuity > explained {
        let rest = promiscuity - explained;
        parts.push(if user_flag {
            format!(
                "{rest} other (an upper device such as macvlan or bond, or a process not \
                 visible here)"
            )
        } else {
            format!(
                "{rest} other (`ip link set promisc on`, an upper device such as macvlan or \
                 bond, or a process not visible here)"
            )
        });
    }
    if parts.is_empty() {
        format!("promiscuity {promiscuity}")
    } else {
        format!("promiscuity {promiscuity}: {}", parts.join(", "))
    }
}

/// The socket inode a `/proc/PID/fd/N` link points to (`socket:[INODE]`).
fn socket_inode(target: &Path) -> Option<u64> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// For each wanted socket inode, the processes under `proc_root` holding
/// it. A process that exits mid-scan, or whose fds we may not read, is
/// skipped: its sockets then show up as unowned.
fn socket_owners(
    proc_root: &Path,
    wanted: &HashSet<u64>,
) -> Result<HashMap<u64, Vec<(u32, String)>>> {
    let mut owners: HashMap<u64, Vec<(u32, String)>> = HashMap::new();
    let entries =
        fs::read_dir(proc_root).with_context(|| format!("cannot list {}", proc_root.display()))?;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let mut held: Vec<u64> = fds
            .flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .filter_map(|target| socket_inode(&target))
            .filter(|inode| wanted.contains(inode))
            .collect();
        if held.is_empty() {
            continue;
        }
        // The same socket may sit behind several fds (dup).
        held.sort_unstable();
        held.dedup();
        let Ok(comm) = fs::read_to_string(entry.path().join("comm")) else {
            continue; // exited after its fds were read
        };
        let comm = comm.trim_end_matches('\n').to_owned();
        for inode in held {
            owners.entry(inode).or_default().push((pid, comm.clone()));
        }
    }
    Ok(owners)
}

// --- packet sock_diag: which sockets joined PACKET_MR_PROMISC where -------

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `PACKET_SHOW_MCLIST` (linux/packet_diag.h): include each socket's
/// memberships.
const PACKET_SHOW_MCLIST: u32 = 0x2;
/// `PACKET_DIAG_MCLIST` attribute: packed `struct packet_diag_mclist`s.
const PACKET_DIAG_MCLIST: u16 = 1;
/// `PACKET_MR_PROMISC` (linux/if_packet.h).
const PACKET_MR_PROMISC: u16 = 1;
/// `struct packet_diag_msg`: family, type, num, ino, cookie[2].
const DIAG_MSG_LEN: usize = 16;
/// `struct packet_diag_mclist`: index, count, type, alen, addr[MAX_ADDR_LEN=32].
const MCLIST_ENTRY_LEN: usize = 44;
const NLMSG_HDR_LEN: usize = 16;
/// Netlink attribute types carry two flag bits (nested, byte order).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Asks the kernel, per packet socket of the calling thread's namespace,
/// on which ifindexes it joined `PACKET_MR_PROMISC`.
fn promisc_memberships() -> Result<HashMap<u64, Vec<u32>>> {
    // SAFETY: plain syscall.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(NETLINK_SOCK_DIAG)");
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    let mut request = Vec::with_capacity(NLMSG_HDR_LEN + 20);
    request.extend_from_slice(&((NLMSG_HDR_LEN + 20) as u32).to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    // struct packet_diag_req: family, protocol, pad, ino, show, cookie[2].
    request.extend_from_slice(&[libc::AF_PACKET as u8, 0, 0, 0]);
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&PACKET_SHOW_MCLIST.to_ne_bytes());
    request.extend_from_slice(&[0; 8]);
    // SAFETY: `request` is a valid buffer of its length; fd is open.
    let sent = unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(std::io::Error::last_os_error()).context("sending the packet sock_diag dump");
    }

    let mut memberships = HashMap::new();
    // 32 KiB, like ss: the kernel sizes dump messages to the reader's buffer.
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: `buf` is a valid, writable buffer of its length; fd is open.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err).context("reading the packet sock_diag dump");
        }
        let n = usize::try_from(n).unwrap_or(0);
        if parse_diag_datagram(&buf[..n], &mut memberships)? {
            return Ok(memberships);
        }
    }
}

/// Parses one datagram of the dump into `memberships`; true once the dump
/// is done. Layouts: linux/netlink.h, linux/packet_diag.h.
fn parse_diag_datagram(mut data: &[u8], memberships: &mut HashMap<u64, Vec<u32>>) -> Result<bool> {
    while !data.is_empty() {
        ensure!(data.len() >= NLMSG_HDR_LEN, "truncated netlink header");
        let len = u32_at(data, 0) as usize;
        let kind = u16_at(data, 4);
        ensure!(
            (NLMSG_HDR_LEN..=data.len()).contains(&len),
            "netlink message length {len} out of range"
        );
        let payload = &data[NLMSG_HDR_LEN..len];
        match kind {
            k if k == libc::NLMSG_DONE as u16 => return Ok(true),
            k if k == libc::NLMSG_ERROR as u16 => {
                ensure!(payload.len() >= 4, "truncated netlink error");
                let errno = -(u32_at(payload, 0) as i32);
                if errno != 0 {
                    return Err(std::io::Error::from_raw_os_error(errno))
                        .context("packet sock_diag dump refused (CONFIG_PACKET_DIAG missing?)");
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                ensure!(payload.len() >= DIAG_MSG_LEN, "truncated packet_diag_msg");
                let inode = u64::from(u32_at(payload, 4));
                let joined = memberships.entry(inode).or_default();
                let mut attrs = &payload[DIAG_MSG_LEN..];
                while attrs.len() >= 4 {
                    let attr_len = usize::from(u16_at(attrs, 0));
                    ensure!(
                        (4..=attrs.len()).contains(&attr_len),
                        "netlink attribute length {attr_len} out of range"
                    );
                    if u16_at(attrs, 2) & NLA_TYPE_MASK == PACKET_DIAG_MCLIST {
                        for entry in attrs[4..attr_len].chunks_exact(MCLIST_ENTRY_LEN) {
                            if u16_at(entry, 8) == PACKET_MR_PROMISC {
                                joined.push(u32_at(entry, 0));
                            }
                        }
                    }
                    attrs = &attrs[align4(attr_len).min(attrs.len())..];
                }
            }
            _ => {}
        }
        data = &data[align4(len).min(data.len())..];
    }
    Ok(false)
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Native-endian integers at `at`; callers have checked the length.
fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn u16_at(data: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([data[at], data[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on this machine (Linux 6.18) with `tcpdump -i q1` and
    /// `tcpdump -p -i q1` running in a namespace; rows end with a space.
    const CAPTURED: &str = "\
sk               RefCnt Type Proto  Iface R Rmem   User   Inode
00000000c7eda8da 3      3    0003   4     1 0      0      86333 
00000000e1db01be 3      3    0003   4     1 0      0      87473 
";

    #[test]
    fn parses_a_real_capture() {
        let sockets = parse_proc_net_packet(CAPTURED).unwrap();
        assert_eq!(
            sockets,
            vec![
                PacketSocket {
                    inode: 86333,
                    ifindex: 4,
                    sock_type: 3,
                    proto: 3,
                    running: true,
                    uid: 0,
                },
                PacketSocket {
                    inode: 87473,
                    ifindex: 4,
                    sock_type: 3,
                    proto: 3,
                    running: true,
                    uid: 0,
                },
            ]
        );
    }

    #[test]
    fn empty_table_and_unbound_dead_and_hex_protocols() {
        let header = CAPTURED.lines().next().unwrap();
        assert_eq!(parse_proc_net_packet(header).unwrap(), vec![]);
        // ifindex -1: the bound device went away; 88cc (LLDP) is hex.
        let text = format!(
            "{header}\n\
             00000000deadbeef 2      2    88cc   -1    0 0      1000   5 \n\
             00000000deadbef0 2      3    0000   0     0 0      0      6 \n"
        );
        let sockets = parse_proc_net_packet(&text).unwrap();
        assert_eq!(sockets[0].ifindex, -1);
        assert_eq!(sockets[0].proto, 0x88cc);
        assert_eq!(sockets[0].sock_type, 2);
        assert_eq!(sockets[0].uid, 1000);
        assert!(!sockets[0].running);
        assert_eq!((sockets[1].ifindex, sockets[1].proto), (0, 0));
    }

    #[test]
    fn columns_are_found_by_name() {
        let text = "Inode Iface Extra sk RefCnt Type Proto R Rmem User\n\
                    77 9 x ffff 1 3 0003 1 0 0\n";
        let sockets = parse_proc_net_packet(text).unwrap();
        assert_eq!((sockets[0].inode, sockets[0].ifindex), (77, 9));
    }

    #[test]
    fn malformed_tables_are_errors() {
        assert!(parse_proc_net_packet("").is_err());
        // No Inode column.
        assert!(parse_proc_net_packet("sk RefCnt Type Proto Iface R Rmem User\n").is_err());
        let header = CAPTURED.lines().next().unwrap();
        // A value missing.
        let short = format!("{header}\n00000000c7eda8da 3 3 0003 4 1 0 86333\n");
        let err = parse_proc_net_packet(&short).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        // Not a number, not a flag.
        let bad = format!("{header}\n00000000c7eda8da 3 3 0003 four 1 0 0 86333\n");
        assert!(parse_proc_net_packet(&bad).is_err());
        let bad = format!("{header}\n00000000c7eda8da 3 3 0003 4 2 0 0 86333\n");
        assert!(parse_proc_net_packet(&bad).is_err());
    }

    #[test]
    fn fd_links_name_socket_inodes() {
        assert_eq!(socket_inode(Path::new("socket:[86333]")), Some(86333));
        assert_eq!(socket_inode(Path::new("pipe:[86333]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
        assert_eq!(socket_inode(Path::new("socket:[x]")), None);
    }

    fn holder(pid: u32, comm: &str, inode: u64, promisc: Option<bool>) -> Holder {
        Holder {
            pid,
            comm: comm.into(),
            ifindex: 4,
            inode,
            promisc,
        }
    }

    #[test]
    fn describes_who_holds_promiscuity() {
        let tcpdump = holder(4242, "tcpdump", 1, Some(true));
        assert_eq!(
            describe(2, true, std::slice::from_ref(&tcpdump)),
            "promiscuity 2: bridge port, tcpdump (pid 4242)"
        );
        assert_eq!(describe(0, false, &[]), "promiscuity 0");
        // A bridge port's promiscuity is not claimed when there is none
        // (VLAN-filtering bridges may leave a port non-promiscuous).
        assert_eq!(describe(0, true, &[]), "promiscuity 0");
        // `tcpdump -p` holds a socket, not promiscuity.
        let tcpdump_p = holder(4343, "tcpdump", 2, Some(false));
        assert_eq!(
            describe(1, true, std::slice::from_ref(&tcpdump_p)),
            "promiscuity 1: bridge port"
        );
        // Two sockets of one process; unknown membership counts as a holder.
        let two = [
            holder(7, "capture", 3, None),
            holder(7, "capture", 4, None),
            tcpdump_p,
        ];
        assert_eq!(
            describe(2, false, &two),
            "promiscuity 2: capture (pid 7, 2 sockets)"
        );
    }

    #[test]
    fn unexplained_promiscuity_is_counted_not_guessed() {
        let tcpdump = holder(4242, "tcpdump", 1, Some(true));
        assert_eq!(
            describe(3, true, &[tcpdump]),
            "promiscuity 3: bridge port, tcpdump (pid 4242), 1 other (`ip link set \
             promisc on`, an upper device such as macvlan or bond, or a process not \
             visible here)"
        );
        assert!(describe(1, false, &[]).starts_with("promiscuity 1: 1 other ("));
        assert_eq!(
            describe_with_flag(1, true, false, &[]),
            "promiscuity 1: `ip link set promisc on`"
        );
        assert_eq!(
            describe_with_flag(2, true, true, &[]),
            "promiscuity 2: `ip link set promisc on`, bridge port"
        );
        // One socket shared by two processes (tcpdump forked) is one holder.
        let parent = holder(10, "capture", 5, Some(true));
        let child = holder(11, "capture", 5, Some(true));
        assert_eq!(
            describe(1, false, &[parent, child]),
            "promiscuity 1: capture (pid 10), capture (pid 11)"
        );
    }

    #[test]
    fn holders_sort_sockets_by_binding_and_membership() {
        let socket = |inode, ifindex| PacketSocket {
            inode,
            ifindex,
            sock_type: 3,
            proto: 3,
            running: true,
            uid: 0,
        };
        let snapshot = Snapshot {
            sockets: vec![
                socket(10, 4),  // bound here, promiscuous
                socket(11, 4),  // bound here, tcpdump -p
                socket(12, 0),  // all interfaces, promiscuous here
                socket(13, 0),  // all interfaces, nothing joined
                socket(14, 5),  // bound elsewhere, promiscuous here
                socket(15, 5),  // bound elsewhere only
                socket(16, 4),  // bound here, no visible process
                socket(17, -1), // device gone
            ],
            memberships: Some(HashMap::from([
                (10, vec![4]),
                (12, vec![4]),
                (14, vec![4]),
                (15, vec![5]),
            ])),
            owners: [10, 11, 12, 13, 14, 15, 17]
                .into_iter()
                .map(|inode| (inode, vec![(inode as u32 * 10, format!("p{inode}"))]))
                .collect(),
        };
        let holders = snapshot.holders(4);
        let inodes = |list: &[Holder]| list.iter().map(|h| h.inode).collect::<Vec<_>>();
        assert_eq!(inodes(&holders.bound), vec![10, 11]);
        assert_eq!(inodes(&holders.all_interfaces), vec![12, 13]);
        assert_eq!(inodes(&holders.others), vec![14]);
        assert_eq!(holders.unowned, vec![16]);
        assert_eq!(inodes(&holders.promiscuous()), vec![10, 12, 14]);
        assert_eq!(holders.bound[1].promisc, Some(false));
        assert_eq!(holders.all_interfaces[0].ifindex, 0);
        assert_eq!(holders.others[0].ifindex, 5);

        // Without sock_diag nothing is known about memberships: bound
        // sockets may hold promiscuity, the others are not claimed.
        let blind = Snapshot {
            memberships: None,
            ..snapshot
        };
        let holders = blind.holders(4);
        assert_eq!(inodes(&holders.promiscuous()), vec![10, 11]);
        assert!(holders.others.is_empty());
        assert!(holders.bound.iter().all(|h| h.promisc.is_none()));
    }

    /// A hand-built dump datagram: one socket with a multicast and a
    /// promiscuous membership, then NLMSG_DONE.
    #[test]
    fn parses_a_diag_dump() {
        let mut mclist = Vec::new();
        for (ifindex, kind) in [(4u32, 0u16), (7, PACKET_MR_PROMISC)] {
            mclist.extend_from_slice(&ifindex.to_ne_bytes());
            mclist.extend_from_slice(&1u32.to_ne_bytes()); // count
            mclist.extend_from_slice(&kind.to_ne_bytes());
            mclist.extend_from_slice(&6u16.to_ne_bytes()); // alen
            mclist.extend_from_slice(&[0; 32]);
        }
        let mut attr = Vec::new();
        attr.extend_from_slice(&((4 + mclist.len()) as u16).to_ne_bytes());
        attr.extend_from_slice(&PACKET_DIAG_MCLIST.to_ne_bytes());
        attr.extend_from_slice(&mclist);
        let mut payload = vec![libc::AF_PACKET as u8, 3, 0, 3];
        payload.extend_from_slice(&555u32.to_ne_bytes());
        payload.extend_from_slice(&[0; 8]);
        payload.extend_from_slice(&attr);

        let mut datagram = Vec::new();
        for (kind, body) in [
            (SOCK_DIAG_BY_FAMILY, payload),
            (libc::NLMSG_DONE as u16, 0u32.to_ne_bytes().to_vec()),
        ] {
            datagram.extend_from_slice(&((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes());
            datagram.extend_from_slice(&kind.to_ne_bytes());
            datagram.extend_from_slice(&[0; 10]);
            datagram.extend_from_slice(&body);
        }
        let mut memberships = HashMap::new();
        assert!(parse_diag_datagram(&datagram, &mut memberships).unwrap());
        assert_eq!(memberships, HashMap::from([(555, vec![7])]));
        // Truncated: an error, not a panic.
        assert!(parse_diag_datagram(&datagram[..20], &mut HashMap::new()).is_err());
    }
}
