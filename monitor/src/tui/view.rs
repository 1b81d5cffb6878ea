//! Draws `macdrop top`: a title bar, the interface table (totals on the
//! first line of each row, per-second rates under them), one sparkline of
//! the mismatch rate per interface, the top offenders of one interface
//! (when it has mismatched flows), the latest events, and a key bar.
//!
//! Narrow terminals get fewer columns: each column has a priority, and the
//! most important ones that fit are shown in their usual order. At 80
//! columns every frame class is there; wider terminals add the workload
//! (the container behind a port), role, master, hook, kernel counter, runts
//! and the MAC.

use std::time::SystemTime;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::{Line, Span, Text},
    widgets::{Cell, Paragraph, Row, Table, TableState},
};

use super::app::{App, Sort, confirmed_drops, display_name, key, mismatch_rate};
use crate::{
    classes::{self, CLASSES, Class},
    model::{Flow, Interface},
};

/// One column of the interface table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Iface,
    Role,
    Master,
    /// Who owns the peer's namespace (`workload`).
    Workload,
    Mac,
    Promisc,
    Hook,
    /// A frame class: its count, its rate under it.
    Class(Class),
    Drops,
    Otherhost,
}

/// The columns before the classes' and after them.
const LEADING: [Col; 7] = [
    Col::Iface,
    Col::Role,
    Col::Master,
    Col::Workload,
    Col::Mac,
    Col::Promisc,
    Col::Hook,
];
const TRAILING: [Col; 2] = [Col::Drops, Col::Otherhost];

/// In display order: the classes, in the class table's order, between the
/// others.
const ORDER: [Col; LEADING.len() + classes::COUNT + TRAILING.len()] = {
    let mut out = [Col::Iface; LEADING.len() + classes::COUNT + TRAILING.len()];
    let mut at = 0;
    while at < LEADING.len() {
        out[at] = LEADING[at];
        at += 1;
    }
    while at < LEADING.len() + classes::COUNT {
        out[at] = Col::Class(CLASSES[at - LEADING.len()].class);
        at += 1;
    }
    while at < out.len() {
        out[at] = TRAILING[at - LEADING.len() - classes::COUNT];
        at += 1;
    }
    out
};

impl Col {
    pub fn header(self) -> &'static str {
        match self {
            Col::Iface => "IFACE",
            Col::Role => "ROLE",
            Col::Master => "MASTER",
            Col::Workload => "WORKLOAD",
            Col::Mac => "MAC",
            Col::Promisc => "PROMISC",
            Col::Hook => "HOOK",
            Col::Class(c) => c.info().top.heading,
            Col::Drops => "DROPS",
            Col::Otherhost => "OTHERHOST",
        }
    }

    fn width(self, name_width: u16) -> u16 {
        match self {
            Col::Iface => name_width,
            Col::Role => 10,
            Col::Master => 6,
            Col::Workload => 12,
            Col::Mac => 17,
            Col::Promisc => 7,
            Col::Hook => 11,
            Col::Class(c) => c.info().top.width,
            Col::Drops => 6,
            Col::Otherhost => 9,
        }
    }

    /// What survives a narrow terminal: the lowest ranks that fit. The
    /// classes' ranks are in the class table, on the same scale.
    fn priority(self) -> u8 {
        match self {
            Col::Iface => 0,
            Col::Drops => 30,
            Col::Promisc => 50,
            // "Which container?": the first column after the classes
            // when the terminal is wider than 80.
            Col::Workload => 95,
            Col::Role => 100,
            Col::Master => 110,
            Col::Otherhost => 120,
            Col::Hook => 130,
            Col::Mac => 150,
            Col::Class(c) => c.info().top.priority,
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Col::Class(_) | Col::Drops | Col::Otherhost)
    }

    fn sorted_by(self, sort: Sort) -> bool {
        match (self, sort) {
            (Col::Iface, Sort::Iface) | (Col::Drops, Sort::Drops) => true,
            (Col::Class(c), Sort::Class(by)) => c == by,
            _ => false,
        }
    }
}

