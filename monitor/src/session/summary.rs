//! What a session tells the user about itself: the start-up line, where
//! drops come from, its programs' run-time statistics.

use super::*;

impl Session {
    /// Adds this session's programs' run-time statistics into `into`.
    pub fn add_program_stats(
        &self,
        into: &mut std::collections::BTreeMap<String, crate::kernel::self_stats::ProgramStats>,
    ) {
        crate::kernel::self_stats::add_program_stats(&self.ebpf, into);
    }

    pub fn drop_source(&self) -> Result<&'static str, String> {
        self.drops
            .as_ref()
            .map(|d| d.hook.as_str())
            .map_err(Clone::clone)
    }

    /// "3 interface(s) in netns ...: p1 (port of br0, tcx), ..." for the
    /// start-up line: every present interface, or on a big bridge the first
    /// few and a count per hook, so one stderr line stays readable.
    pub fn summary(&self) -> String {
        let present: Vec<(String, &'static str)> = self
            .members
            .iter()
            .filter(|m| m.slot.is_some())
            .map(|m| {
                let hook = m.model.hook.map(|h| h.as_str()).unwrap_or("-");
                let what = match m.watched.master() {
                    Some(master) => format!("{} (port of {master}, {hook})", m.watched.name),
                    None => format!("{} ({}, {hook})", m.watched.name, m.watched.role.as_str()),
                };
                (what, hook)
            })
            .collect();
        format!(
            "{} interface(s) in {}: {}",
            present.len(),
            self.ns.describe(),
            summarize(&present)
        )
    }
}

/// Interfaces listed in full on the start-up line; beyond, the first of
/// them and a count per hook (`macdrop status` and the reports list all).
const LISTED: usize = 12;

/// The start-up line's list of (description, hook).
fn summarize(present: &[(String, &'static str)]) -> String {
    if present.len() <= LISTED {
        return present
            .iter()
            .map(|(what, _)| what.as_str())
            .collect::<Vec<_>>()
            .join(", ");
    }
    let shown = LISTED - 2;
    let mut by_hook: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, hook) in present {
        *by_hook.entry(hook).or_default() += 1;
    }
    let hooks: Vec<String> = by_hook.iter().map(|(h, n)| format!("{n} {h}")).collect();
    let first: Vec<&str> = present[..shown].iter().map(|(w, _)| w.as_str()).collect();
    format!(
        "{}, and {} more (hooks: {})",
        first.join(", "),
        present.len() - shown,
        hooks.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    pub(super) fn a_long_start_up_list_is_cut_with_a_count_per_hook() {
        let few: Vec<(String, &str)> = (1..=3).map(|i| (format!("p{i}"), "tcx")).collect();
        assert_eq!(summarize(&few), "p1, p2, p3");
        let mut many: Vec<(String, &str)> = (1..=1000).map(|i| (format!("p{i}"), "tcx")).collect();
        many.push(("br0".into(), "xdp-generic"));
        assert_eq!(
            summarize(&many),
            "p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, and 991 more (hooks: 1000 tcx, 1 xdp-generic)"
        );
    }
}
