//! Link-time settings of the eBPF object (the build itself is
//! `monitor/build.rs`, through aya-build, which owns the rustflags).
//!
//! `allows-misaligned-mem-access`: lets LLVM read a multi-byte header field
//! of the frame with one load instead of one load per byte (a MAC was six
//! loads and five shifts, an IPv6 address sixteen). The verifier accepts
//! such loads from packet data on every architecture with efficient
//! unaligned access (x86-64, arm64), the ones macdrop is built for.
fn main() {
    println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
}
