//! The one fact macdrop needs that rtnetlink does not carry: how a device
//! got its MAC (`addr_assign_type`), which tells whether a bridge's MAC is
//! pinned or follows its ports.

use std::fs;

/// `NET_ADDR_SET`: the address was set by userspace (pinned).
pub const NET_ADDR_SET: u8 = 3;

/// `/sys/class/net/NAME/addr_assign_type`, or None when unreadable or when
/// the sysfs mounted here belongs to another network namespace (checked by
/// comparing the ifindex it shows with the one netlink gave).
pub fn addr_assign_type(name: &str, ifindex: u32) -> Option<u8> {
    let dir = format!("/sys/class/net/{name}");
    let read = |file: &str| fs::read_to_string(format!("{dir}/{file}")).ok();
    let sys_ifindex: u32 = read("ifindex")?.trim().parse().ok()?;
    if sys_ifindex != ifindex {
        return None;
    }
    read("addr_assign_type")?.trim().parse().ok()
}
