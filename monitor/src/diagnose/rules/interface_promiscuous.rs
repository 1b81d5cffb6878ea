//! `interface_promiscuous` (warning, from `status`): a promiscuous bridge or
//! standalone interface accepts frames for any MAC, so a MAC mismatch goes
//! unnoticed (the README's incident: it works while tcpdump runs). The
//! window adds who holds it, since when (kernel log), and whether frames
//! for this host with a wrong MAC reached it only because of it.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::Scope,
        text::{clock, rfc3339},
    },
    path::OvsRole,
    promisc::{TransitionKind, Uncertainty, Verdict},
    status::IfaceStatus,
    topology::Role,
    tracker::EventKind,
};

/// What `status` sees.
pub struct Facts {
    pub interface: String,
    pub promiscuity: u32,
    /// "promiscuity 2: bridge port, tcpdump (pid 4242)", or "promiscuity
    /// N" when /proc could not tell.
    pub holders: String,
    /// `ip link set promisc on` is one of the holders.
    pub flag_set: bool,
    pub is_bridge: bool,
}

/// Since when, by the kernel log.
pub enum LogSince {
    /// /dev/kmsg could not be read.
    Unreadable,
    /// It entered during the window: an event, not yet in the log, which is
    /// read before the window.
    InWindow,
    Since {
        wall: SystemTime,
        entered: u32,
        left: u32,
    },
    /// The ring buffer wrapped.
    Wrapped,
    /// The records do not fit one device.
    Ambiguous { entered: u32, left: u32 },
}

/// What the window adds.
pub struct Window {
    pub entered_in_window: Option<SystemTime>,
    pub log: LogSince,
    /// The log's counts, when it could be read.
    pub log_counts: Option<(u32, u32)>,
    /// Frames for this host's IP with a MAC it does not own, passed up
    /// while promiscuous.
    pub masked: u64,
    /// Unicast frames for other MACs received while promiscuous.
    pub foreign: u64,
}

impl Window {
    fn since(&self) -> Option<SystemTime> {
        match self.log {
            LogSince::Since { wall, .. } => Some(wall),
            _ => self.entered_in_window,
        }
    }
}

pub fn detect(i: &IfaceStatus) -> Option<Facts> {
    let link = &i.link;
    // An Open vSwitch datapath holds its ports promiscuous as a bridge
    // does (`openvswitch_not_linux_bridge` says what they are).
    let switch_port = i.role == Role::Port || i.path.ovs == Some(OvsRole::Port);
    (!switch_port && (link.promisc || link.promiscuity > 0)).then(|| Facts {
        interface: link.name.clone(),
        promiscuity: link.promiscuity,
        holders: i
            .promisc_holders
            .clone()
            .unwrap_or_else(|| format!("promiscuity {}", link.promiscuity)),
        flag_set: link.promisc_flag,
        is_bridge: link.is_bridge(),
    })
}

pub fn window(scope: &Scope, facts: &Facts) -> Window {
    let name = facts.interface.as_str();
    let entered_in_window = scope
        .events_of(name)
        .filter(|e| matches!(e.kind, EventKind::PromiscEntered { .. }))
        .last()
        .map(|e| e.ts);
    let history = scope.ns.iface(name).and_then(|s| s.promisc_log.as_ref());
    let log = match history {
        None => LogSince::Unreadable,
        Some(h) => match (entered_in_window.is_some(), h.verdict(true), &h.last) {
            (true, _, _) => LogSince::InWindow,
            (false, Verdict::Agrees, Some(t)) if t.kind == TransitionKind::Entered => {
                LogSince::Since {
                    wall: t.wall,
                    entered: h.entered,
                    left: h.left,
                }
            }
            (false, Verdict::Uncertain(Uncertainty::HistoryIncomplete), _) => LogSince::Wrapped,
            _ => LogSince::Ambiguous {
                entered: h.entered,
                left: h.left,
            },
        },
    };
    let o = scope.named(name);
    Window {
        entered_in_window,
        log,
        log_counts: history.map(|h| (h.entered, h.left)),
        masked: o.map_or(0, |o| o.while_promisc.host_ip_wrong_mac),
        foreign: o.map_or(0, |o| o.while_promisc.foreign_unicast),
    }
}

pub fn finding(netns: u32, facts: &Facts, window: Option<&Window>) -> Finding {
    let name = facts.interface.as_str();
    let who = &facts.holders;
    let mut f = Finding::new(
        FindingId::InterfacePromiscuous,
        netns,
        name,
        format!(
            "{name} is promiscuous ({who}): it accepts frames for any MAC, so frames with a \
             wrong destination MAC may be delivered only because of it"
        ),
    );
    f.remedy.push(format!(
        "find out whether traffic still works without it: `macdrop watch --iface {name}` \
         shows frames that carry this host's IP but a wrong MAC"
    ));
    let Some(w) = window else {
        return f;
    };
    f.evidence.push(format!("held by: {who}"));
    if let Some(ts) = w.entered_in_window {
        f.evidence.push(format!(
            "entered promiscuous mode during the window, at {}",
            clock(ts)
        ));
    }
    match &w.log {
        LogSince::Unreadable => f.evidence.push(
            "the kernel log could not be read (needs CAP_SYSLOG): since when is unknown".into(),
        ),
        LogSince::InWindow => {}
        LogSince::Since {
            wall,
            entered,
            left,
        } => f.evidence.push(format!(
            "promiscuous since {} by the kernel log (entered {entered} time(s), left {left} \
             time(s) since boot)",
            rfc3339(*wall),
        )),
        LogSince::Wrapped => f.evidence.push(
            "the kernel log no longer holds when it entered promiscuous mode \
             (the ring buffer wrapped)"
                .into(),
        ),
        LogSince::Ambiguous { entered, left } => f.evidence.push(format!(
            "the kernel log cannot tell since when: its {entered} \"entered\" and {left} \"left\" \
             records for {name} do not fit one device (the name is used in several \
             namespaces, or a device of that name was deleted while promiscuous)",
        )),
    }
    let (masked, foreign) = (w.masked, w.foreign);
    if facts.is_bridge && masked > 0 {
        f.evidence.push(format!(
            "while promiscuous, {name} passed {masked} frame(s) for this host's IP with a MAC \
             it does not own up to the host ({foreign} foreign unicast frame(s) in all): \
             without promiscuous mode the bridge would not deliver them, so traffic that works \
             now stops when the holder lets go"
        ));
        f.remedy.insert(
            0,
            "fix the cause first (the findings above): turning promiscuous mode off now breaks \
             that traffic"
                .into(),
        );
    } else if foreign > 0 {
        f.evidence.push(format!(
            "while promiscuous, {name} received {foreign} unicast frame(s) for other MACs"
        ));
    }
    let mut release = Vec::new();
    if facts.flag_set {
        release.push(format!("`ip link set {name} promisc off`"));
    }
    if who.contains("(pid ") {
        release.push("stop the process(es) named above (tcpdump without -p, ...)".into());
    }
    if !release.is_empty() {
        f.remedy.push(format!(
            "when nothing needs it any more: {}",
            release.join(" and ")
        ));
    }
    f.weight = masked + 1;
    f.facts = json_object(json!({
        "promiscuity": facts.promiscuity,
        "holders": who,
        "since": w.since().map(rfc3339),
        "kernel_log": w.log_counts.map_or(Value::Null, |(entered, left)| json!({"entered": entered, "left": left})),
        "delivered_while_promiscuous": if facts.is_bridge { masked } else { 0 },
        "foreign_while_promiscuous": foreign,
    }));
    f
}
