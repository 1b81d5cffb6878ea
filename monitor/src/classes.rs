//! The frame classes macdrop counts, and everything the outputs say about
//! each, in one table ([`CLASSES`], in output order). JSON, the `watch`
//! table, the metrics, `top` and `diagnose` iterate it rather than naming
//! classes, so a new class is a counter field in `monitor-common`, its
//! increment in the eBPF classifier and the reference model
//! (`crate::classify`), a variant of [`Class`] with its arm in
//! [`Class::count`] (the compiler asks for it), and a row here; the tests
//! below fail until the row and the counter agree.
//!
//! Code about one class's meaning (the verdict's prose, `diagnose`'s
//! findings, the sparkline's role-dependent rate) names that class on
//! purpose: it is not a list of classes.

use monitor_common::{FrameCounters, MISMATCH_FOREIGN, MISMATCH_HOST_IP, MISMATCH_STALE};

/// One frame class. The variants are in [`CLASSES`] order, which is the
/// order of every output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Total,
    Own,
    Broadcast,
    Multicast,
    ForeignUnicast,
    HostIpWrongMac,
    StaleMac,
    Runt,
}

/// How a class's count relates to `total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// Every frame received: the sum of the `Partition` classes.
    Total,
    /// One of the disjoint classes that together make up `total`; every
    /// frame is in exactly one. `macdrop_frames_total{class}` has these.
    Partition,
    /// Some of the frames of another class, which it never exceeds; each
    /// has a metric family of its own, `macdrop_<name>_frames_total`.
    Subset(Class),
}

/// A class's column in `macdrop top`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopColumn {
    pub heading: &'static str,
    pub width: u16,
    /// Rank among all of `top`'s columns, lowest first: narrow terminals
    /// keep the lowest ranks that fit. Shared with the other columns'
    /// ranks (`tui::view::Col::priority`), spaced by 10 so that a new
    /// column can go between two without renumbering.
    pub priority: u8,
    /// Whether `s` (sort) cycles through this column.
    pub sort: bool,
}

/// Everything the outputs say about one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassInfo {
    pub class: Class,
    /// The JSON key (`frames`, `rates`), the metric's `class` label or
    /// family name, and the `FrameCounters` field it counts.
    pub name: &'static str,
    /// The `watch` table's column heading.
    pub heading: &'static str,
    pub top: TopColumn,
    pub relation: Relation,
    /// A non-zero count is an alarm: `top` shows it in bold.
    pub alarm: bool,
    /// The `monitor_common::MISMATCH_*` bit that names this class as a
    /// reason a flow or a captured frame is mismatched
    /// (`monitor_common::mismatch_bits`: `foreign_unicast` only off bridge
    /// ports); 0 for a class that is never such a reason.
    pub mismatch: u8,
    /// What the class counts, for people; a `Subset` class's metric family
    /// has it as its HELP.
    pub help: &'static str,
}

/// Number of classes.
pub const COUNT: usize = 8;