/// The columns that fit in `width` (1 space between columns), in display
/// order, with their widths.
pub fn columns(width: u16, name_width: u16) -> Vec<(Col, u16)> {
    let mut by_priority = ORDER;
    by_priority.sort_by_key(|c| c.priority());
    let mut used = 0u16;
    let mut chosen = Vec::new();
    for col in by_priority {
        let w = col.width(name_width);
        let need = if chosen.is_empty() { w } else { w + 1 };
        if used + need <= width {
            used += need;
            chosen.push(col);
        } else if col == Col::Iface {
            // Always the name, truncated if need be.
            used = width;
            chosen.push(col);
        }
    }
    ORDER
        .iter()
        .filter(|c| chosen.contains(c))
        .map(|c| {
            let w = if *c == Col::Iface {
                name_width.min(width)
            } else {
                c.width(name_width)
            };
            (*c, w)
        })
        .collect()
}

/// Exact below a million, then k/M/G with 3 significant digits.
pub fn count(n: u64) -> String {
    if n < 1_000_000 {
        return n.to_string();
    }
    scaled(n as f64)
}

/// Frames per second: one decimal below 100, whole numbers below 10000.
pub fn rate(r: f64) -> String {
    if r < 100.0 {
        format!("{r:.1}")
    } else if r < 10_000.0 {
        format!("{r:.0}")
    } else {
        scaled(r)
    }
}

fn scaled(x: f64) -> String {
    let (v, unit) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else {
        (x / 1e3, "k")
    };
    if v < 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The newest `width` samples as block characters scaled to their maximum;
/// zero is a blank, anything above zero at least the lowest bar.
pub fn sparkline(samples: &[f64], width: usize) -> String {
    let shown = &samples[samples.len().saturating_sub(width)..];
    let max = shown.iter().copied().fold(0.0, f64::max);
    let mut out: String = shown
        .iter()
        .map(|&v| {
            if v <= 0.0 || max <= 0.0 {
                ' '
            } else {
                let level = ((v / max) * (BARS.len() as f64)).ceil() as usize;
                BARS[level.clamp(1, BARS.len()) - 1]
            }
        })
        .collect();
    // Right-aligned: the newest sample is always at the right edge.
    let pad = width.saturating_sub(shown.len());
    out.insert_str(0, &" ".repeat(pad));
    out
}

fn clock(ts: SystemTime) -> String {
    // "2026-11-28T10:14:03.512Z" -> "10:14:03.512"
    let s = humantime::format_rfc3339_millis(ts).to_string();
    s.get(11..23).unwrap_or(&s).to_owned()
}

fn cells(i: &Interface, cols: &[(Col, u16)]) -> Vec<Cell<'static>> {
    let f = &i.frames;
    let r = &i.rates;
    cols.iter()
        .map(|&(col, width)| {
            let (top, bottom): (String, String) = match col {
                Col::Iface => {
                    let mut name = display_name(i);
                    if i.gone {
                        name.push_str(" (gone)");
                    }
                    (truncate(&name, width), "  /s".to_owned())
                }
                Col::Role => (i.role.as_str().to_owned(), String::new()),
                Col::Master => (
                    i.master.clone().unwrap_or_else(|| "-".into()),
                    String::new(),
                ),
                // Escaped when resolved (`workload::clean`).
                Col::Workload => (
                    truncate(
                        &i.workload
                            .as_ref()
                            .map_or_else(|| "-".into(), |w| w.label()),
                        width,
                    ),
                    String::new(),
                ),
                Col::Mac => (
                    i.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                    String::new(),
                ),
                Col::Promisc => (
                    if i.promisc {
                        format!("yes({})", i.promiscuity)
                    } else {
                        "no".to_owned()
                    },
                    String::new(),
                ),
                Col::Hook => (
                    i.hook.map(|h| h.as_str()).unwrap_or("-").to_owned(),
                    String::new(),
                ),
                Col::Class(c) => (count(c.count(f)), rate(r.get(c))),
                Col::Drops => (
                    confirmed_drops(i)
                        .map(count)
                        .unwrap_or_else(|| "n/a".into()),
                    String::new(),
                ),
                Col::Otherhost => (
                    i.kernel_rx_otherhost_dropped
                        .map(count)
                        .unwrap_or_else(|| "n/a".into()),
                    String::new(),
                ),
            };
            let alarm = match col {
                Col::Class(c) => c.info().alarm && c.count(f) > 0,
                Col::Drops => confirmed_drops(i).unwrap_or(0) > 0,
                _ => false,
            };
            let top = if alarm {
                Line::styled(top, Style::new().add_modifier(Modifier::BOLD))
            } else {
                Line::from(top)
            };
            let text = Text::from(vec![
                top,
                Line::styled(bottom, Style::new().add_modifier(Modifier::DIM)),
            ]);
            Cell::from(if col.numeric() {
                text.right_aligned()
            } else {
                text
            })
        })
        .collect()
}

