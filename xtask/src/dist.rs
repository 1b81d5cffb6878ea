//! `cargo xtask dist`: the release artifacts, in target/dist/.
//!
//! - `macdrop-VERSION-x86_64-linux-musl`: one static binary (musl, not
//!   position-independent, so no dynamic section and no interpreter), the
//!   eBPF object embedded by monitor/build.rs as in every build;
//! - `macdrop_VERSION-1_amd64.deb` (cargo-deb, `[package.metadata.deb]`
//!   in monitor/Cargo.toml): that binary as /usr/bin/macdrop, the systemd
//!   unit, its environment file (a conffile) and the example configuration;
//! - `macdrop-VERSION.oci.tar`: an OCI image archive built by buildah from
//!   deploy/Containerfile (`FROM scratch` plus that binary, no registry),
//!   labelled with the version, the git revision and the source;
//! - `SHA256SUMS` over the three.
//!
//! The image's digest is written into deploy/kubernetes/kustomization.yaml
//! (`images:`), so the manifests deploy exactly the image built here. The
//! digest cannot be committed in the commit it was built from (the image
//! carries that commit's revision), so dist rewrites the file and the
//! release commits it; `tests/tests/deploy/dist.rs` checks that the file
//! names the archive's digest. A rebuild of one commit in the same place
//! gives the same digest: the image's and the package's timestamps are the
//! commit's time (`SOURCE_DATE_EPOCH`), and the host code's paths are
//! remapped (the embedded eBPF object's BTF still names its source files'
//! paths, so another checkout directory gives another binary).
//!
//! Prerequisites, installed idempotently like `cargo xtask setup`'s (which
//! runs first): the musl target of rustup, cargo-deb at a pinned version,
//! and Debian's buildah (podman for the tests that run the image).

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    cmd::{Cmd, probe, workspace_root},
    setup, ui,
};

/// The target of the static binary.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// Debian packages dist needs: musl-gcc (musl-tools) compiles ring's C for
/// the musl target, buildah builds the image, readelf (binutils) checks
/// the binary, git names the revision; podman runs the image in the tests.
pub const APT_PACKAGES: &[&str] = &["musl-tools", "buildah", "podman", "binutils", "git"];

/// cargo-deb, pinned: the .deb's layout does not change under us. 3.8.0
/// builds with the workspace's Rust (its rust-version is 1.85).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// The image's name in local storage and in the archive; the DaemonSet's
/// `image: macdrop` is mapped to it by the kustomization.
pub const IMAGE_NAME: &str = "localhost/macdrop";

/// Where the repository is published, for the image's source label.
const SOURCE_URL_KEY: &str = "repository";

/// The kustomization that references the image by digest.
pub const KUSTOMIZATION: &str = "deploy/kubernetes/kustomization.yaml";

pub fn run() -> Result<()> {
    let start = Instant::now();
    setup::run(&setup::Options::default())?;
    prerequisites()?;
    let facts = Facts::read()?;
    println!(
        "dist: macdrop {} revision {} (SOURCE_DATE_EPOCH={})",
        facts.version, facts.revision, facts.epoch
    );
    let target_dir = crate::cmd::target_dir()?;
    let out = target_dir.join("dist");
    // From a clean output: nothing of an earlier dist is shipped by mistake.
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    fs::create_dir_all(&out)?;

    let timed = |name: &str, step: &mut dyn FnMut() -> Result<PathBuf>| {
        ui::phase(&format!("dist: {name}"));
        let t = Instant::now();
        let path = step()?;
        println!(
            "dist: {name}: {} in {}",
            path.display(),
            ui::duration(t.elapsed())
        );
        Ok::<_, anyhow::Error>(path)
    };
    let built = timed("static binary", &mut || static_binary(&target_dir, &facts))?;
    let binary = out.join(format!("macdrop-{}-x86_64-linux-musl", facts.version));
    fs::copy(&built, &binary)?;
    let deb = timed("deb", &mut || deb(&target_dir, &out, &facts))?;
    let image = timed("image", &mut || image(&target_dir, &binary, &out, &facts))?;
    let names = [&binary, &deb, &image].map(|p| file_name(p));
    let sums = Cmd::new("sha256sum")
        .args(names.iter().copied())
        .output_in(Some(&out))?;
    fs::write(out.join("SHA256SUMS"), sums)?;
    println!(
        "dist: done in {}: {} (SHA256SUMS)",
        ui::duration(start.elapsed()),
        out.display()
    );
    Ok(())
}

