//! The release artifacts of `cargo xtask dist` (target/dist/), installed
//! and run for real: the checksums hold and the kustomization names the
//! image's digest; the static binary runs `status` and `watch` on a lab
//! bridge from a directory of its own with no Rust toolchain on PATH; the
//! .deb installs with dpkg (into a root of its own: the host's packages are
//! untouched), its binary, unit, man pages and completions are in place,
//! and removing then purging it leaves no file behind; the image runs under podman with the
//! DaemonSet's arguments, network and exact capabilities in a lab, and its
//! /metrics serves the exact counts.
//!
//! Building the artifacts takes minutes, so these tests do not: without
//! target/dist, or with artifacts of a commit whose tree differs from
//! HEAD's by more than the digest dist writes, each test is recorded as
//! skipped, saying to run `cargo xtask dist` (or `cargo xtask test
//! --dist`, which does it first).

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use macdrop_tests::{
    lab::{BRIDGE, BridgeLab},
    macdrop::{FrameCounts, Macdrop, Output},
    prometheus::Server,
    schema, skip,
};
use serde_json::Value;

use crate::{
    INSTALLED_BIN,
    deployed::{Deployed, Enter, HOST_IP_WRONG_MAC, cap_mask, credentials, http_get, send_frames},
    helpers::{TempPath, each_str, read, repo, run, run_ok, target_dir},
    kubernetes::{Pod, object, pod},
};

/// The file `cargo xtask dist` writes the image's digest into.
const KUSTOMIZATION: &str = "deploy/kubernetes/kustomization.yaml";

/// A PATH with the system's programs and nothing of a Rust toolchain.
const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The artifacts in target/dist.
struct Artifacts {
    dir: PathBuf,
    binary: PathBuf,
    deb: PathBuf,
    image: PathBuf,
    /// The image's manifest digest, from the archive's index.
    digest: String,
    /// The image's config labels.
    labels: Value,
    /// The image's manifest annotations.
    annotations: Value,
    version: String,
}

/// The artifacts, or `None` after recording why the test cannot run.
fn artifacts(check: &str) -> Option<Artifacts> {
    let dir = target_dir().join("dist");
    if !dir.join("SHA256SUMS").is_file() {
        skip::record(
            check,
            &format!(
                "no artifacts in {}: run `cargo xtask dist` or `cargo xtask test --dist`",
                dir.display()
            ),
        );
        return None;
    }
    let found = Artifacts::read(dir).expect("target/dist holds what dist writes");
    let built = found.labels[LABEL_REVISION]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches("-dirty")
        .to_owned();
    // Current when HEAD differs from the commit built only in the digest
    // dist wrote (the release's commit of the kustomization).
    let same_tree = run(Command::new("git")
        .args(["diff", "--quiet", &built, "HEAD", "--", "."])
        .arg(format!(":(exclude){KUSTOMIZATION}"))
        .current_dir(repo()))
    .expect("git diff");
    if !same_tree.ok {
        skip::record(
            check,
            &format!(
                "the artifacts in target/dist are of revision {built}, and HEAD differs from it: run `cargo xtask dist`"
            ),
        );
        return None;
    }
    Some(found)
}

