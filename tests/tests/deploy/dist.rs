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
    schema, skip,
};
use serde_json::Value;

use crate::{
    INSTALLED_BIN,
    deployed::{Deployed, Enter, cap_mask, credentials, http_get, send_frames},
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
    let built = found.labels["org.opencontainers.image.revision"]
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
            version,
        })
    }
}

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
    assert_eq!(a.labels["org.opencontainers.image.version"], version);
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
    let revision = a.labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap();
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
    assert_eq!(labels, a.labels, "labels of {by_digest}");

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

    run_ok(Command::new("podman").args(["stop", "--time", "10", &container.name])).unwrap();
    assert_eq!(m.wait_exit(Duration::from_secs(20)).unwrap(), Some(0));
}
