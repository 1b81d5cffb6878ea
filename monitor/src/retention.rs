//! How long a gone interface stays in the reports (`--retention`): with
//! its final counts for the window, then out of the report, the JSON lines
//! and the metrics, and out of macdrop's memory. On a host where every pod
//! or container brings a veth of its own, a gone interface kept for ever
//! would grow macdrop and its metric series with every one that came and
//! went.
//!
//! What it never loses: a gone interface is dropped only once a report
//! has shown it gone (`Interface::expired`), and a series whose name comes
//! back (a device re-created under the same name) keeps the counts of the
//! instance that expired (`Interface::inherit`), so a counter in the
//! metrics never goes down while its series exists.

use std::time::{Duration, Instant, SystemTime};

use crate::{
    model::Interface,
    tracker::{Event, EventKind},
};

/// The window when `--retention` is not given.
pub const DEFAULT: Duration = Duration::from_secs(10 * 60);

/// The longest window `--retention` takes (as long as `--duration`).
pub const MAX: Duration = Duration::from_secs(366 * 86400);

/// `--retention`'s value: a duration as humantime writes it (`10m`,
/// `90s`, `1h 30m`) or a number of seconds like the other flags; 0 keeps a
/// gone interface for one report only.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let retention = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs.min(1e12)),
        Ok(_) => return Err(format!("{s:?} is out of range: use 0 to 366 days")),
        Err(_) => humantime::parse_duration(s).map_err(|e| {
            format!("{s:?} is not a duration ({e}): use e.g. 10m, 90s, 1h30m or seconds")
        })?,
    };
    if retention > MAX {
        return Err(format!("{s} is out of range: use 0 to 366 days"));
    }
    Ok(retention)
}

