//! Which id a namespace has in the numbering of the socket's namespace
//! (RTM_GETNSID): the only way from a link's `IFLA_LINK_NETNSID` back to a
//! namespace. The kernel answers "what id does the namespace of PID have
//! here" (or "of the namespace file open as FD"), never the reverse, so
//! `workload` asks it for one process of each namespace it finds under
//! /proc, then for the namespace files a runtime names, until the ids it
//! looks for are named.

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    nsid::{NsidAttribute, NsidMessage},
};

use super::Netlink;

/// A handle on a session's netlink socket for RTM_GETNSID, usable from
/// another thread's runtime (requests go to the socket's connection task
/// through a channel). The ids it gets are those of the namespace the
/// socket was opened in: the session's.
#[derive(Clone)]
pub struct NsidLookup {
    handle: rtnetlink::Handle,
}

impl Netlink {
    pub fn nsid_lookup(&self) -> NsidLookup {
        NsidLookup {
            handle: self.handle.clone(),
        }
    }
}

impl NsidLookup {
    /// The id the namespace of process `pid` has here; None when it has
    /// none (the kernel assigns one only once something, like a veth
    /// whose peer lives there, needs it) or the process is gone. NETNSA_PID
    /// needs no privilege: it survives macdrop dropping its capabilities.
    pub async fn of_pid(&self, pid: u32) -> anyhow::Result<Option<i32>> {
        self.ask(NsidAttribute::Pid(pid)).await
    }

    /// The id the namespace of file `path` (a namespace bind mount, like
    /// /run/netns/NAME) has here; None when it has none. For namespaces
    /// whose processes this process cannot see (a pod without hostPID).
    pub async fn of_file(&self, path: &std::path::Path) -> anyhow::Result<Option<i32>> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // The file stays open until the kernel has answered.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let id = self.ask(NsidAttribute::Fd(fd as u32)).await;
        drop(file);
        id
    }

    async fn ask(&self, about: NsidAttribute) -> anyhow::Result<Option<i32>> {
        let mut request = NsidMessage::default();
        request.header.family = AddressFamily::Unspec;
        request.attributes.push(about);
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(request));
        req.header.flags = NLM_F_REQUEST;
        let mut responses = self
            .handle
            .clone()
            .request(req)
            .context("cannot send a netlink nsid request (the socket closed)")?;
        let mut id = None;
        while let Some(msg) = responses.next().await {
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) => {
                    id = m.attributes.iter().find_map(|a| match a {
                        NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                        _ => None,
                    });
                }
                // ESRCH: the process exited between the scan and the ask.
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    if e.raw_code() == -libc::ESRCH {
                        return Ok(None);
                    }
                    bail!("netlink nsid request failed: {e}")
                }
                _ => {}
            }
        }
        Ok(id)
    }
}
