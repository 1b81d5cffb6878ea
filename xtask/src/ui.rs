//! How xtask reports progress: phase headers with a wall-clock timestamp and
//! human-readable durations.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Prints `xtask: ==> [HH:MM:SS UTC] <name>`, the start of a phase.
pub fn phase(name: &str) {
    println!("xtask: ==> [{} UTC] {name}", clock(SystemTime::now()));
}

/// `HH:MM:SS` (UTC) of `time`.
fn clock(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `4.2s`, `3m07s`, `1h02m03s`.
pub fn duration(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    if secs < 60 {
        format!("{:.1}s", elapsed.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_millis(4_240)), "4.2s");
        assert_eq!(duration(Duration::from_secs(187)), "3m07s");
        assert_eq!(duration(Duration::from_secs(3_723)), "1h02m03s");
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        let t = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 3_723);
        assert_eq!(clock(t), "01:02:03");
    }
}