impl Artifacts {
    fn read(dir: PathBuf) -> Result<Self> {
        let sums = read(&dir.join("SHA256SUMS"));
        let names: Vec<&str> = sums
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        let one = |suffix: &str| -> Result<PathBuf> {
            let found: Vec<&&str> = names.iter().filter(|n| n.ends_with(suffix)).collect();
            ensure!(found.len() == 1, "SHA256SUMS: one *{suffix}: {names:?}");
            Ok(dir.join(found[0]))
        };
        let binary = one("-x86_64-linux-musl")?;
        let deb = one("_amd64.deb")?;
        let image = one(".oci.tar")?;
        ensure!(names.len() == 3, "SHA256SUMS lists {names:?}");
        let version = run_ok(
            Command::new("dpkg-deb")
                .args(["--field"])
                .arg(&deb)
                .arg("Version"),
        )?
        .trim()
        .trim_end_matches("-1")
        .to_owned();

        // The archive's index names the manifest; the manifest the config.
        let blob = |name: &str| -> Result<Value> {
            let text = run_ok(Command::new("tar").arg("-xOf").arg(&image).arg(name))?;
            serde_json::from_str(&text).with_context(|| format!("{name} in the archive"))
        };
        let index = blob("index.json")?;
        let manifests = index["manifests"].as_array().context("index.json")?;
        ensure!(manifests.len() == 1, "one image in the archive: {index}");
        let digest = manifests[0]["digest"]
            .as_str()
            .context("manifest digest")?
            .to_owned();
        let path = |d: &str| format!("blobs/{}", d.replacen(':', "/", 1));
        let manifest = blob(&path(&digest))?;
        let config = blob(&path(
            manifest["config"]["digest"].as_str().context("config")?,
        ))?;
        Ok(Self {
            dir,
            binary,
            deb,
            image,
            digest,
            labels: config["config"]["Labels"].clone(),
            annotations: manifest["annotations"].clone(),
            version,
        })
    }

    /// What the image must be labelled and annotated with, exactly: the
    /// .deb's version, the revision dist built (HEAD's tree, as
    /// [`artifacts`] checked; `-dirty` when built from uncommitted
    /// changes), and the source: required where this clone's origin is a
    /// URL, allowed otherwise (dist's `--source`), never with credentials.
    fn expected_labels(&self) -> Value {
        let revision = self.labels[LABEL_REVISION].as_str().unwrap_or_default();
        let commit = revision.trim_end_matches("-dirty");
        assert_eq!(commit.len(), 40, "{LABEL_REVISION} {revision:?}");
        let kind = run_ok(
            Command::new("git")
                .args(["cat-file", "-t", commit])
                .current_dir(repo()),
        )
        .unwrap();
        assert_eq!(kind.trim(), "commit", "{LABEL_REVISION} {revision:?}");
        let mut want = serde_json::json!({
            LABEL_VERSION: self.version,
            LABEL_REVISION: revision,
        });
        let origin = run(Command::new("git")
            .args(["remote", "get-url", "origin"])
            .current_dir(repo()))
        .unwrap();
        // dist names a remote URL with a host (not a path, not file://).
        let origin_is_url = origin.ok
            && origin
                .stdout
                .trim()
                .split_once("://")
                .is_some_and(|(scheme, rest)| scheme != "file" && !rest.starts_with('/'));
        match self.labels[LABEL_SOURCE].as_str() {
            // From the origin, or dist's --source: never with credentials.
            Some(source) => {
                let authority = source.split("://").nth(1).unwrap_or_default();
                let authority = authority.split('/').next().unwrap_or_default();
                assert!(
                    !authority.is_empty() && !authority.contains('@'),
                    "{LABEL_SOURCE} {source:?} (a URL, and credentials must not ship)"
                );
                want[LABEL_SOURCE] = source.into();
            }
            None => assert!(
                !origin_is_url,
                "no {LABEL_SOURCE} though origin is {}",
                origin.stdout
            ),
        }
        want
    }
}

const LABEL_VERSION: &str = "org.opencontainers.image.version";
const LABEL_REVISION: &str = "org.opencontainers.image.revision";
const LABEL_SOURCE: &str = "org.opencontainers.image.source";

#[test]
fn checksums_and_kustomization_name_the_artifacts() {
    let Some(a) = artifacts("SHA256SUMS and the kustomization's image digest") else {
        return;
    };
    let checked = run(Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&a.dir))
    .unwrap();
    assert!(checked.ok, "sha256sum --check:\n{}", checked.both());

    let workspace = read(&repo().join("Cargo.toml"));
    let version = workspace
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace version");
    assert_eq!(a.version, version, "the .deb's version");
    assert_eq!(a.labels[LABEL_VERSION], version);
    assert!(
        a.binary
            .to_string_lossy()
            .contains(&format!("macdrop-{version}-")),
        "{}",
        a.binary.display()
    );

    // The rendered DaemonSet runs exactly this image.
    let image = &object("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(
        image.as_str(),
        Some(format!("localhost/macdrop@{}", a.digest).as_str()),
        "deploy/kubernetes/kustomization.yaml's image (cargo xtask dist writes it)"
    );
}

