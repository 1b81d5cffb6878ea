//! Text macdrop did not write (from the kernel, other processes, files),
//! made safe before a terminal sees it: control characters escaped, so
//! such text cannot move the cursor, change colours, ring the bell or fake
//! a line of its own. One place, so every reader escapes the same way.
//!
//! Interface names (netlink: a process with CAP_NET_ADMIN in any namespace
//! may put ESC or BEL in one), process names (`/proc/PID/comm`: any process
//! sets its own), namespace names and paths reach the terminal only through
//! here. Where: every human-readable output is escaped as a whole at its
//! sink (`for_terminal`: the table, `status` and `diagnose` text on stdout,
//! every `macdrop: ...` line on stderr through `output::note`), and table cells
//! once more in `render::columns` so that the escaped form is what the
//! columns are aligned to; the full-screen view escapes its cells (`tui`).
//! Escaping twice changes nothing (the escaped form has no control left).
//!
//! Why not a newtype for untrusted strings: the same names are map keys,
//! compared with arguments, and written exactly to JSON (serde escapes
//! controls there) and to metric labels; a newtype would have to be
//! unwrapped in all of those places, and any `format!` of the unwrapped
//! string into an error message would still leak. Escaping at the few
//! sinks every text passes through cannot be forgotten by a new field.
//! JSON output and metrics never pass through here: they stay exact.

/// `text` with every control character escaped (`\n`, `\u{1b}`, `\u{9b}`):
/// C0, DEL and C1 controls, and the Unicode format characters that reorder
/// or break what a terminal shows (bidirectional overrides and isolates,
/// line and paragraph separators). Text that was not valid UTF-8 arrived
/// here already decoded lossily (U+FFFD), which is printable.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Multi-line text for a terminal: every line escaped by `escape_controls`,
/// the line breaks between them kept.
pub fn for_terminal(text: &str) -> String {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return text.to_owned();
    }
    text.split('\n')
        .map(escape_controls)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Bytes that may not be UTF-8 (a file, a kernel string), for a terminal.
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape_controls(&String::from_utf8_lossy(bytes))
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' // left-to-right and right-to-left marks
                | '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
                | '\u{2066}'..='\u{2069}' // bidirectional isolates
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("a\nb\x1b[2Jç"), "a\\nb\\u{1b}[2Jç");
        assert_eq!(escape_controls(""), "");
        // BEL, DEL, the C1 CSI (a one-character ESC [), a right-to-left override.
        assert_eq!(
            escape_controls("\x07\x7f\u{9b}31m\u{202e}x"),
            "\\u{7}\\u{7f}\\u{9b}31m\\u{202e}x"
        );
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let once = escape_controls("a\x1b]0;title\x07b");
        assert_eq!(escape_controls(&once), once);
    }

    #[test]
    fn lines_keep_their_breaks() {
        assert_eq!(for_terminal("a\x1bb\nc\td\n"), "a\\u{1b}b\nc\\td\n");
        assert_eq!(for_terminal("plain\ntext\n"), "plain\ntext\n");
    }

    #[test]
    fn invalid_utf8_is_shown_not_passed_through() {
        assert_eq!(escape_bytes(b"a\xff\x1bb"), "a\u{fffd}\\u{1b}b");
    }
}
