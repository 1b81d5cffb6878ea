//! `macdrop status`: read the namespace once over rtnetlink, print what
//! each interface is and the findings, exit. No eBPF.

use crate::{
    cli::{Format, StatusArgs},
    diagnose::rules,
    error::Outcome,
    netlink::NetState,
    netlink::Netlink,
    render,
    status::IfaceStatus,
    status::{PromiscFacts, addr_assign_type_from_sysfs, gather},
    workload::{self, Sockets},
};

pub async fn run(args: StatusArgs) -> anyhow::Result<Outcome> {
    let format = args.format.printing("status")?;
    let netns = crate::netns::inode_of(std::path::Path::new("/proc/self/ns/net"))?;
    let netlink = Netlink::connect()?;
    let state = netlink.read_state().await?;
    let mut interfaces = gather(
        netns,
        &state,
        &args.ifaces,
        &addr_assign_type_from_sysfs,
        &PromiscFacts::read(),
    )?;
    name_workloads(&netlink, &state, netns, &mut interfaces).await;
    let status = rules::status(interfaces, crate::status::HostFacts::read());
    let text = match format {
        Format::Json => render::status::json(&status, std::time::SystemTime::now()),
        Format::Table | Format::None => {
            let numbers = render::Numbers::from_flag(args.human);
            crate::untrusted::for_terminal(&render::status::table(&status, numbers))
        }
    };
    super::print(crate::output::Sink::Stdout, &text)
}

/// The owner of each veth's peer namespace, as `watch` names them; a
/// resolver that fails leaves the column empty, with one line on stderr.
async fn name_workloads(
    netlink: &Netlink,
    state: &NetState,
    netns: u32,
    interfaces: &mut [IfaceStatus],
) {
    let ifindexes: Vec<u32> = interfaces.iter().map(|i| i.link.ifindex).collect();
    let peers = workload::ports_to_name(state, ifindexes.iter());
    let lookup = netlink.nsid_lookup();
    let sockets = Sockets::from_env();
    let found =
        tokio::task::spawn_blocking(move || workload::resolve_once(sockets, netns, lookup, peers))
            .await;
    let (mut owners, notes) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => (
            Default::default(),
            vec![format!("cannot name workloads: {e:#}")],
        ),
        Err(e) => (
            Default::default(),
            vec![format!("cannot name workloads: {e}")],
        ),
    };
    for line in notes {
        crate::output::note(line);
    }
    for i in interfaces {
        i.workload = owners.remove(&i.link.ifindex);
    }
}