#[test]
fn static_binary_runs_status_and_watch_without_a_toolchain() {
    let Some(a) = artifacts("the static binary on a lab bridge") else {
        return;
    };
    // No interpreter, no shared library.
    let dynamic = run_ok(Command::new("readelf").arg("--dynamic").arg(&a.binary)).unwrap();
    assert!(
        dynamic.contains("There is no dynamic section in this file."),
        "{dynamic}"
    );
    let headers = run_ok(
        Command::new("readelf")
            .arg("--program-headers")
            .arg(&a.binary),
    )
    .unwrap();
    assert!(!headers.contains("INTERP"), "{headers}");

    // What it says it is: the commit and the target dist built.
    let version = run_ok(Command::new(&a.binary).arg("--version")).unwrap();
    let revision = a.labels[LABEL_REVISION].as_str().unwrap();
    for line in [
        format!("macdrop {}", a.version),
        format!("revision: {}", &revision[..12]),
        "target: x86_64-unknown-linux-musl".to_owned(),
    ] {
        assert!(
            version.lines().any(|l| l == line),
            "{line:?} in:\n{version}"
        );
    }

    // A directory of its own, and a PATH where no Rust toolchain is.
    for tool in ["cargo", "rustc", "rustup"] {
        let found: Vec<PathBuf> = SYSTEM_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(tool))
            .filter(|p| p.exists())
            .collect();
        assert!(
            found.is_empty(),
            "a Rust toolchain on {SYSTEM_PATH}: {found:?}"
        );
    }
    let dir = TempPath::new("static");
    fs::create_dir(&dir.0).unwrap();
    let bin = dir.0.join("macdrop");
    fs::copy(&a.binary, &bin).unwrap();

    let lab = BridgeLab::new(1).unwrap();
    let status = run(lab
        .host()
        .command(&[
            bin.as_os_str(),
            "status".as_ref(),
            "--format".as_ref(),
            "json".as_ref(),
        ])
        .env_clear()
        .env("PATH", SYSTEM_PATH)
        .current_dir(&dir.0))
    .unwrap();
    assert!(status.ok, "macdrop status:\n{}", status.both());
    let doc = schema::parse(schema::Output::Status, &status.stdout).unwrap();
    let names: BTreeSet<&str> = each_str(&doc["interfaces"], "name").into_iter().collect();
    assert!(
        names.contains(BRIDGE) && names.contains("p1"),
        "status lists {names:?}"
    );

    let mut watch = Macdrop::spawn_with_env(
        &bin,
        lab.host(),
        &["--bridge", BRIDGE],
        Output::Json,
        &[("PATH", SYSTEM_PATH)],
    )
    .unwrap();
    send_frames(&lab).unwrap();
    // deployed::send_frames's plan, on p1.
    let want = FrameCounts {
        own: 3,
        broadcast: 4,
        foreign_unicast: 7,
        host_ip_wrong_mac: 5,
        ..FrameCounts::default()
    }
    .with_total();
    let report = watch.settle(|r| r.frames("p1") == Some(want), Duration::from_secs(10));
    assert_eq!(report.frames("p1"), Some(want), "p1 in {report:?}");
    watch.stop().unwrap();
}

/// A dpkg root of its own: an empty database under a temporary directory.
struct DpkgRoot(TempPath);

impl DpkgRoot {
    fn new() -> Self {
        let root = TempPath::new("dpkg-root");
        let admin = root.0.join("var/lib/dpkg");
        for dir in ["info", "updates", "triggers"] {
            fs::create_dir_all(admin.join(dir)).unwrap();
        }
        for file in ["status", "available"] {
            fs::write(admin.join(file), "").unwrap();
        }
        Self(root)
    }

