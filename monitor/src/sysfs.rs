//! The one fact macdrop needs that rtnetlink does not carry: how a device
//! got its MAC (`addr_assign_type`), which tells whether a bridge's MAC is
//! pinned or follows its ports, and what changed it.

use std::fs;

/// `NET_ADDR_PERM`: the hardware's own address.
pub const NET_ADDR_PERM: u8 = 0;
/// `NET_ADDR_RANDOM`: generated at creation (a veth, an unpinned bridge).
pub const NET_ADDR_RANDOM: u8 = 1;
/// `NET_ADDR_STOLEN`: taken from another device (a bond from its slave).
pub const NET_ADDR_STOLEN: u8 = 2;
/// `NET_ADDR_SET`: the address was set by userspace (pinned).
pub const NET_ADDR_SET: u8 = 3;

/// The kernel's name of an `addr_assign_type`, for sentences and labels.
pub fn addr_assign_name(t: u8) -> &'static str {
    match t {
        NET_ADDR_PERM => "permanent",
        NET_ADDR_RANDOM => "random",
        NET_ADDR_STOLEN => "stolen",
        NET_ADDR_SET => "set",
        _ => "unknown",
    }
}

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
