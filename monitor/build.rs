//! Builds the eBPF programs in `monitor-ebpf` for the BPF target with
//! aya-build (the aya template pattern) and leaves the object in OUT_DIR,
//! where `src/kernel/loader.rs` embeds it; and records what `--version`
//! says about the build (`src/version.rs`): the git revision, the build
//! date (`SOURCE_DATE_EPOCH` when set, for reproducible builds), the aya
//! version from Cargo.lock and the target.
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
    build_info(root)?;
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

/// `MACDROP_GIT_REVISION`, `MACDROP_BUILD_DATE`, `MACDROP_AYA_VERSION`,
/// `MACDROP_TARGET` for `env!`.
fn build_info(root: &Path) -> anyhow::Result<()> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    // The commit built from (uncommitted changes are not marked: cargo
    // would not rerun this for them). A source tarball has no repository.
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // A new commit or checkout changes HEAD (or the ref it points to).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for file in ["HEAD", "index", "packed-refs"] {
            println!("cargo:rerun-if-changed={dir}/{file}");
        }
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let common = git(&["rev-parse", "--git-common-dir"]).unwrap_or(dir.clone());
            let common = root.join(common);
            println!("cargo:rerun-if-changed={}", common.join(head_ref).display());
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(secs) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.trim().parse()?),
        Err(_) => std::time::SystemTime::now(),
    };
    let date = humantime::format_rfc3339_seconds(date).to_string();
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let lock: toml::Table = toml::from_str(&std::fs::read_to_string(&lock)?)?;
    let aya = lock
        .get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some("aya"))
        .and_then(|p| p.get("version")?.as_str())
        .unwrap_or("unknown")
        .to_owned();
    println!("cargo:rustc-env=MACDROP_GIT_REVISION={revision}");
    println!("cargo:rustc-env=MACDROP_BUILD_DATE={}", &date[..10]);
    println!("cargo:rustc-env=MACDROP_AYA_VERSION={aya}");
    println!(
        "cargo:rustc-env=MACDROP_TARGET={}",
        std::env::var("TARGET")?
    );
    Ok(())
}