    fn dpkg(&self, args: &[&str]) -> Result<String> {
        run_ok(
            Command::new("dpkg")
                .arg(format!("--root={}", self.0.0.display()))
                .arg("--log=/dev/null")
                .args(args),
        )
    }

    /// Every path under the root outside dpkg's own database.
    fn files(&self) -> BTreeSet<String> {
        fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
            for entry in fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
                if rel.starts_with("/var/lib/dpkg") {
                    continue;
                }
                out.insert(rel);
                if entry.file_type().unwrap().is_dir() {
                    walk(&path, root, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.0.0, &self.0.0, &mut out);
        out
    }
}

#[test]
fn deb_installs_runs_and_purges_without_a_trace() {
    let Some(a) = artifacts("the .deb installed, run, removed and purged") else {
        return;
    };
    let root = DpkgRoot::new();
    let before = root.files();
    root.dpkg(&["--install", &a.deb.to_string_lossy()]).unwrap();
    let listed: BTreeSet<String> = root
        .dpkg(&["--listfiles", "macdrop"])
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let installed = root.files();
    for path in &listed {
        assert!(
            installed.contains(path),
            "dpkg -L lists {path}, not installed"
        );
    }
    for path in installed.difference(&before) {
        assert!(listed.contains(path), "{path} installed but not in dpkg -L");
    }

    // The binary runs, the unit runs the binary, the configuration is there.
    let bin = root.0.0.join("usr/bin/macdrop");
    let version = run(Command::new(&bin)
        .arg("--version")
        .env_clear()
        .env("PATH", SYSTEM_PATH))
    .unwrap();
    assert!(
        version.ok && version.stdout.contains(&a.version),
        "macdrop --version:\n{}",
        version.both()
    );
    let unit = read(&root.0.0.join("lib/systemd/system/macdrop.service"));
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStart=/usr/bin/macdrop ")),
        "{unit}"
    );
    assert!(
        unit.contains("EnvironmentFile=/etc/macdrop/macdrop.env"),
        "{unit}"
    );
    assert_eq!(
        read(&root.0.0.join("etc/macdrop/macdrop.env")),
        read(&repo().join("deploy/systemd/macdrop.env"))
    );
    assert_eq!(
        read(&root.0.0.join("usr/share/doc/macdrop/examples/macdrop.toml")),
        read(&repo().join("deploy/macdrop.toml"))
    );
    // The man pages render, for macdrop and each command; the completion
    // scripts are there (bash's parses).
    for page in [
        "macdrop",
        "macdrop-watch",
        "macdrop-status",
        "macdrop-diagnose",
    ] {
        let path = root.0.0.join(format!("usr/share/man/man1/{page}.1.gz"));
        let shown = run(Command::new("man")
            .arg("--local-file")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"))
        .unwrap();
        assert!(
            shown.ok && shown.stdout.contains(page) && shown.stdout.contains("--help"),
            "man -l {}:\n{}",
            path.display(),
            shown.both()
        );
    }
    let watch = run(Command::new("man")
        .arg("--local-file")
        .arg(root.0.0.join("usr/share/man/man1/macdrop-watch.1.gz"))
        .env("MANPAGER", "cat"))
    .unwrap();
    assert!(watch.stdout.contains("--bridge"), "{}", watch.stdout);
    let bash = root
        .0
        .0
        .join("usr/share/bash-completion/completions/macdrop");
    let parsed = run(Command::new("bash").arg("-n").arg(&bash)).unwrap();
    assert!(parsed.ok, "bash -n {}:\n{}", bash.display(), parsed.both());
    for script in [
        "usr/share/zsh/vendor-completions/_macdrop",
        "usr/share/fish/vendor_completions.d/macdrop.fish",
    ] {
        assert!(read(&root.0.0.join(script)).contains("macdrop"), "{script}");
    }

    let conffiles = root.dpkg(&["--status", "macdrop"]).unwrap();
    assert!(
        conffiles.contains(" /etc/macdrop/macdrop.env "),
        "{conffiles}"
    );

    // Removed: only the conffile and its directory stay, as dpkg keeps
    // configuration; purged: nothing at all.
    root.dpkg(&["--remove", "macdrop"]).unwrap();
    let left: BTreeSet<String> = root.files().difference(&before).cloned().collect();
    assert_eq!(
        left,
        BTreeSet::from([
            "/etc".to_owned(),
            "/etc/macdrop".to_owned(),
            "/etc/macdrop/macdrop.env".to_owned()
        ]),
        "after dpkg --remove"
    );
    root.dpkg(&["--purge", "macdrop"]).unwrap();
    assert_eq!(root.files(), before, "after dpkg --purge");
}

/// The package installed on this host for real, purged on drop (a failed
/// test leaves nothing installed).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run(Command::new("dpkg").args(["--purge", "macdrop"]));
    }
}

