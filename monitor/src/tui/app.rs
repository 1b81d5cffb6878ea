//! The state behind `macdrop top`: the latest report, a short history of
//! each interface's mismatch rate, the latest events, and the user's sort
//! and filter. Pure (no terminal), so keys and ordering are unit-tested.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, SystemTime},
};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::{
    classes::{self, CLASSES, Class},
    model::{Interface, World},
    topology::Role,
    untrusted::escape_controls,
    verdict::MAC_MISMATCH_REASONS,
};

/// Samples of the mismatch rate kept per interface (a sparkline shows the
/// newest that fit its width).
pub const HISTORY: usize = 300;
/// Event lines kept for the bottom pane.
pub const EVENTS: usize = 200;

/// Identifies one interface across reports: ifindexes are per namespace,
/// and a name may be reused by a new device.
pub type Key = (u32, u32, String);

pub fn key(i: &Interface) -> Key {
    (i.netns, i.ifindex, i.name.clone())
}

/// The rate a sparkline draws: frames per second the kernel will not
/// deliver for a MAC mismatch. On a bridge device or a standalone interface
/// that is every foreign unicast frame (dropped as OTHERHOST); on a bridge
/// port foreign unicast is normally bridged on, so there it is the frames
/// for this host's IP with a wrong MAC.
pub fn mismatch_rate(i: &Interface) -> f64 {
    match i.role {
        Role::Port => i.rates.get(Class::HostIpWrongMac),
        Role::Bridge | Role::Standalone => i.rates.get(Class::ForeignUnicast),
    }
}

/// Confirmed kernel drops for a MAC mismatch, all reasons together; None
/// without the drop layer.
pub fn confirmed_drops(i: &Interface) -> Option<u64> {
    i.drops.as_ref().map(|d| {
        MAC_MISMATCH_REASONS
            .iter()
            .map(|r| d.get(*r).copied().unwrap_or(0))
            .sum()
    })
}

/// "ns/p1" for interfaces of other namespaces, "p1" otherwise.
pub fn display_name(i: &Interface) -> String {
    match &i.netns_name {
        Some(ns) => format!("{ns}/{}", i.name),
        None => i.name.clone(),
    }
}

/// What `s` cycles through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Bridges, each followed by its ports, then standalone interfaces.
    Iface,
    /// A frame class's count (those the class table marks for sorting).
    Class(Class),
    Drops,
    /// The sparkline's rate in the last interval.
    Mismatch,
}

/// How many classes `s` sorts by.
const SORTED_CLASSES: usize = {
    let mut n = 0;
    let mut at = 0;
    while at < classes::COUNT {
        if CLASSES[at].top.sort {
            n += 1;
        }
        at += 1;
    }
    n
};

impl Sort {
    /// In cycle order: the name, the classes in table order, drops, the
    /// sparkline's rate.
    pub const ALL: [Sort; SORTED_CLASSES + 3] = {
        let mut out = [Sort::Iface; SORTED_CLASSES + 3];
        let mut at = 1;
        let mut class = 0;
        while class < classes::COUNT {
            if CLASSES[class].top.sort {
                out[at] = Sort::Class(CLASSES[class].class);
                at += 1;
            }
            class += 1;
        }
        out[at] = Sort::Drops;
        out[at + 1] = Sort::Mismatch;
        out
    };

    /// As shown in the title bar (the column headers' names).
    pub fn label(self) -> &'static str {
        match self {
            Sort::Iface => "IFACE",
            Sort::Class(c) => c.info().top.heading,
            Sort::Drops => "DROPS",
            Sort::Mismatch => "MISMATCH/s",
        }
    }

    fn next(self) -> Self {
        let at = Self::ALL.iter().position(|s| *s == self).unwrap_or(0);
        Self::ALL[(at + 1) % Self::ALL.len()]
    }
}

/// One line of the events pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLine {
    pub ts: SystemTime,
    pub text: String,
}

/// What a key asks the main loop to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Redraw,
    Quit,
    Nothing,
}

