//! Types and names of the egress source-MAC counter (issue 18, "forged
//! transmits / promiscuous: reject"): on an uplink that sends frames for
//! others (a macvlan parent, a bridge's physical port), a hypervisor
//! switch that rejects forged transmits drops every frame whose source MAC
//! is not the uplink's own. A separate tc egress program, attached only
//! where that rule needs it, counts the frames leaving such an uplink per
//! source-MAC class: the uplink's own MAC, a MAC of a local child (a
//! macvlan on it, a container behind the bridge), or any other. The
//! ingress path is untouched.
//!
//! The classes are decided by userspace, which writes them into
//! `EGRESS_MACS`; the program only looks the source MAC up.
//! [`EgressCounters::count`] is the reference model the kernel program's
//! counts are tested against (`tests/tests/test_run`).

/// Capacity of `EGRESS_MACS`: own and child MACs of every counted uplink.
/// Its buckets (16 bytes each) are allocated with the map in every watched
/// namespace, used or not, so it stays small.
pub const MAX_EGRESS_MACS: u32 = 1024;
/// Capacity of `EGRESS_SLOTS`: uplinks counted at once.
pub const MAX_EGRESS_IFACES: u32 = 64;

/// Flags of the two hash maps: `BPF_F_NO_PREALLOC`. The object's maps are
/// created in every watched namespace, and most have no uplink to count:
/// without preallocation a hash map costs its bucket array until entries
/// are added (the DaemonSet's memory formula counts the fixed maps).
pub const MAP_FLAGS: u32 = crate::NO_PREALLOC;

/// `EGRESS_MACS` value: the uplink's own MAC.
pub const EGRESS_OWN: u8 = 1;
/// `EGRESS_MACS` value: a MAC of a local child of the uplink.
pub const EGRESS_CHILD: u8 = 2;

/// Program and map names in the eBPF object.
pub mod names {
    /// The tc egress classifier.
    pub const PROGRAM: &str = "macdrop_tc_egress";
    /// Hash `u32` ifindex -> `u32` slot of `EGRESS_COUNTERS`: the uplinks
    /// counted; frames leaving any other interface are not looked at.
    pub const SLOTS: &str = "MACDROP_EGRESS_SLOTS";
    /// Hash `EgressMacKey` -> class (`EGRESS_OWN`, `EGRESS_CHILD`).
    pub const MACS: &str = "MACDROP_EGRESS_MACS";
    /// Per-CPU array of `EgressCounters`, by slot.
    pub const COUNTERS: &str = "MACDROP_EGRESS_COUNTERS";
}

/// Key of `EGRESS_MACS`: source MAC `mac` on uplink `ifindex`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EgressMacKey {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

impl EgressMacKey {
    pub const fn new(ifindex: u32, mac: [u8; 6]) -> Self {
        Self {
            ifindex,
            mac,
            _pad: [0; 2],
        }
    }
}

/// Frames that left one uplink, per source-MAC class.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EgressCounters {
    /// Source MAC: the uplink's own.
    pub own: u64,
    /// Source MAC: a local child's.
    pub child: u64,
    /// Source MAC: anything else (bridged from elsewhere, or forged).
    pub other: u64,
    /// Of `child` and `other`: broadcast frames (ARP requests, mostly).
    /// A healthy network answers an ARP request with unicast to the
    /// sender; one-way unicast (UDP to a collector, with the neighbour
    /// already resolved) gets no answer at all. So an unanswered broadcast
    /// from a child, not any unanswered frame, is the forged-transmits
    /// signal.
    pub broadcast: u64,
}

/// Whether a frame to `dest` is counted at all. Unicast and broadcast
/// are: a healthy network answers them with unicast (a reply, an ARP
/// reply), which is what the forged-transmits rule looks for and does not
/// find. Frames to a multicast group are not: nothing answers IPv6 DAD,
/// MLD reports, router solicitations or mDNS with unicast, and an idle
/// child sends them, so counting them would make every quiet macvlan
/// child look rejected.
#[inline(always)]
pub fn counted(dest: &[u8; 6]) -> bool {
    dest[0] & 1 == 0 || *dest == [0xff; 6]
}

impl EgressCounters {
    /// Counts one frame to `dest` of source-MAC class `class` (the
    /// `EGRESS_MACS` value, None when the MAC is not there), if it is
    /// [`counted`]: the reference model.
    #[inline(always)]
    pub fn count(&mut self, dest: &[u8; 6], class: Option<u8>) {
        if !counted(dest) {
            return;
        }
        match class {
            Some(EGRESS_OWN) => {
                self.own += 1;
                return;
            }
            Some(EGRESS_CHILD) => self.child += 1,
            _ => self.other += 1,
        }
        if *dest == [0xff; 6] {
            self.broadcast += 1;
        }
    }

    pub fn add(&mut self, other: &Self) {
        self.own += other.own;
        self.child += other.child;
        self.other += other.other;
        self.broadcast += other.broadcast;
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, only integers and byte arrays, no implicit
    // padding (asserted below).
    unsafe impl aya::Pod for super::EgressMacKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::EgressCounters {}
}

const _: () = assert!(core::mem::size_of::<EgressMacKey>() == 12);
const _: () = assert!(core::mem::size_of::<EgressCounters>() == 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_counted_apart() {
        let mut c = EgressCounters::default();
        let unicast = [0x02, 0, 0, 0, 0, 1];
        for class in [
            Some(EGRESS_OWN),
            Some(EGRESS_CHILD),
            Some(EGRESS_CHILD),
            None,
            Some(9),
        ] {
            c.count(&unicast, class);
        }
        // Broadcast counts (and apart, unless from the uplink's own MAC); a
        // multicast group does not, whatever the source.
        c.count(&[0xff; 6], Some(EGRESS_CHILD));
        c.count(&[0xff; 6], None);
        c.count(&[0xff; 6], Some(EGRESS_OWN));
        for group in [[0x33, 0x33, 0, 0, 0, 0x16], [0x01, 0, 0x5e, 0, 0, 0xfb]] {
            c.count(&group, Some(EGRESS_CHILD));
            c.count(&group, None);
        }
        assert_eq!(
            c,
            EgressCounters {
                own: 2,
                child: 3,
                other: 3,
                broadcast: 2,
            }
        );
    }
}