/// The .deb installed on this host with `dpkg -i` (when macdrop is not
/// installed already, which it would replace): `macdrop` on PATH runs
/// `status` on a lab bridge, `man macdrop-watch` renders from the man
/// database, bash completes the commands and flags with the installed
/// script, and `dpkg -P` leaves no path of the package that was not there
/// before.
#[test]
fn deb_installed_for_real_works_and_purges_cleanly() {
    const CHECK: &str =
        "the .deb installed on this host (dpkg -i, status, man, completion, dpkg -P)";
    let Some(a) = artifacts(CHECK) else {
        return;
    };
    if run(Command::new("dpkg").args(["--status", "macdrop"]))
        .unwrap()
        .ok
    {
        skip::record(
            CHECK,
            "macdrop is installed on this host (dpkg -s macdrop): a real dpkg -i would replace it; the private-root install ran instead",
        );
        return;
    }
    // What the package holds, and which of those paths exist before it
    // (the directories it shares with the system, like /usr/bin).
    let contents: BTreeSet<String> = run_ok(Command::new("dpkg-deb").arg("--contents").arg(&a.deb))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| format!("/{}", p.trim_start_matches("./").trim_end_matches('/')))
        .filter(|p| p != "/")
        .collect();
    let existed: BTreeSet<String> = contents
        .iter()
        .filter(|p| Path::new(p).symlink_metadata().is_ok())
        .cloned()
        .collect();
    let clobbered: Vec<&String> = existed.iter().filter(|p| !Path::new(p).is_dir()).collect();
    assert!(
        clobbered.is_empty(),
        "files of the package exist already: {clobbered:?}"
    );

    let installed = Installed;
    run_ok(Command::new("dpkg").arg("--install").arg(&a.deb)).unwrap();
    let listed: BTreeSet<String> = run_ok(Command::new("dpkg").args(["--listfiles", "macdrop"]))
        .unwrap()
        .lines()
        .filter(|l| *l != "/.")
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, contents, "dpkg -L against the package's contents");

    // `macdrop` from PATH, in a lab: the bridge and its port, exit 0.
    let lab = BridgeLab::new(1).unwrap();
    let status = run(lab
        .host()
        .command(&["macdrop", "status"])
        .env_clear()
        .env("PATH", SYSTEM_PATH))
    .unwrap();
    assert!(status.ok, "macdrop status:\n{}", status.both());
    let rows: Vec<Vec<&str>> = status
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0][..3],
        ["IFACE", "ROLE", "MASTER"],
        "{}",
        status.stdout
    );
    for (name, role) in [(BRIDGE, "bridge"), ("p1", "port")] {
        assert!(
            rows.iter()
                .any(|r| r.len() > 1 && r[0] == name && r[1] == role),
            "{name} ({role}) in:\n{}",
            status.stdout
        );
    }
    drop(lab);

    // man finds the page by name (its database, not a file path).
    let man = run(Command::new("man")
        .arg("macdrop-watch")
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100"))
    .unwrap();
    assert!(
        man.ok && man.stdout.contains("macdrop-watch") && man.stdout.contains("--bridge"),
        "man macdrop-watch:\n{}",
        man.both()
    );

    // bash: the installed script registers a completion function for
    // macdrop; driven as bash drives it on TAB.
    let complete = |words: &[&str]| -> BTreeSet<String> {
        let script = format!(
            r#"source /usr/share/bash-completion/completions/macdrop
spec=$(complete -p macdrop) || exit 3
fn=${{spec#*-F }}; fn=${{fn%% *}}
COMP_WORDS=({words}); COMP_CWORD={cword}
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
"$fn" macdrop "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
            words = words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            cword = words.len() - 1,
        );
        let out = run(Command::new("bash").args(["--norc", "-c", &script])).unwrap();
        assert!(out.ok, "bash completion of {words:?}:\n{}", out.both());
        out.stdout.lines().map(str::to_owned).collect()
    };
    let commands = complete(&["macdrop", ""]);
    for command in ["watch", "status", "diagnose", "top"] {
        assert!(commands.contains(command), "{command} in {commands:?}");
    }
    let flags = complete(&["macdrop", "watch", "--bri"]);
    assert_eq!(flags, BTreeSet::from(["--bridge".to_owned()]));

    // Purged: every path the package brought is gone, every one that was
    // there before is still there.
    drop(installed);
    let gone = run(Command::new("dpkg").args(["--status", "macdrop"])).unwrap();
    assert!(
        !gone.ok,
        "dpkg -s macdrop after the purge:\n{}",
        gone.both()
    );
    for path in &listed {
        assert_eq!(
            Path::new(path).symlink_metadata().is_ok(),
            existed.contains(path),
            "{path} after dpkg -P (existed before: {})",
            existed.contains(path)
        );
    }
}

/// A container of the test's, removed with its image on drop.
struct Container {
    name: String,
    image: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(Command::new("podman").args(["rm", "--force", "--ignore", &self.name]));
        let _ = run(Command::new("podman").args(["rmi", "--force", &self.image]));
    }
}

/// The image under podman as the DaemonSet runs it: host network (the lab's
/// host namespace), UID 0, every capability dropped and exactly the pod's
/// added, no new privileges, a read-only root, the pod's host paths (the
/// lab's /run/netns), the pod's arguments. Scraped with exact counts, then
/// stopped as the kubelet stops it (SIGTERM: exit 0).
#[test]
fn image_runs_as_the_daemonset_pod_and_serves_exact_metrics() {
    let Some(a) = artifacts("the image under podman on a lab bridge") else {
        return;
    };
    let loaded = run_ok(
        Command::new("podman")
            .args(["load", "--quiet", "--input"])
            .arg(&a.image),
    )
    .unwrap();
    let tag = format!("localhost/macdrop:{}", a.version);
    assert!(loaded.contains(&tag), "podman load: {loaded}");
    let container = Container {
        name: format!("macdrop-dist-test-{}", std::process::id()),
        image: tag,
    };
    // By digest, as the kustomization names it.
    let by_digest = format!("localhost/macdrop@{}", a.digest);
    let labels = run_ok(Command::new("podman").args([
        "image",
        "inspect",
        "--format",
        "{{json .Labels}}",
        &by_digest,
    ]))
    .unwrap();
    let labels: Value = serde_json::from_str(&labels).unwrap();
    // Labels (the config) and annotations (the manifest) carry the same
    // facts, exactly these, in the archive and as podman sees the image.
    let want = a.expected_labels();
    // buildah also names the base image in the manifest; `FROM scratch`
    // has none, so both are empty (Debian 12's buildah cannot unset them).
    let mut want_annotations = want.clone();
    for key in [
        "org.opencontainers.image.base.name",
        "org.opencontainers.image.base.digest",
    ] {
        want_annotations[key] = "".into();
    }
    assert_eq!(a.labels, want, "the archive's config labels");
    assert_eq!(
        a.annotations, want_annotations,
        "the archive's manifest annotations"
    );
    assert_eq!(labels, want, "podman image inspect: labels of {by_digest}");
    let annotations = run_ok(Command::new("podman").args([
        "image",
        "inspect",
        "--format",
        "{{json .Annotations}}",
        &by_digest,
    ]))
    .unwrap();
    let annotations: Value = serde_json::from_str(&annotations).unwrap();
    assert_eq!(
        annotations, want_annotations,
        "podman image inspect: annotations of {by_digest}"
    );

    let Pod {
        args,
        metrics,
        interval,
        added,
    } = pod();
    let ds = &object("DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(ds["hostNetwork"], true);
    let security = &ds["containers"][0]["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let mut argv: Vec<String> = [
        "podman",
        "run",
        "--rm",
        "--name",
        &container.name,
        "--network",
        "host",
        "--user",
        "0:0",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        // Not the pod's: Podman's default limits (1048576 open files)
        // exceed the hard limits of a machine like a CI container, where
        // runc then fails to set them; the kubelet sets none.
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ]
    .map(str::to_owned)
    .to_vec();
    for cap in &added {
        argv.extend(["--cap-add".to_owned(), cap.clone()]);
    }
    for mount in ds["containers"][0]["volumeMounts"].as_array().unwrap() {
        let path = mount["mountPath"].as_str().unwrap();
        // Deployed shows the lab's namespaces at /run/netns, and an empty
        // /run/docker/netns where the host has one; a missing one is left
        // out (the kubelet would create it empty).
        if Path::new(path).is_dir() {
            argv.extend(["--volume".to_owned(), format!("{path}:{path}:ro,rslave")]);
        }
    }
    argv.push(by_digest);
    argv.extend(args);

    let lab = BridgeLab::new(1).unwrap();
    let mut m = Deployed::start_with(&lab, &a.binary, &argv, Enter::Nsenter).unwrap();
    m.wait_attached().unwrap();
    let pid = run_ok(Command::new("podman").args([
        "inspect",
        "--format",
        "{{.State.Pid}}",
        &container.name,
    ]))
    .unwrap();
    let (uid, eff) = credentials(pid.trim().parse().unwrap());
    assert_eq!(uid, 0);
    let added: Vec<&str> = added.iter().map(String::as_str).collect();
    assert_eq!(eff & !cap_mask(&added), 0, "CapEff {eff:#x}");
    let exe = fs::read_link(format!("/proc/{}/exe", pid.trim())).unwrap();
    assert_eq!(exe, Path::new(INSTALLED_BIN), "the image's entrypoint");

    send_frames(&lab).unwrap();
    m.scrape_until_exact(lab.host(), &metrics, Duration::from_secs(2 * interval + 20))
        .unwrap();
    let (status, body) = http_get(lab.host(), &metrics, "/healthz").unwrap();
    assert_eq!(status, 200, "readiness and liveness probe: {body}");

    // The real Prometheus server of the suite scrapes the container on the
    // node address, as the PodMonitor has it do, and reads the exact count.
    let prometheus = Server::scraping(lab.host(), &metrics).unwrap();
    let query = r#"macdrop_host_ip_wrong_mac_frames_total{job="macdrop",interface="p1"}"#;
    let want = HOST_IP_WRONG_MAC.to_string();
    let got = prometheus.wait_for_value(
        lab.host(),
        query,
        &want,
        Duration::from_secs(2 * interval + 30),
    );
    assert_eq!(
        got.as_deref(),
        Some(want.as_str()),
        "{query}; up: {:?}; log:\n{}",
        prometheus.value(lab.host(), r#"up{job="macdrop"}"#),
        prometheus.log()
    );
    drop(prometheus);

    run_ok(Command::new("podman").args(["stop", "--time", "10", &container.name])).unwrap();
    assert_eq!(m.wait_exit(Duration::from_secs(20)).unwrap(), Some(0));
}
