//! Renderers: turn a `World` into text. They never read the kernel.

pub mod json;
mod numbers;
pub mod status;
pub mod table;

pub use numbers::Numbers;

/// The first field of every JSON document macdrop prints (`watch`'s lines,
/// `status`, `diagnose`): which schema it follows (docs/schema/). The
/// number goes up when a field is renamed or removed, or changes meaning;
/// adding a field does not change it.
pub const SCHEMA: &str = "macdrop/1";

/// Rows of cells as aligned text columns, two spaces apart, one line per
/// row (trailing spaces trimmed); columns for which `right` says so are
/// right-aligned (numbers), the others left-aligned. Shared by the watch
/// table, `status` and `diagnose`, so all three line up the same way.
pub fn columns<const N: usize>(rows: &[[String; N]], right: impl Fn(usize) -> bool) -> String {
    use std::fmt::Write as _;
    // Cells may hold names from the kernel: aligned as they will be shown.
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|row| {
            row.clone()
                .map(|cell| crate::untrusted::escape_controls(&cell))
        })
        .collect();
    let mut widths = [0usize; N];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (col, (cell, w)) in row.iter().zip(widths).enumerate() {
            if col > 0 {
                line.push_str("  ");
            }
            if right(col) {
                let _ = write!(line, "{cell:>w$}");
            } else {
                let _ = write!(line, "{cell:<w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_text_left_and_numbers_right() {
        let rows = [
            ["IFACE".to_owned(), "TOTAL".to_owned(), "".to_owned()],
            ["p1".to_owned(), "7".to_owned(), "".to_owned()],
            ["bridge0".to_owned(), "12345".to_owned(), "".to_owned()],
        ];
        assert_eq!(
            super::columns(&rows, |col| col == 1),
            "IFACE    TOTAL\np1           7\nbridge0  12345\n"
        );
    }
}