/// Removes from `items` every interface whose retention ended at `now`
/// (`model` finds each item's interface) and returns an `expired` event
/// for each. The counts of one that shares its series with an interface
/// that stays go to that one (the newest of them), so the series' sums
/// stay exact.
pub fn expire<T>(
    items: &mut Vec<T>,
    model: impl Fn(&mut T) -> &mut Interface,
    retention: Duration,
    now: Instant,
) -> Vec<Event> {
    let due: Vec<bool> = items
        .iter_mut()
        .map(|t| model(t).expired(retention, now))
        .collect();
    if !due.contains(&true) {
        return Vec::new();
    }
    let mut leaving = Vec::new();
    let mut kept = Vec::with_capacity(items.len());
    for (t, due) in items.drain(..).zip(due) {
        if due {
            leaving.push(t);
        } else {
            kept.push(t);
        }
    }
    *items = kept;
    let mut events = Vec::with_capacity(leaving.len());
    for mut t in leaving {
        let expired = model(&mut t);
        events.push(Event {
            ts: SystemTime::now(),
            ifname: expired.name.clone(),
            ifindex: expired.ifindex,
            kind: EventKind::Expired,
        });
        let heir = items
            .iter_mut()
            .rev()
            .map(&model)
            .find(|i| i.series_key() == expired.series_key());
        if let Some(heir) = heir {
            heir.inherit(expired);
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use monitor_common::FrameCounters;

    use super::*;
    use crate::topology::Role;

    const MIN: Duration = Duration::from_secs(60);

    fn port(name: &str, ifindex: u32, own: u64) -> Interface {
        let mut i = Interface::new(name.into(), ifindex, 7, Role::Port, Some("br0".into()));
        i.frames = FrameCounters {
            total: own,
            own,
            ..Default::default()
        };
        i
    }

    fn names(items: &[Interface]) -> Vec<&str> {
        items.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn a_gone_interface_stays_for_the_window_then_goes() {
        let t0 = Instant::now();
        let mut items = vec![port("p1", 3, 10), port("c1", 4, 5)];
        items[1].mark_gone(t0);
        items.iter_mut().for_each(Interface::mark_shown);
        for at in [t0, t0 + MIN, t0 + 10 * MIN - Duration::from_millis(1)] {
            let events = expire(&mut items, |i| i, 10 * MIN, at);
            assert!(events.is_empty(), "inside the window");
            assert_eq!(names(&items), ["p1", "c1"]);
        }
        assert_eq!(items[1].frames.own, 5, "final counts kept in the window");
        let events = expire(&mut items, |i| i, 10 * MIN, t0 + 10 * MIN);
        assert_eq!(names(&items), ["p1"], "dropped when the window ends");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind_name(), "expired");
        assert_eq!((events[0].ifname.as_str(), events[0].ifindex), ("c1", 4));
        assert!(
            items[0].earlier.is_none(),
            "another series inherits nothing"
        );
    }

    #[test]
    fn nothing_goes_before_a_report_showed_it_gone() {
        let t0 = Instant::now();
        let mut items = vec![port("c1", 4, 5)];
        items[0].mark_gone(t0);
        let late = t0 + 100 * MIN;
        assert!(expire(&mut items, |i| i, Duration::ZERO, late).is_empty());
        assert_eq!(items.len(), 1, "not shown yet: kept even with retention 0");
        items[0].mark_shown();
        assert_eq!(expire(&mut items, |i| i, Duration::ZERO, late).len(), 1);
        assert!(items.is_empty());
        // Present interfaces never expire, shown or not.
        let mut items = vec![port("p1", 3, 1)];
        items[0].mark_shown();
        assert!(expire(&mut items, |i| i, Duration::ZERO, late).is_empty());
    }

    #[test]
    fn marking_gone_twice_keeps_the_first_time() {
        let t0 = Instant::now();
        let mut i = port("c1", 4, 5);
        i.mark_gone(t0);
        // Its namespace went away five minutes later.
        i.mark_gone(t0 + 5 * MIN);
        i.mark_shown();
        assert!(i.expired(10 * MIN, t0 + 10 * MIN));
    }

    #[test]
    fn a_name_that_comes_back_keeps_its_series_counts() {
        let t0 = Instant::now();
        // p1 went twice and came back each time; the third instance stays.
        let mut first = port("p1", 3, 100);
        first.drops = Some([("OTHERHOST".to_owned(), 2)].into());
        first.kernel_rx_otherhost_dropped = Some(4);
        first.mark_gone(t0);
        let mut second = port("p1", 9, 20);
        second.mark_gone(t0 + MIN);
        let mut third = port("p1", 12, 3);
        third.drops = Some([("OTHERHOST".to_owned(), 1)].into());
        let mut items = vec![first, second, third, port("p2", 5, 7)];
        items.iter_mut().for_each(Interface::mark_shown);
        let sum = |items: &[Interface]| -> u64 {
            items
                .iter()
                .filter(|i| i.name == "p1")
                .map(|i| i.frames.own + i.earlier.as_ref().map_or(0, |e| e.frames.own))
                .sum()
        };
        assert_eq!(sum(&items), 123);
        expire(&mut items, |i| i, 10 * MIN, t0 + 10 * MIN);
        assert_eq!(names(&items), ["p1", "p1", "p2"]);
        assert_eq!(sum(&items), 123, "the first went into the newest p1");
        let carried = items[1].earlier.as_ref().expect("carried by the third");
        assert_eq!(items[1].ifindex, 12);
        assert!(carried.gone);
        expire(&mut items, |i| i, 10 * MIN, t0 + 11 * MIN);
        assert_eq!(names(&items), ["p1", "p2"]);
        assert_eq!(sum(&items), 123, "so did the second");
        let carried = items[0].earlier.as_ref().unwrap();
        assert_eq!(carried.frames.own, 120);
        assert_eq!(carried.drops.as_ref().unwrap()["OTHERHOST"], 2);
        assert_eq!(carried.kernel_rx_otherhost_dropped, Some(4));
        // The last instance goes: the whole series ends with it.
        items[0].mark_gone(t0 + 12 * MIN);
        items[0].mark_shown();
        expire(&mut items, |i| i, 10 * MIN, t0 + 22 * MIN);
        assert_eq!(names(&items), ["p2"]);
        assert!(items[0].earlier.is_none());
    }

    #[test]
    fn an_expired_heir_passes_on_what_it_carried() {
        let t0 = Instant::now();
        let mut items = vec![port("p1", 3, 100), port("p1", 9, 20), port("p1", 12, 3)];
        items[0].mark_gone(t0);
        items[1].mark_gone(t0 + MIN);
        items.iter_mut().for_each(Interface::mark_shown);
        // Both go in one pass: both end up in the one that stays.
        expire(&mut items, |i| i, 10 * MIN, t0 + 11 * MIN);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].earlier.as_ref().unwrap().frames.own, 120);
    }

    #[test]
    fn durations_parse_like_humantime_or_seconds() {
        let ok = [
            ("10m", 600),
            ("2s", 2),
            ("1h 30m", 5400),
            ("1h30m", 5400),
            ("90", 90),
            ("0", 0),
            (" 5s ", 5),
            ("366days", 366 * 86400),
        ];
        for (text, secs) in ok {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        assert_eq!(parse("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["", "ten minutes", "-1", "-5s", "nan", "inf", "367d", "1e13"] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("duration") || e.contains("range"), "{bad}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
