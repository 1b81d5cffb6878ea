//! Interface names given on the command line or in a configuration file,
//! checked as the kernel checks a name it is asked to create
//! (`dev_valid_name`, net/core/dev.c): a name the kernel could never have
//! is a usage error here, not an "unknown interface" later.

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Why `name` cannot be an interface name, or None if it can: non-empty,
/// at most `IFNAME_MAX` bytes, not `.` or `..`, and no `/`, `:`, NUL or
/// whitespace (the kernel's `isspace`: space, \t \n \v \f \r and the
/// Latin-1 no-break space byte 0xA0). The reason quotes the name escaped.
pub fn invalid(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("an interface name cannot be empty".into());
    }
    if name.len() > IFNAME_MAX {
        return Some(format!(
            "{name:?} is {} bytes; Linux interface names are at most {IFNAME_MAX}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not a valid interface name"));
    }
    let bad = name
        .bytes()
        .find(|b| matches!(b, b'/' | b':' | b'\0' | b' ' | b'\t'..=b'\r' | 0xa0));
    bad.map(|b| {
        let what = match b {
            b'/' | b':' => format!("{:?}", char::from(b)),
            b'\0' => "NUL".to_owned(),
            0xa0 => "the byte 0xA0".to_owned(),
            _ => "whitespace".to_owned(),
        };
        format!("{name:?} is not a valid interface name: Linux names contain no {what}")
    })
}

#[cfg(test)]
mod tests {
    use super::invalid;

    #[test]
    fn names_the_kernel_accepts_pass() {
        // Control characters other than whitespace are legal names.
        for ok in [
            "br0",
            "p1.20",
            "a\x1b[31mb",
            "x\x07",
            "é",
            "fifteen-bytes-x",
            "-",
            "...",
        ] {
            assert_eq!(invalid(ok), None, "{ok:?}");
        }
    }

    #[test]
    fn names_the_kernel_refuses_fail() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "eth0:1",
            "a b",
            "a\tb",
            "a\nb",
            "a\x0bb",
            "a\x0cb",
            "a\rb",
            "a\0b",
            "sixteen-bytes-xx",
            "\u{a0}",
            "à",
        ] {
            assert!(invalid(bad).is_some(), "{bad:?}");
        }
        assert_eq!(
            invalid("a\x1bb:").as_deref(),
            Some(r#""a\u{1b}b:" is not a valid interface name: Linux names contain no ':'"#)
        );
    }
}