fn truncate(s: &str, width: u16) -> String {
    let width = usize::from(width);
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Heights of the table, sparkline and events panes for `n` rows in
/// `rest` lines: everything if it fits (spare lines to the events), else
/// the table first, then sparklines, with at least a title and 3 events.
fn heights(n: u16, rest: u16) -> (u16, u16, u16) {
    let table = 1 + 2 * n.max(1);
    let spark = 1 + n;
    const EVENTS_MIN: u16 = 4;
    if table + spark + EVENTS_MIN <= rest {
        return (table, spark, rest - table - spark);
    }
    let events = EVENTS_MIN.min(rest / 3);
    let avail = rest - events;
    let table = table.min(avail.saturating_sub(2).max(avail.min(3)));
    let spark = avail - table;
    let spark = if spark >= 2 { spark } else { 0 };
    (table, spark, rest - table - spark)
}

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let rows = app.visible();
    let n = u16::try_from(rows.len()).unwrap_or(u16::MAX);
    let [title, rest, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let (h_table, h_spark, h_events) = heights(n, rest.height);
    // The offenders take from the events, which keep their minimum.
    let offenders = offenders_of(app, &rows);
    let flows = offenders.and_then(|(_, f)| u16::try_from(f.len()).ok());
    let h_offenders = flows.map_or(0, |n| {
        (1 + n.min(OFFENDER_LINES)).min(h_events.saturating_sub(4))
    });
    let h_offenders = if h_offenders >= 2 { h_offenders } else { 0 };
    let [table_area, spark_area, offenders_area, events_area] = Layout::vertical([
        Constraint::Length(h_table),
        Constraint::Length(h_spark),
        Constraint::Length(h_offenders),
        Constraint::Length(h_events - h_offenders),
    ])
    .areas(rest);

    draw_title(frame, app, title, rows.len());
    draw_table(frame, app, &rows, table_area);
    draw_sparklines(frame, app, &rows, spark_area);
    if let Some((i, flows)) = offenders {
        draw_offenders(frame, i, flows, offenders_area);
    }
    draw_events(frame, app, events_area);
    draw_footer(frame, app, footer);
}

fn bar_style() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

fn draw_title(frame: &mut Frame, app: &App, area: Rect, shown: usize) {
    let total = app.interfaces.len();
    let order = if app.reverse { "↑" } else { "↓" };
    // Most important first; whatever does not fit is left out.
    let mut parts = vec![
        " macdrop top".to_owned(),
        if shown == total {
            format!("{total} iface")
        } else {
            format!("{shown}/{total} iface")
        },
        format!("sort {}{order}", app.sort.label()),
    ];
    if !app.filter.is_empty() {
        parts.push(format!("filter {}", app.filter));
    }
    let when = app
        .last_report
        .map(|ts| clock(ts).chars().take(8).collect::<String>())
        .unwrap_or_else(|| "--:--:--".into());
    parts.push(format!(
        "{when} every {}s",
        trim_float(app.interval.as_secs_f64())
    ));
    if let Err(why) = &app.drop_source
        && app.reports > 0
    {
        parts.push(format!("drops n/a: {why}"));
    }
    let mut text = String::new();
    for part in parts {
        let candidate = if text.is_empty() {
            part
        } else {
            format!("{text} │ {part}")
        };
        if candidate.chars().count() > usize::from(area.width) && !text.is_empty() {
            continue;
        }
        text = candidate;
    }
    frame.render_widget(Paragraph::new(text).style(bar_style()), area);
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

fn draw_table(frame: &mut Frame, app: &App, rows: &[&Interface], area: Rect) {
    if area.height == 0 {
        return;
    }
    let name_width = rows
        .iter()
        .map(|i| display_name(i).chars().count() + if i.gone { 7 } else { 0 })
        .max()
        .unwrap_or(0)
        .clamp(5, 20) as u16;
    let cols = columns(area.width, name_width);
    let header = Row::new(cols.iter().map(|(c, _)| {
        let style = if c.sorted_by(app.sort) {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        let line = Line::styled(c.header(), style);
        Cell::from(if c.numeric() {
            line.right_aligned()
        } else {
            line
        })
    }));
    let body: Vec<Row> = rows
        .iter()
        .map(|i| Row::new(cells(i, &cols)).height(2))
        .collect();
    let empty = body.is_empty();
    let table = Table::new(body, cols.iter().map(|(_, w)| Constraint::Length(*w)))
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::new().with_selected((!empty).then_some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
    if empty && area.height > 1 {
        let msg = if app.reports == 0 {
            "waiting for the first report…"
        } else if app.filter.is_empty() {
            "no interface watched"
        } else {
            "no interface matches the filter (Esc clears it)"
        };
        let line = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        frame.render_widget(Paragraph::new(format!(" {msg}")), line);
    }
}

fn draw_sparklines(frame: &mut Frame, app: &App, rows: &[&Interface], area: Rect) {
    if area.height == 0 {
        return;
    }
    let mut lines = vec![Line::styled(
        truncate(
            " MISMATCH/s  (bridge, standalone: FOREIGN; port: WRONG_MAC)",
            area.width,
        ),
        bar_style(),
    )];
    let name_width = rows
        .iter()
        .map(|i| display_name(i).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 20);
    // The sparkline takes what the name and the numbers leave.
    let numbers_width = " now 12345 max 12345".len();
    let spark_width = usize::from(area.width)
        .saturating_sub(name_width + 1 + numbers_width)
        .max(4);
    for i in rows.iter().take(usize::from(area.height) - 1) {
        let samples: Vec<f64> = app
            .history
            .get(&key(i))
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        let max = samples.iter().copied().fold(0.0, f64::max);
        let name = truncate(&display_name(i), name_width as u16);
        lines.push(Line::from(vec![
            Span::raw(format!("{name:<name_width$} ")),
            Span::raw(sparkline(&samples, spark_width)),
            Span::raw(format!(
                " now {:>5} max {:>5}",
                rate(mismatch_rate(i)),
                rate(max)
            )),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// At most this many offenders are shown (the rest are in `watch`'s table
/// and JSON).
const OFFENDER_LINES: u16 = 3;

/// Whose top offenders to show: the selected interface's if it has any,
/// else those of the interface with the most frames in its flows.
fn offenders_of<'a>(app: &App, rows: &[&'a Interface]) -> Option<(&'a Interface, &'a [Flow])> {
    let flows = |i: &'a Interface| i.flows.as_deref().filter(|f| !f.is_empty()).map(|f| (i, f));
    rows.get(app.selected).and_then(|i| flows(i)).or_else(|| {
        rows.iter()
            .filter_map(|i| flows(i))
            .max_by_key(|(_, f)| f.iter().map(|fl| fl.frames).sum::<u64>())
    })
}

fn draw_offenders(frame: &mut Frame, i: &Interface, flows: &[Flow], area: Rect) {
    if area.height == 0 {
        return;
    }
    let mut lines = vec![Line::styled(
        truncate(
            &format!(
                " TOP OFFENDERS {}  (frames: source > destination MAC, VLAN, IP)",
                display_name(i)
            ),
            area.width,
        ),
        bar_style(),
    )];
    for f in flows.iter().take(usize::from(area.height) - 1) {
        lines.push(Line::from(truncate(
            &format!(
                "{:>6} {}",
                format!("{}{}", f.count_mark(), count(f.frames)),
                f.describe()
            ),
            area.width,
        )));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_events(frame: &mut Frame, app: &App, area: Rect) {
    if area.height == 0 {
        return;
    }
    let mut lines = vec![Line::styled(
        truncate(" EVENTS (newest last)", area.width),
        bar_style(),
    )];
    let room = usize::from(area.height) - 1;
    let skip = app.events.len().saturating_sub(room);
    for e in app.events.iter().skip(skip) {
        lines.push(Line::from(format!("{} {}", clock(e.ts), e.text)));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let text = match &app.editing {
        Some(typed) => {
            format!(" filter: {typed}▏  Enter apply · Esc clear")
        }
        None => " q quit · s sort · r reverse · / filter · Esc clear · ↑↓ select".to_owned(),
    };
    frame.render_widget(Paragraph::new(text).style(bar_style()), area);
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use monitor_common::FrameCounters;
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::{
        mac::Mac,
        model::World,
        topology::Role,
        tracker::{Event, EventKind},
    };

    fn lab() -> Vec<Interface> {
        let mut br0 = Interface::new("br0".into(), 2, 1, Role::Bridge, None);
        br0.mac = Some(Mac([2, 0, 0, 0, 0x0b, 1]));
        br0.promisc = true;
        br0.promiscuity = 1;
        let mut p1 = Interface::new("p1".into(), 3, 1, Role::Port, Some("br0".into()));
        p1.frames = FrameCounters {
            total: 1_234_567,
            own: 3,
            broadcast: 5,
            multicast: 4,
            foreign_unicast: 1_234_555,
            host_ip_wrong_mac: 9,
            stale_mac: 2,
            ..Default::default()
        };
        p1.rates.set(Class::HostIpWrongMac, 4.5);
        p1.promisc = true;
        p1.promiscuity = 1;
        p1.drops = Some(BTreeMap::from([("NO_TX_TARGET".to_owned(), 9)]));
        p1.workload = Some(crate::workload::Workload {
            kind: crate::workload::Kind::Docker,
            id: Some("3f2a1b9c0d4e".into()),
            name: Some("web1".into()),
            namespace: None,
            pod: None,
            pid: Some(42),
            compose_project: None,
            compose_service: None,
        });
        let p2 = Interface::new("p2".into(), 4, 1, Role::Port, Some("br0".into()));
        vec![br0, p1, p2]
    }

    fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, app)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    }

    /// Names from the kernel and events about them are shown escaped:
    /// ratatui would drop a raw ESC silently, hiding that it is there.
    #[test]
    fn hostile_names_are_shown_escaped() {
        let hostile = "b\x1b[31mr\x07";
        let mut interfaces = lab();
        interfaces[0].name = hostile.into();
        interfaces[1].master = Some(hostile.into());
        let mut app = App::new(Duration::from_secs(1));
        app.update(World {
            ts: SystemTime::UNIX_EPOCH + Duration::from_secs(3600),
            interfaces,
            events: vec![Event {
                ts: SystemTime::UNIX_EPOCH,
                ifname: hostile.into(),
                ifindex: 2,
                kind: EventKind::PromiscEntered { from: 0, to: 1 },
            }],
            drop_source: Ok("tp_btf"),
            self_stats: None,
            evidence: None,
        });
        app.note(SystemTime::UNIX_EPOCH, format!("macdrop: {hostile} note"));
        let text = screen(&app, 160, 30).join("\n");
        let shown = r"b\u{1b}[31mr\u{7}";
        assert!(
            text.contains(&format!("{shown} entered promiscuous mode")),
            "{text}"
        );
        assert!(text.contains(&format!("{shown} note")), "{text}");
        assert!(
            text.lines().filter(|l| l.contains(shown)).count() >= 3,
            "the bridge's row and its port's master column too:\n{text}"
        );
    }

    fn app() -> App {
        let mut app = App::new(Duration::from_secs(1));
        app.update(World {
            ts: SystemTime::UNIX_EPOCH + Duration::from_secs(3600),
            interfaces: lab(),
            events: vec![Event {
                ts: SystemTime::UNIX_EPOCH,
                ifname: "br0".into(),
                ifindex: 2,
                kind: EventKind::PromiscEntered { from: 0, to: 1 },
            }],
            drop_source: Ok("tp_btf"),
            self_stats: None,
            evidence: None,
        });
        app
    }

    #[test]
    fn every_class_fits_in_80_columns() {
        let lines = screen(&app(), 80, 24);
        let text = lines.join("\n");
        assert!(
            lines[0].contains("macdrop top │ 3 iface │ sort IFACE↓ │ 01:00:00 every 1s"),
            "{text}"
        );
        let header: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "IFACE",
                "MASTER",
                "PROMISC",
                "TOTAL",
                "OWN",
                "BCAST",
                "MCAST",
                "FOREIGN",
                "WRONG_MAC",
                "STALE",
                "DROPS"
            ],
            "{text}"
        );
        let p1: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(
            p1,
            [
                "p1", "br0", "yes(1)", "1.2M", "3", "5", "4", "1.2M", "9", "2", "9"
            ]
        );
        assert_eq!(lines[5].split_whitespace().next(), Some("/s"));
        assert!(lines[5].contains("4.5"));
        // Right-aligned: WRONG_MAC's last digit under the header's last letter.
        assert_eq!(
            lines[1].find("WRONG_MAC").unwrap() + "WRONG_MAC".len(),
            lines[4].find(" 9 ").unwrap() + 2
        );
        let spark = lines.iter().position(|l| l.contains("MISMATCH/s")).unwrap();
        assert!(
            lines[spark + 2].starts_with("p1 ")
                && lines[spark + 2].ends_with("now   4.5 max   4.5")
        );
        assert!(lines[spark + 2].contains('█'));
        assert!(text.contains("00:00:00.000 br0 entered promiscuous mode, promiscuity 0 -> 1"));
        assert!(lines[23].contains("q quit"));
        assert!(lines.iter().all(|l| l.chars().count() <= 80));
    }

    #[test]
    fn offenders_of_the_selected_interface_fit_in_80x24() {
        let mut app = app();
        let flow = |last: u8, frames| Flow {
            src_mac: Mac([2, 0, 0, 0, 0x0c, last]),
            dst_mac: Mac([0, 0x50, 0x56, 0xaa, 0xbb, 0xcc]),
            vlan: Some(10),
            dst_ip: Some("2001:db8:ffff:ffff:ffff:ffff:ffff:1".parse().unwrap()),
            frames,
            bytes: 0,
            first_seen: SystemTime::UNIX_EPOCH,
            last_seen: SystemTime::UNIX_EPOCH,
            mismatch: monitor_common::MISMATCH_HOST_IP,
            exact: true,
            sampled: false,
        };
        let mut world_lab = lab();
        world_lab[1].flows = Some((1..=5).rev().map(|n| flow(n, u64::from(n))).collect());
        app.update(World {
            ts: SystemTime::UNIX_EPOCH + Duration::from_secs(3601),
            interfaces: world_lab,
            events: Vec::new(),
            drop_source: Ok("tp_btf"),
            self_stats: None,
            evidence: None,
        });
        // br0 is selected and has none: p1's are shown.
        let lines = screen(&app, 80, 24);
        let at = lines
            .iter()
            .position(|l| l.starts_with(" TOP OFFENDERS p1"))
            .unwrap_or_else(|| panic!("{lines:#?}"));
        assert!(
            lines[at + 1]
                .starts_with("     5 02:00:00:00:0c:05 > 00:50:56:aa:bb:cc (VMware) vlan 10"),
            "{lines:#?}"
        );
        assert!(lines[at + 3].starts_with("     3 "));
        assert!(lines[at + 4].contains("EVENTS"), "3 offenders, then events");
        assert!(lines.iter().all(|l| l.chars().count() <= 80));
        assert!(lines[23].contains("q quit"));
    }

    #[test]
    fn narrow_terminals_keep_the_alarm_columns() {
        let lines = screen(&app(), 50, 12);
        let header: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            header,
            ["IFACE", "PROMISC", "TOTAL", "FOREIGN", "WRONG_MAC", "DROPS"],
            "{lines:#?}"
        );
        // Wide terminals add the identity columns.
        let wide = screen(&app(), 160, 24);
        let header: Vec<&str> = wide[1].split_whitespace().collect();
        assert_eq!(header.len(), 17, "{header:?}");
        assert_eq!(header[3], "WORKLOAD", "{header:?}");
        let p1: Vec<&str> = wide[4].split_whitespace().collect();
        assert_eq!(p1[..4], ["p1", "port", "br0", "web1"], "{wide:#?}");
        // A port without an owner, and the bridge, show a dash.
        assert_eq!(wide[2].split_whitespace().nth(3), Some("-"), "{wide:#?}");
        assert!(wide[4].contains("02:00:00:00:0b:01") || wide[2].contains("02:00:00:00:0b:01"));
        // Tiny terminals do not panic.
        for (w, h) in [(1, 1), (10, 3), (20, 5), (80, 4)] {
            screen(&app(), w, h);
        }
    }

    #[test]
    fn every_column_once_with_a_rank_of_its_own() {
        for (at, col) in ORDER.iter().enumerate() {
            assert!(!ORDER[at + 1..].contains(col), "{col:?} twice");
        }
        let mut ranks: Vec<u8> = ORDER.iter().map(|c| c.priority()).collect();
        ranks.sort();
        ranks.dedup();
        assert_eq!(
            ranks.len(),
            ORDER.len(),
            "the narrow-terminal order is total"
        );
        assert_eq!(
            ORDER.iter().min_by_key(|c| c.priority()),
            Some(&Col::Iface),
            "the name goes first"
        );
    }

    #[test]
    fn many_interfaces_leave_room_for_events() {
        let (t, s, e) = heights(30, 22);
        assert_eq!(t + s + e, 22);
        assert!(e >= 4 && t >= 3, "{t} {s} {e}");
        assert_eq!(heights(3, 22), (7, 4, 11));
    }

    #[test]
    fn numbers_stay_short() {
        assert_eq!(count(999_999), "999999");
        assert_eq!(count(1_234_567), "1.2M");
        assert_eq!(count(12_345_678_901), "12G");
        assert_eq!(rate(0.0), "0.0");
        assert_eq!(rate(99.94), "99.9");
        assert_eq!(rate(1234.4), "1234");
        assert_eq!(rate(123_456.0), "123k");
        assert_eq!(sparkline(&[0.0, 1.0, 4.0, 8.0], 6), "   ▁▄█");
        assert_eq!(sparkline(&[8.0; 10], 3), "███");
        assert_eq!(sparkline(&[], 2), "  ");
    }
}
