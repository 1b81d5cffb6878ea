//! Small pieces of wording the rules' findings and the renderers share:
//! times, lists, seconds, kernel drop counts.

use std::time::SystemTime;

/// "10:14:03.512Z"
pub fn clock(ts: SystemTime) -> String {
    let s = humantime::format_rfc3339_millis(ts).to_string();
    s.get(11..).unwrap_or(&s).to_owned()
}

pub fn rfc3339(ts: SystemTime) -> String {
    humantime::format_rfc3339_millis(ts).to_string()
}

/// "10", "2.5"
pub fn secs(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// "a, b, c"
pub fn list<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// "first counted 10:14:03.512Z, last 10:14:04.001Z", or "" without times.
pub fn span(first: Option<SystemTime>, last: Option<SystemTime>) -> String {
    match (first, last) {
        (Some(a), Some(b)) if a == b => format!("counted at {}", clock(a)),
        (Some(a), Some(b)) => format!("first counted {}, last {}", clock(a), clock(b)),
        _ => String::new(),
    }
}

/// "9 NO_TX_TARGET, 2 OTHERHOST", from the non-zero MAC-mismatch drop
/// reasons; None when there are none.
pub fn drops_text(drops: &[(&str, u64)]) -> Option<String> {
    let parts: Vec<String> = drops.iter().map(|(r, n)| format!("{n} {r}")).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `line`, then "; kernel confirmed drops: ..." when the kernel confirmed
/// some.
pub fn with_drops(mut line: String, drops: &[(&str, u64)]) -> String {
    if let Some(d) = drops_text(drops) {
        line.push_str("; kernel confirmed drops: ");
        line.push_str(&d);
    }
    line
}