/// Every class, in output order (the order of [`Class`]'s variants).
pub const CLASSES: [ClassInfo; COUNT] = [
    ClassInfo {
        class: Class::Total,
        name: "total",
        heading: "TOTAL",
        top: TopColumn {
            heading: "TOTAL",
            width: 6,
            priority: 40,
            sort: true,
        },
        relation: Relation::Total,
        alarm: false,
        mismatch: 0,
        help: "Every frame received.",
    },
    ClassInfo {
        class: Class::Own,
        name: "own",
        heading: "OWN",
        top: TopColumn {
            heading: "OWN",
            width: 6,
            priority: 70,
            sort: false,
        },
        relation: Relation::Partition,
        alarm: false,
        mismatch: 0,
        help: "Unicast frames to a destination the kernel delivers to this host from the \
               interface, with their VLAN tags.",
    },
    ClassInfo {
        class: Class::Broadcast,
        name: "broadcast",
        heading: "BCAST",
        top: TopColumn {
            heading: "BCAST",
            width: 6,
            priority: 80,
            sort: false,
        },
        relation: Relation::Partition,
        alarm: false,
        mismatch: 0,
        help: "Frames to ff:ff:ff:ff:ff:ff.",
    },
    ClassInfo {
        class: Class::Multicast,
        name: "multicast",
        heading: "MCAST",
        top: TopColumn {
            heading: "MCAST",
            width: 6,
            priority: 90,
            sort: false,
        },
        relation: Relation::Partition,
        alarm: false,
        mismatch: 0,
        help: "Frames to a group address other than broadcast.",
    },
    ClassInfo {
        class: Class::ForeignUnicast,
        name: "foreign_unicast",
        heading: "FOREIGN",
        top: TopColumn {
            heading: "FOREIGN",
            width: 7,
            priority: 20,
            sort: true,
        },
        relation: Relation::Partition,
        alarm: false,
        mismatch: MISMATCH_FOREIGN,
        help: "Unicast frames to a destination the kernel does not deliver to this host from \
               the interface: bridged on by a port, dropped as OTHERHOST by a bridge device or \
               a standalone interface.",
    },
    ClassInfo {
        class: Class::HostIpWrongMac,
        name: "host_ip_wrong_mac",
        heading: "HOST_IP_WRONG_MAC",
        top: TopColumn {
            heading: "WRONG_MAC",
            width: 9,
            priority: 10,
            sort: true,
        },
        relation: Relation::Subset(Class::ForeignUnicast),
        alarm: true,
        mismatch: MISMATCH_HOST_IP,
        help: "Foreign-unicast frames whose destination IP (or ARP target) is an address of this \
               namespace: meant for this host, carrying a MAC it will not accept. Non-zero rate \
               is the alarm.",
    },
    ClassInfo {
        class: Class::StaleMac,
        name: "stale_mac",
        heading: "STALE_MAC",
        top: TopColumn {
            heading: "STALE",
            width: 6,
            priority: 60,
            sort: true,
        },
        relation: Relation::Subset(Class::ForeignUnicast),
        alarm: false,
        mismatch: MISMATCH_STALE,
        help: "Foreign-unicast frames addressed to a previous MAC of the bridge or interface: \
               peers with a stale neighbour entry.",
    },
    ClassInfo {
        class: Class::Runt,
        name: "runt",
        heading: "RUNT",
        top: TopColumn {
            heading: "RUNT",
            width: 5,
            priority: 140,
            sort: false,
        },
        relation: Relation::Partition,
        alarm: false,
        mismatch: 0,
        help: "Frames shorter than an Ethernet header.",
    },
];

// `Class::info` indexes the table by variant: checked when compiling.
const _: () = {
    let mut i = 0;
    while i < COUNT {
        assert!(
            CLASSES[i].class as usize == i,
            "CLASSES is not in Class order"
        );
        i += 1;
    }
};

impl Class {
    /// The class's position in [`CLASSES`] (and in every output).
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn info(self) -> &'static ClassInfo {
        &CLASSES[self.index()]
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The class's count in `f`. Exhaustive on purpose: a new class does
    /// not compile until it says which counter is its own.
    pub fn count(self, f: &FrameCounters) -> u64 {
        match self {
            Class::Total => f.total,
            Class::Own => f.own,
            Class::Broadcast => f.broadcast,
            Class::Multicast => f.multicast,
            Class::ForeignUnicast => f.foreign_unicast,
            Class::HostIpWrongMac => f.host_ip_wrong_mac,
            Class::StaleMac => f.stale_mac,
            Class::Runt => f.runt,
        }
    }
}

/// Every class, in output order.
pub fn all() -> impl Iterator<Item = Class> {
    CLASSES.iter().map(|c| c.class)
}

/// The disjoint classes whose sum is `total`, in output order.
pub fn partition() -> impl Iterator<Item = &'static ClassInfo> {
    CLASSES.iter().filter(|c| c.relation == Relation::Partition)
}

