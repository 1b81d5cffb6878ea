//! Builds the eBPF programs in `monitor-ebpf` for the BPF target with
//! aya-build (the aya template pattern) and leaves the object in OUT_DIR,
//! where `src/kernel/loader.rs` embeds it.
//!
//! monitor-ebpf is deliberately not a build-dependency: that would compile
//! it for the host. Cargo is told to rerun this script when the eBPF crate
//! or the shared types change.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow::anyhow!("monitor/ has no parent directory"))?;
    let ebpf_dir = root.join("monitor-ebpf");
    let common_dir = root.join("monitor-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
