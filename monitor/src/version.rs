//! `macdrop --version`: what was built (like `bpftool -V`) and what this
//! kernel offers macdrop, so a bug report carries both in one paste. Needs
//! no privilege: the kernel's facts come from uname(2) and its BTF file,
//! which every user may read.

use std::path::Path;

use crate::kernel::drops::{DropLayer, VMLINUX_BTF};

/// The first line, as clap's `--version` would print it.
pub const SHORT: &str = concat!("macdrop ", env!("CARGO_PKG_VERSION"));

/// Every line of `--version`.
pub fn long() -> String {
    let mut out = build();
    out.push_str(&kernel());
    out
}

/// The build: version, revision, date, aya, target.
pub fn build() -> String {
    format!(
        "{SHORT}\nrevision: {}\nbuilt: {}\naya: {}\ntarget: {}\n",
        env!("MACDROP_GIT_REVISION"),
        env!("MACDROP_BUILD_DATE"),
        env!("MACDROP_AYA_VERSION"),
        env!("MACDROP_TARGET"),
    )
}

/// The running kernel and the features macdrop uses where it has them.
fn kernel() -> String {
    let version = crate::kernel_version::running();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let btf = Path::new(VMLINUX_BTF).exists();
    let drops = match DropLayer::prepare() {
        Ok(_) => "yes (confirmed drops with their reasons)".to_owned(),
        Err(why) => format!("no: {why}"),
    };
    format!(
        "kernel: {}\n  btf: {}\n  tcx: {} (else tc clsact; Linux >= 6.6)\n  \
         drop reasons: {drops}\n  rx_otherhost_dropped: {} (Linux >= 5.19)\n",
        crate::kernel_version::release().unwrap_or_else(|| "unknown".into()),
        yes_no(btf),
        yes_no(version >= (6, 6)),
        yes_no(crate::kernel_version::has_otherhost_counter()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_build_and_the_kernel() {
        let text = long();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], SHORT);
        for key in [
            "revision: ",
            "built: ",
            "aya: ",
            "target: ",
            "kernel: ",
            "  btf: ",
        ] {
            assert!(lines.iter().any(|l| l.starts_with(key)), "{key} in\n{text}");
        }
        // The aya version comes from Cargo.lock, never "unknown".
        assert!(!text.contains("aya: unknown"), "{text}");
        assert!(text.contains(&format!("target: {}", env!("MACDROP_TARGET"))));
    }
}