/// What every artifact is labelled with.
struct Facts {
    /// The workspace version (monitor's).
    version: String,
    /// `git rev-parse HEAD`, with `-dirty` when the work tree has changes
    /// to tracked files (the artifacts then are not that commit's).
    revision: String,
    /// The commit's time, Unix seconds: every timestamp in the artifacts.
    epoch: String,
    /// The repository's URL (`repository` of the workspace package), if any.
    source: Option<String>,
}

impl Facts {
    fn read() -> Result<Self> {
        let metadata = probe("cargo", &["metadata", "--format-version", "1", "--no-deps"])
            .context("`cargo metadata` failed")?;
        let metadata: serde_json::Value =
            serde_json::from_str(&metadata).context("`cargo metadata` printed invalid JSON")?;
        let monitor = metadata["packages"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "monitor"))
            .context("`cargo metadata` lists no package monitor")?;
        let version = monitor["version"]
            .as_str()
            .context("package monitor has no version")?
            .to_owned();
        let source = monitor[SOURCE_URL_KEY].as_str().map(str::to_owned);
        let git = |args: &[&str]| {
            probe("git", args)
                .map(|s| s.trim().to_owned())
                .with_context(|| {
                    format!(
                        "`git {}` failed: dist needs the git checkout",
                        args.join(" ")
                    )
                })
        };
        let mut revision = git(&["rev-parse", "HEAD"])?;
        let changes = git(&["status", "--porcelain", "--untracked-files=no"])?;
        if !changes.is_empty() {
            println!(
                "dist: warning: the work tree has uncommitted changes; the artifacts are labelled {revision}-dirty"
            );
            revision.push_str("-dirty");
        }
        let epoch = git(&["log", "-1", "--format=%ct"])?;
        Ok(Self {
            version,
            revision,
            epoch,
            source,
        })
    }
}

// ---- prerequisites ---------------------------------------------------------

fn prerequisites() -> Result<()> {
    setup::ensure_packages(APT_PACKAGES)?;
    let targets = probe("rustup", &["target", "list", "--installed"])
        .context("`rustup target list --installed` failed")?;
    if targets.lines().any(|t| t.trim() == TARGET) {
        println!("setup: rust target {TARGET}: ok (already present)");
    } else {
        println!("setup: rust target {TARGET}: installing");
        Cmd::new("rustup").args(["target", "add", TARGET]).run()?;
    }
    let have = probe("cargo", &["deb", "--version"]);
    if have.as_deref().is_some_and(is_wanted_cargo_deb) {
        println!(
            "setup: cargo-deb: ok (already present: {})",
            have.unwrap_or_default().trim()
        );
    } else {
        println!("setup: cargo-deb: installing {CARGO_DEB_VERSION}");
        Cmd::cargo()
            .args([
                "install",
                "--locked",
                "--force",
                "cargo-deb",
                "--version",
                CARGO_DEB_VERSION,
            ])
            .run()?;
        let now = probe("cargo", &["deb", "--version"]);
        ensure!(
            now.as_deref().is_some_and(is_wanted_cargo_deb),
            "installed cargo-deb {CARGO_DEB_VERSION} but `cargo deb --version` reports {}; is ~/.cargo/bin first on PATH?",
            now.as_deref().map_or("nothing", str::trim)
        );
    }
    Ok(())
}

/// Whether `cargo deb --version` output (`cargo-deb 3.8.0`) is the pinned one.
fn is_wanted_cargo_deb(version_output: &str) -> bool {
    version_output.split_whitespace().nth(1) == Some(CARGO_DEB_VERSION)
}

// ---- the static binary -----------------------------------------------------

/// The musl target's RUSTFLAGS: a static executable that is not
/// position-independent (musl's default static-pie still has a dynamic
/// section for its self-relocation), and the build's paths remapped so a
/// checkout anywhere builds the same bytes. The target's own variable, so
/// these reach neither the build scripts nor aya-build's eBPF build.
fn musl_rustflags() -> String {
    let root = workspace_root().display().to_string();
    let cargo_home = std::env::var("CARGO_HOME")
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.cargo")))
        .unwrap_or_else(|| "/root/.cargo".to_owned());
    format!(
        "-C relocation-model=static --remap-path-prefix={root}=/macdrop --remap-path-prefix={cargo_home}=/cargo"
    )
}

fn rustflags_var() -> String {
    format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        TARGET.to_uppercase().replace('-', "_")
    )
}

