//! `macdrop status`: read the namespace once over rtnetlink, print what
//! each interface is and the findings, exit. No eBPF.

use crate::{
    cli::{Format, StatusArgs},
    diagnose::rules,
    error::Outcome,
    netlink::Netlink,
    render,
    status::{PromiscFacts, gather, mac_pinned_from_sysfs},
};

pub async fn run(args: StatusArgs) -> anyhow::Result<Outcome> {
    let netns = crate::netns::inode_of(std::path::Path::new("/proc/self/ns/net"))?;
    let state = Netlink::connect()?.read_state().await?;
    let status = rules::status(gather(
        netns,
        &state,
        &args.ifaces,
        &mac_pinned_from_sysfs,
        &PromiscFacts::read(),
    )?);
    let text = match args.format {
        Format::Json => render::status::json(&status, std::time::SystemTime::now()),
        Format::Table => render::status::table(&status),
    };
    super::print(&text)
}