/// The classes that are part of another class, in output order.
pub fn subsets() -> impl Iterator<Item = &'static ClassInfo> {
    CLASSES
        .iter()
        .filter(|c| matches!(c.relation, Relation::Subset(_)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::classify::{FrameClass, counter_delta};

    #[test]
    fn the_table_is_in_enum_order_and_complete() {
        for (at, info) in CLASSES.iter().enumerate() {
            assert_eq!(info.class.index(), at, "{}", info.name);
            assert_eq!(info.class.info(), info);
        }
        // Every counter of `FrameCounters` is a class, except the kernel's
        // own pkt_type view, and each class counts the field of its name:
        // a counter without its row here, or a row reading another field,
        // fails.
        let names: BTreeSet<&str> = CLASSES.iter().map(|c| c.name).collect();
        let fields: BTreeSet<&str> = FrameCounters::FIELDS
            .into_iter()
            .filter(|f| !f.starts_with("pkt_"))
            .collect();
        assert_eq!(names, fields);
        for info in &CLASSES {
            let at = FrameCounters::FIELDS
                .iter()
                .position(|f| *f == info.name)
                .unwrap();
            let mut f = FrameCounters::default();
            *f.values_mut()[at] = 7;
            assert_eq!(
                info.class.count(&f),
                7,
                "{} counts its own field",
                info.name
            );
            assert_eq!(
                f.values().iter().sum::<u64>(),
                7,
                "{} reads no other field",
                info.name
            );
        }
    }

    #[test]
    fn headings_and_ranks_are_distinct() {
        let distinct = |v: Vec<String>| v.iter().collect::<BTreeSet<_>>().len() == v.len();
        assert!(distinct(CLASSES.iter().map(|c| c.heading.into()).collect()));
        assert!(distinct(
            CLASSES.iter().map(|c| c.top.heading.into()).collect()
        ));
        assert!(distinct(
            CLASSES.iter().map(|c| c.top.priority.to_string()).collect()
        ));
        for c in &CLASSES {
            assert!(
                c.top.heading.len() <= usize::from(c.top.width),
                "{}",
                c.name
            );
        }
    }

    /// Every class of the reference model, every flag combination.
    fn reference_classes() -> Vec<FrameClass> {
        let mut out = vec![
            FrameClass::Runt,
            FrameClass::Broadcast,
            FrameClass::Multicast,
            FrameClass::Own,
        ];
        for host_ip in [false, true] {
            for stale in [false, true] {
                out.push(FrameClass::ForeignUnicast { host_ip, stale });
            }
        }
        // Exhaustive: a new reference-model class does not compile here
        // until it is listed above.
        for c in &out {
            match c {
                FrameClass::Runt
                | FrameClass::Broadcast
                | FrameClass::Multicast
                | FrameClass::Own
                | FrameClass::ForeignUnicast { .. } => {}
            }
        }
        out
    }

    #[test]
    fn every_frame_is_in_one_partition_class_and_subsets_stay_inside() {
        assert_eq!(
            CLASSES
                .iter()
                .filter(|c| c.relation == Relation::Total)
                .count(),
            1
        );
        for frame in reference_classes() {
            let d = counter_delta(frame);
            assert_eq!(Class::Total.count(&d), 1, "{frame:?}");
            let parts: Vec<&str> = partition()
                .filter(|c| c.class.count(&d) == 1)
                .map(|c| c.name)
                .collect();
            assert_eq!(parts.len(), 1, "{frame:?} is in {parts:?}");
            assert_eq!(
                partition().map(|c| c.class.count(&d)).sum::<u64>(),
                Class::Total.count(&d),
                "{frame:?}"
            );
            for c in subsets() {
                let Relation::Subset(of) = c.relation else {
                    unreachable!()
                };
                assert!(c.class.count(&d) <= of.count(&d), "{} of {frame:?}", c.name);
            }
        }
        // Subsets are of partition classes.
        for c in subsets() {
            let Relation::Subset(of) = c.relation else {
                unreachable!()
            };
            assert_eq!(of.info().relation, Relation::Partition, "{}", c.name);
        }
    }

    /// The reference model reaches every class: a class added to the
    /// table (and the kernel's counters) but never counted by
    /// `counter_delta` fails here, so the model cannot silently lag.
    #[test]
    fn the_reference_model_counts_every_class() {
        for c in CLASSES {
            assert!(
                reference_classes()
                    .into_iter()
                    .any(|frame| c.class.count(&counter_delta(frame)) > 0),
                "no reference-model class counts {}",
                c.name
            );
        }
    }

    #[test]
    fn mismatch_bits_name_one_class_each() {
        let bits: Vec<u8> = CLASSES
            .iter()
            .map(|c| c.mismatch)
            .filter(|b| *b != 0)
            .collect();
        let all = bits.iter().fold(0, |all, b| all | b);
        assert_eq!(all, MISMATCH_FOREIGN | MISMATCH_HOST_IP | MISMATCH_STALE);
        assert!(bits.iter().all(|b| b.count_ones() == 1));
        assert_eq!(all.count_ones() as usize, bits.len(), "one class per bit");
    }
}