fn static_binary(target_dir: &Path, facts: &Facts) -> Result<PathBuf> {
    Cmd::cargo()
        .env(&rustflags_var(), musl_rustflags())
        .env("SOURCE_DATE_EPOCH", &facts.epoch)
        .args([
            "build",
            "--locked",
            "--release",
            "--package",
            "monitor",
            "--bin",
            "macdrop",
            "--target",
            TARGET,
        ])
        .run()?;
    let bin = target_dir.join(TARGET).join("release/macdrop");
    check_static(&bin)?;
    Ok(bin)
}

/// `bin` has no dynamic section and no program interpreter: the kernel
/// runs it as is, with no shared library on the system.
pub fn check_static(bin: &Path) -> Result<()> {
    let path = bin.to_string_lossy();
    let dynamic = Cmd::new("readelf")
        .args(["--dynamic", &*path])
        .output_in(None)?;
    ensure!(
        dynamic.contains("There is no dynamic section in this file."),
        "{path} has a dynamic section:\n{dynamic}"
    );
    let headers = Cmd::new("readelf")
        .args(["--program-headers", &*path])
        .output_in(None)?;
    ensure!(
        !headers.contains("INTERP"),
        "{path} asks for a program interpreter:\n{headers}"
    );
    Ok(())
}

// ---- the .deb --------------------------------------------------------------

/// The unit as installed by the .deb. Debian packages install programs in
/// /usr/bin (/usr/local is the administrator's), where the repository's
/// unit runs /usr/local/bin/macdrop, the manual install's path.
pub const UNIT: &str = "deploy/systemd/macdrop.service";
const MANUAL_EXEC: &str = "ExecStart=/usr/local/bin/macdrop ";
const DEB_EXEC: &str = "ExecStart=/usr/bin/macdrop ";

/// The unit with the package's binary path: exactly one ExecStart changes.
pub fn deb_unit(unit: &str) -> Result<String> {
    ensure!(
        unit.lines().filter(|l| l.starts_with(MANUAL_EXEC)).count() == 1,
        "{UNIT}: expected exactly one line starting with {MANUAL_EXEC:?}"
    );
    Ok(unit
        .lines()
        .map(|l| match l.strip_prefix(MANUAL_EXEC) {
            Some(rest) => format!("{DEB_EXEC}{rest}\n"),
            None => format!("{l}\n"),
        })
        .collect())
}

fn deb(target_dir: &Path, out: &Path, facts: &Facts) -> Result<PathBuf> {
    // Generated assets go where cargo-deb's `target/release/` prefix
    // points for this target ([package.metadata.deb] assets).
    let generated = target_dir.join(TARGET).join("release/deb");
    if generated.exists() {
        fs::remove_dir_all(&generated)?;
    }
    fs::create_dir_all(&generated)?;
    let unit = fs::read_to_string(workspace_root().join(UNIT))
        .with_context(|| format!("reading {UNIT}"))?;
    fs::write(generated.join("macdrop.service"), deb_unit(&unit)?)?;
    // TODO(#17 item 3): man pages (clap_mangen) and shell completions
    // (clap_complete) are generated from the CLI definition by the binary
    // itself once it can; write them into `generated` here (man/,
    // completions/) and list them in [package.metadata.deb] assets.

    let deb = out.join(format!("macdrop_{}-1_amd64.deb", facts.version));
    Cmd::cargo()
        .env("SOURCE_DATE_EPOCH", &facts.epoch)
        .env(&rustflags_var(), musl_rustflags())
        .args([
            "deb",
            "--package",
            "monitor",
            "--target",
            TARGET,
            // Built above, with the flags above: the same bytes as the
            // static binary (and unstripped, like it).
            "--no-build",
            "--no-strip",
            "--locked",
            "--deb-revision",
            "1",
            "--output",
        ])
        .arg(&deb)
        .run()?;
    ensure!(
        deb.is_file(),
        "cargo deb succeeded but wrote no {}",
        deb.display()
    );
    Ok(deb)
}

// ---- the OCI image ---------------------------------------------------------

pub const CONTAINERFILE: &str = "deploy/Containerfile";
pub const LABEL_VERSION: &str = "org.opencontainers.image.version";
pub const LABEL_REVISION: &str = "org.opencontainers.image.revision";