pub struct App {
    /// Interfaces of the latest report, in report order.
    pub interfaces: Vec<Interface>,
    pub history: BTreeMap<Key, VecDeque<f64>>,
    pub events: VecDeque<EventLine>,
    pub sort: Sort,
    /// Reverse the sort (numbers then ascend, names descend).
    pub reverse: bool,
    /// Applied filter: case-insensitive substring of name, master or role.
    pub filter: String,
    /// Being typed after `/`; None when not editing.
    pub editing: Option<String>,
    /// Index of the highlighted row among the visible interfaces.
    pub selected: usize,
    pub last_report: Option<SystemTime>,
    pub reports: u64,
    pub interval: Duration,
    pub drop_source: Result<&'static str, String>,
}

impl App {
    pub fn new(interval: Duration) -> Self {
        Self {
            interfaces: Vec::new(),
            history: BTreeMap::new(),
            events: VecDeque::new(),
            sort: Sort::Iface,
            reverse: false,
            filter: String::new(),
            editing: None,
            selected: 0,
            last_report: None,
            reports: 0,
            interval,
            drop_source: Err("no report yet".into()),
        }
    }

    /// Takes in one report: counts, a sample of each mismatch rate, events.
    pub fn update(&mut self, mut world: World) {
        // Everything the screen shows of the interfaces, escaped once here
        // (ratatui drops control characters, which would hide them).
        for i in &mut world.interfaces {
            i.name = escape_controls(&i.name);
            for text in [&mut i.master, &mut i.netns_name, &mut i.promisc_holders]
                .into_iter()
                .flatten()
            {
                *text = escape_controls(text);
            }
        }
        for i in &world.interfaces {
            let samples = self.history.entry(key(i)).or_default();
            samples.push_back(mismatch_rate(i));
            while samples.len() > HISTORY {
                samples.pop_front();
            }
        }
        // Histories of interfaces no longer reported go with them.
        self.history
            .retain(|k, _| world.interfaces.iter().any(|i| key(i) == *k));
        for e in &world.events {
            self.push_event(e.ts, escape_controls(&e.describe()));
        }
        self.interfaces = world.interfaces;
        self.last_report = Some(world.ts);
        self.drop_source = world.drop_source;
        self.reports += 1;
        self.clamp_selection();
    }

    /// A line macdrop would have printed on stderr.
    pub fn note(&mut self, ts: SystemTime, text: String) {
        let text = escape_controls(text.strip_prefix("macdrop: ").unwrap_or(&text));
        self.push_event(ts, text);
    }

    fn push_event(&mut self, ts: SystemTime, text: String) {
        self.events.push_back(EventLine { ts, text });
        while self.events.len() > EVENTS {
            self.events.pop_front();
        }
    }

    /// The interfaces to show, filtered and sorted.
    pub fn visible(&self) -> Vec<&Interface> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Interface> = self
            .interfaces
            .iter()
            .filter(|i| needle.is_empty() || matches(i, &needle))
            .collect();
        match self.sort {
            Sort::Iface => {
                rows.sort_by_key(|i| tree_key(i));
                if self.reverse {
                    rows.reverse();
                }
            }
            numeric => {
                let value = |i: &Interface| -> f64 {
                    let f = &i.frames;
                    match numeric {
                        Sort::Class(c) => c.count(f) as f64,
                        Sort::Drops => confirmed_drops(i).unwrap_or(0) as f64,
                        Sort::Mismatch | Sort::Iface => mismatch_rate(i),
                    }
                };
                // Largest first; ties in tree order, whatever the direction.
                rows.sort_by(|a, b| {
                    let by_value = value(b).total_cmp(&value(a));
                    let by_value = if self.reverse {
                        by_value.reverse()
                    } else {
                        by_value
                    };
                    by_value.then_with(|| tree_key(a).cmp(&tree_key(b)))
                });
            }
        }
        rows
    }

    fn clamp_selection(&mut self) {
        let n = self.visible().len();
        self.selected = self.selected.min(n.saturating_sub(1));
    }

    /// Handles one key press.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        // Raw mode turns Ctrl-C into a key, not SIGINT: quit all the same.
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some(text) = &mut self.editing {
            match key.code {
                KeyCode::Esc => {
                    self.editing = None;
                    self.filter.clear();
                }
                KeyCode::Enter => {
                    self.filter = self.editing.take().unwrap_or_default();
                }
                KeyCode::Backspace => {
                    text.pop();
                    self.filter = text.clone();
                }
                KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                    text.push(c);
                    self.filter = text.clone();
                }
                _ => return Action::Nothing,
            }
            self.selected = 0;
            self.clamp_selection();
            return Action::Redraw;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Char('Q') => return Action::Quit,
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.selected = 0;
            }
            KeyCode::Char('r') => self.reverse = !self.reverse,
            KeyCode::Char('/') => self.editing = Some(self.filter.clone()),
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Down | KeyCode::Char('j') => self.selected += 1,
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = usize::MAX,
            _ => return Action::Nothing,
        }
        self.clamp_selection();
        Action::Redraw
    }
}

