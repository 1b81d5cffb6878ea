//! The running kernel's version, for the few facts that depend on it and
//! cannot be probed directly.

use std::sync::OnceLock;

/// (major, minor) from uname(2); (0, 0) if it cannot be read.
pub fn running() -> (u32, u32) {
    static VERSION: OnceLock<(u32, u32)> = OnceLock::new();
    *VERSION.get_or_init(|| release().map_or((0, 0), |r| parse_release(&r)))
}

/// uname(2)'s release ("6.18.44-fc-v595"), escaped for a terminal.
pub fn release() -> Option<String> {
    // SAFETY: utsname is plain C data, for which all zeroes is valid.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct it is given.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    // SAFETY: after a successful uname, release is NUL-terminated.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    Some(crate::untrusted::escape_controls(
        &release.to_string_lossy(),
    ))
}

/// "6.18.44-fc-v595" -> (6, 18).
pub fn parse_release(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// `rx_otherhost_dropped` exists in `rtnl_link_stats64` since Linux 5.19.
pub fn has_otherhost_counter() -> bool {
    running() >= (5, 19)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distribution_release_strings() {
        assert_eq!(parse_release("6.18.44-fc-v595"), (6, 18));
        assert_eq!(parse_release("5.10.0-28-cloud-amd64"), (5, 10));
        assert_eq!(parse_release("6.1.0"), (6, 1));
        assert_eq!(parse_release("garbage"), (0, 0));
    }
}
