//! Stations moving between a bridge's ports: two containers given the
//! same MAC, or a loop, make the bridge re-learn one MAC on one port and
//! then another, and frames for it go wherever it was seen last. The
//! kernel notifies every learned entry and every move (`Change::FdbLearned`);
//! this remembers the port of each MAC and counts the moves, summed per
//! MAC until the next report so a flapping storm is one event, not
//! thousands.

use std::{
    collections::{BTreeMap, HashMap},
    time::SystemTime,
};

use crate::{mac::Mac, netlink::Learned};

/// Learned entries remembered at most: a bridge with more stations than
/// this has its later ones' moves uncounted rather than macdrop growing
/// without bound.
pub const MAX_TRACKED: usize = 16_384;
/// Distinct ports listed per moving MAC.
const MAX_PORTS: usize = 8;

/// One MAC's moves since the last report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moves {
    pub bridge: u32,
    pub mac: Mac,
    pub vid: u16,
    pub moves: u64,
    /// The ports it was learned on, in the order first seen (at most
    /// `MAX_PORTS`).
    pub ports: Vec<u32>,
    pub last: SystemTime,
}

type Key = (u32, Mac, u16);

#[derive(Debug, Default)]
pub struct FdbMoves {
    /// (bridge, MAC, VLAN) -> the port it was learned on last.
    port: HashMap<Key, u32>,
    pending: BTreeMap<Key, Moves>,
}

impl FdbMoves {
    /// The bridge learned `l`; counts a move when the MAC was last behind
    /// another port.
    pub fn learned(&mut self, l: &Learned, now: SystemTime) {
        let key = (l.bridge, l.mac, l.vid);
        let before = match self.port.get_mut(&key) {
            Some(port) => std::mem::replace(port, l.port),
            None => {
                if self.port.len() < MAX_TRACKED {
                    self.port.insert(key, l.port);
                }
                return;
            }
        };
        if before == l.port {
            return;
        }
        let m = self.pending.entry(key).or_insert_with(|| Moves {
            bridge: l.bridge,
            mac: l.mac,
            vid: l.vid,
            moves: 0,
            ports: vec![before],
            last: now,
        });
        m.moves += 1;
        m.last = now;
        if !m.ports.contains(&l.port) && m.ports.len() < MAX_PORTS {
            m.ports.push(l.port);
        }
    }

    /// The entry aged out or was flushed: learning it again elsewhere is a
    /// station that moved, not one that flaps.
    pub fn forgotten(&mut self, l: &Learned) {
        self.port.remove(&(l.bridge, l.mac, l.vid));
    }

    /// A link was deleted: its entries (as a bridge or a port) go.
    pub fn forget_link(&mut self, ifindex: u32) {
        self.port
            .retain(|(bridge, _, _), port| *bridge != ifindex && *port != ifindex);
    }

    /// The moves since the last call.
    pub fn drain(&mut self) -> Vec<Moves> {
        std::mem::take(&mut self.pending).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Mac = Mac([2, 0, 0, 0, 0, 0xd]);

    fn on(port: u32) -> Learned {
        Learned {
            bridge: 2,
            port,
            mac: M,
            vid: 0,
        }
    }

    #[test]
    fn moves_are_counted_per_mac_and_drained() {
        let t = SystemTime::UNIX_EPOCH;
        let mut f = FdbMoves::default();
        f.learned(&on(3), t);
        f.learned(&on(3), t);
        assert!(
            f.drain().is_empty(),
            "first learned, then refreshed: no move"
        );
        for port in [4, 3, 4, 5] {
            f.learned(&on(port), t);
        }
        let d = f.drain();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].moves, d[0].ports.clone()), (4, vec![3, 4, 5]));
        assert!(f.drain().is_empty());
        // Aged out, then learned elsewhere: a station that moved once.
        f.forgotten(&on(5));
        f.learned(&on(3), t);
        assert!(f.drain().is_empty());
        f.forget_link(3);
        f.learned(&on(4), t);
        assert!(f.drain().is_empty(), "its port was deleted");
    }

    #[test]
    fn tracking_is_bounded() {
        let t = SystemTime::UNIX_EPOCH;
        let mut f = FdbMoves::default();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let b = i.to_be_bytes();
            let l = Learned {
                mac: Mac([2, 0, b[0], b[1], b[2], b[3]]),
                ..on(3)
            };
            f.learned(&l, t);
        }
        assert_eq!(f.port.len(), MAX_TRACKED);
    }
}