fn matches(i: &Interface, needle: &str) -> bool {
    display_name(i).to_lowercase().contains(needle)
        || i.master
            .as_deref()
            .is_some_and(|m| m.to_lowercase().contains(needle))
        || i.role.as_str().contains(needle)
}

/// Namespace, then bridge (itself before its ports), then name; standalone
/// interfaces after the bridges.
fn tree_key(i: &Interface) -> (Option<String>, u8, String, u8, String) {
    let (group, bridge, rank) = match (i.role, &i.master) {
        (Role::Bridge, _) => (0, i.name.clone(), 0),
        (Role::Port, Some(m)) => (0, m.clone(), 1),
        (Role::Port, None) | (Role::Standalone, _) => (1, String::new(), 0),
    };
    (i.netns_name.clone(), group, bridge, rank, i.name.clone())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use monitor_common::FrameCounters;

    use super::*;
    use crate::tracker::{Event, EventKind};

    fn iface(name: &str, role: Role, master: Option<&str>, wrong: u64, foreign: u64) -> Interface {
        let mut i = Interface::new(name.into(), 0, 1, role, master.map(str::to_owned));
        i.ifindex = name.bytes().map(u32::from).sum();
        i.frames = FrameCounters {
            total: foreign + 1,
            own: 1,
            foreign_unicast: foreign,
            host_ip_wrong_mac: wrong,
            ..Default::default()
        };
        i.rates.set(Class::HostIpWrongMac, wrong as f64);
        i.rates.set(Class::ForeignUnicast, foreign as f64);
        i.drops = Some(BTreeMap::from([("NO_TX_TARGET".to_owned(), wrong)]));
        i
    }

    fn world(interfaces: Vec<Interface>, events: Vec<Event>) -> World {
        World {
            ts: SystemTime::UNIX_EPOCH,
            interfaces,
            events,
            drop_source: Ok("tp_btf"),
            self_stats: None,
            evidence: None,
        }
    }

    fn lab() -> Vec<Interface> {
        vec![
            iface("p2", Role::Port, Some("br0"), 0, 4),
            iface("v0", Role::Standalone, None, 0, 1),
            iface("p1", Role::Port, Some("br0"), 9, 9),
            iface("br0", Role::Bridge, None, 2, 2),
        ]
    }

    fn names(app: &App) -> Vec<String> {
        app.visible().iter().map(|i| i.name.clone()).collect()
    }

    fn press(app: &mut App, code: KeyCode) -> Action {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn tree_order_then_sort_keys_cycle() {
        let mut app = App::new(Duration::from_secs(1));
        app.update(world(lab(), vec![]));
        assert_eq!(names(&app), ["br0", "p1", "p2", "v0"]);
        press(&mut app, KeyCode::Char('s'));
        assert_eq!(app.sort, Sort::Class(Class::Total));
        assert_eq!(names(&app), ["p1", "p2", "br0", "v0"]);
        press(&mut app, KeyCode::Char('s'));
        press(&mut app, KeyCode::Char('s'));
        assert_eq!(app.sort, Sort::Class(Class::HostIpWrongMac));
        assert_eq!(names(&app), ["p1", "br0", "p2", "v0"], "ties in tree order");
        press(&mut app, KeyCode::Char('r'));
        assert_eq!(names(&app), ["p2", "v0", "br0", "p1"]);
        for _ in 0..4 {
            press(&mut app, KeyCode::Char('s'));
        }
        assert_eq!(app.sort, Sort::Iface, "the cycle wraps");
    }

    #[test]
    fn the_sparkline_rate_depends_on_the_role() {
        let l = lab();
        assert_eq!(mismatch_rate(&l[0]), 0.0, "port: wrong-MAC frames only");
        assert_eq!(mismatch_rate(&l[2]), 9.0);
        assert_eq!(mismatch_rate(&l[1]), 1.0, "standalone: all foreign");
        let mut app = App::new(Duration::from_secs(1));
        for _ in 0..(HISTORY + 5) {
            app.update(world(lab(), vec![]));
        }
        let p1 = app.history.iter().find(|(k, _)| k.2 == "p1").unwrap().1;
        assert_eq!(p1.len(), HISTORY, "bounded");
        app.update(world(lab()[..1].to_vec(), vec![]));
        assert_eq!(app.history.len(), 1, "histories follow the interfaces");
    }

    #[test]
    fn filter_is_typed_applied_and_cleared() {
        let mut app = App::new(Duration::from_secs(1));
        app.update(world(lab(), vec![]));
        press(&mut app, KeyCode::Char('/'));
        press(&mut app, KeyCode::Char('p'));
        assert_eq!(names(&app), ["p1", "p2"], "applied while typing");
        press(&mut app, KeyCode::Char('1'));
        assert_eq!(
            press(&mut app, KeyCode::Char('q')),
            Action::Redraw,
            "q is text here"
        );
        press(&mut app, KeyCode::Backspace);
        press(&mut app, KeyCode::Enter);
        assert_eq!((app.filter.as_str(), app.editing.as_ref()), ("p1", None));
        assert_eq!(names(&app), ["p1"]);
        press(&mut app, KeyCode::Esc);
        assert_eq!(names(&app).len(), 4, "Esc clears");
        press(&mut app, KeyCode::Char('/'));
        press(&mut app, KeyCode::Char('B'));
        assert_eq!(
            names(&app),
            ["br0", "p1", "p2"],
            "case-insensitive, masters match"
        );
        press(&mut app, KeyCode::Esc);
        assert!(app.filter.is_empty() && app.editing.is_none());
        assert_eq!(press(&mut app, KeyCode::Char('q')), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        app.editing = Some(String::new());
        assert_eq!(app.key(ctrl_c), Action::Quit, "even while typing");
    }

    #[test]
    fn events_and_notes_are_kept_newest_last_and_bounded() {
        let mut app = App::new(Duration::from_secs(1));
        let e = Event {
            ts: SystemTime::UNIX_EPOCH,
            ifname: "br0".into(),
            ifindex: 2,
            kind: EventKind::PromiscEntered { from: 0, to: 1 },
        };
        app.update(world(lab(), vec![e]));
        app.note(
            SystemTime::UNIX_EPOCH,
            "macdrop: cannot watch p9: gone".into(),
        );
        let texts: Vec<&str> = app.events.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "br0 entered promiscuous mode, promiscuity 0 -> 1",
                "cannot watch p9: gone"
            ]
        );
        for n in 0..EVENTS {
            app.note(SystemTime::UNIX_EPOCH, n.to_string());
        }
        assert_eq!(app.events.len(), EVENTS);
        assert_eq!(app.events.back().unwrap().text, (EVENTS - 1).to_string());
    }

    #[test]
    fn selection_stays_on_a_row() {
        let mut app = App::new(Duration::from_secs(1));
        app.update(world(lab(), vec![]));
        press(&mut app, KeyCode::End);
        assert_eq!(app.selected, 3);
        press(&mut app, KeyCode::Down);
        assert_eq!(app.selected, 3);
        press(&mut app, KeyCode::Char('/'));
        press(&mut app, KeyCode::Char('v'));
        assert_eq!(app.selected, 0);
        assert_eq!(confirmed_drops(&lab()[2]), Some(9));
    }
}
