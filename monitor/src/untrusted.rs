//! Text macdrop did not write (from the kernel, other processes, files),
//! made safe before a terminal sees it: control characters escaped, so
//! such text cannot move the cursor, change colours or fake a line of its
//! own. One place, so every reader escapes the same way.

/// `text` with every control character escaped (`\n`, `\u{1b}`).
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("a\nb\x1b[2Jç"), "a\\nb\\u{1b}[2Jç");
        assert_eq!(escape_controls(""), "");
    }
}