fn image(target_dir: &Path, binary: &Path, out: &Path, facts: &Facts) -> Result<PathBuf> {
    // The build context: the binary alone (the Containerfile's COPY).
    let context = target_dir.join("dist-context");
    if context.exists() {
        fs::remove_dir_all(&context)?;
    }
    fs::create_dir_all(&context)?;
    fs::copy(binary, context.join("macdrop"))?;
    let tag = format!("{IMAGE_NAME}:{}", facts.version);
    let labels = image_labels(facts);
    let mut build = Cmd::new("buildah").args([
        "build",
        "--format",
        "oci",
        // Nothing to pull: FROM scratch.
        "--pull=never",
        "--network",
        "none",
        // No buildah version in the image, and the commit's time as every
        // timestamp: the digest depends on the inputs only.
        "--identity-label=false",
        "--timestamp",
        &facts.epoch,
        "--file",
    ]);
    build = build
        .arg(workspace_root().join(CONTAINERFILE))
        .args(["--tag", &tag]);
    // The same facts as labels (the image config: `podman inspect`) and as
    // annotations (the manifest: registries and `skopeo inspect`).
    for (key, value) in &labels {
        build = build
            .args(["--label", &format!("{key}={value}")])
            .args(["--annotation", &format!("{key}={value}")]);
    }
    build.arg(&context).run()?;
    let archive = out.join(format!("macdrop-{}.oci.tar", facts.version));
    let digest_file = target_dir.join("dist-context.digest");
    let pushed = Cmd::new("buildah")
        .args(["push", "--digestfile"])
        .arg(&digest_file)
        .arg(&tag)
        .arg(format!("oci-archive:{}:{tag}", archive.display()))
        .run();
    // The archive is the artifact; local storage keeps nothing of dist.
    let removed = Cmd::new("buildah").args(["rmi", &tag]).run();
    pushed?;
    removed?;
    let digest = fs::read_to_string(&digest_file)?.trim().to_owned();
    ensure!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "buildah wrote no digest: {digest:?}"
    );
    let path = workspace_root().join(KUSTOMIZATION);
    let text = fs::read_to_string(&path)?;
    let updated = with_digest(&text, &digest)?;
    if updated != text {
        fs::write(&path, updated)?;
        println!("dist: {KUSTOMIZATION}: image digest now {digest} (commit it with the release)");
    }
    Ok(archive)
}

/// The image's OCI labels: version, revision and, when the workspace
/// names its repository (`repository` in Cargo.toml), source.
fn image_labels(facts: &Facts) -> Vec<(&'static str, String)> {
    let mut labels = vec![
        (LABEL_VERSION, facts.version.clone()),
        (LABEL_REVISION, facts.revision.clone()),
    ];
    match &facts.source {
        Some(source) => labels.push(("org.opencontainers.image.source", source.clone())),
        None => println!(
            "dist: note: the workspace package names no `repository`; the image has no org.opencontainers.image.source"
        ),
    }
    labels
}

/// The kustomization with its one `digest:` line set to `digest`.
pub fn with_digest(kustomization: &str, digest: &str) -> Result<String> {
    let mut found = 0;
    let text: String = kustomization
        .lines()
        .map(|line| {
            let key = line.trim_start();
            if key.starts_with("digest:") {
                found += 1;
                let indent = &line[..line.len() - key.len()];
                format!("{indent}digest: {digest}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    if found != 1 {
        bail!("{KUSTOMIZATION}: expected exactly one `digest:` line (images:), found {found}");
    }
    Ok(text)
}

// ---- helpers ---------------------------------------------------------------

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("artifact names are UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_for_the_package_runs_usr_bin() {
        let unit = "[Service]\nExecStart=/usr/local/bin/macdrop $MACDROP_ARGS\nUMask=0077\n";
        assert_eq!(
            deb_unit(unit).unwrap(),
            "[Service]\nExecStart=/usr/bin/macdrop $MACDROP_ARGS\nUMask=0077\n"
        );
        assert!(deb_unit("[Service]\nExecStart=/opt/macdrop\n").is_err());
        let repo = fs::read_to_string(workspace_root().join(UNIT)).unwrap();
        assert!(deb_unit(&repo).unwrap().contains(DEB_EXEC));
    }

    #[test]
    fn digest_replaces_the_one_digest_line() {
        let k = "images:\n  - name: macdrop\n    digest: sha256:00\n";
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            with_digest(k, &d).unwrap(),
            format!("images:\n  - name: macdrop\n    digest: {d}\n")
        );
        assert!(with_digest("images: []\n", &d).is_err());
        let repo = fs::read_to_string(workspace_root().join(KUSTOMIZATION)).unwrap();
        assert!(with_digest(&repo, &d).is_ok());
    }

    #[test]
    fn cargo_deb_version() {
        assert!(is_wanted_cargo_deb("cargo-deb 3.8.0\n"));
        assert!(!is_wanted_cargo_deb("cargo-deb 3.8.1"));
        assert!(!is_wanted_cargo_deb(""));
    }
}
