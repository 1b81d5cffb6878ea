//! `cargo xtask setup`: installs what building, linting and testing macdrop
//! need and is missing. Idempotent: every step first checks, and a machine
//! that has everything only gets `setup: ... ok (already present)` lines.
//!
//! 1. Debian packages: LLVM 22 (to build bpf-linker, and its libLLVM) and
//!    every tool the tests, the benchmark and the demo run. (The deployment
//!    tests' Python tools and kubectl come from PyPI, into a virtualenv the
//!    tests make: `tests/tests/deploy/`.)
//! 2. rustup toolchain `nightly` with `rust-src` (aya-build compiles the eBPF
//!    crate with `-Z build-std=core`), plus clippy and rustfmt on nightly and
//!    on the toolchain plain `cargo` uses here (stable) for `cargo xtask lint`.
//! 3. bpf-linker 0.13 built against the system's LLVM 22.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{Cmd, find_in_path, is_root, probe},
    ui,
};

/// Debian packages, checked one by one with dpkg-query.
const APT_PACKAGES: &[&str] = &[
    // bpf-linker links against LLVM 22; libpolly, libzstd and zlib are what
    // llvm-22-dev's libLLVM link line asks for.
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // Used by the integration tests and the demo: ip, bridge, tc; ping.
    "iproute2",
    "iputils-ping",
    "tcpdump",
    // sysctl, which the labs use to keep namespaces quiet (not essential
    // in Debian: a minimal image lacks it). unshare, nsenter, setpriv and
    // taskset come with util-linux, which every Debian system has.
    "procps",
    // mount, which the container-engine labs use for private tmpfs (not
    // essential in Debian, though every system has it).
    "mount",
    // Reads back the pcapng evidence of `--pcap` in the tests (packet
    // comments, interface names: what tcpdump does not show).
    "tshark",
    // The tests' independent witness of what is attached (programs, links).
    "bpftool",
    // promtool and the Prometheus server the metrics tests scrape with.
    "prometheus",
    // setcap, for the least-privilege tests (file capabilities).
    "libcap2-bin",
    // The terminal the `macdrop top` tests drive (send-keys, capture-pane).
    "tmux",
    // The load tool of the metrics endpoint's hostile-client test.
    "wrk",
    // The privilege tests watch macdrop's syscalls.
    "strace",
    // The deployment tests' Python validators live in a venv.
    "python3-venv",
    // systemd-analyze, for the unit's hardening check.
    "systemd",
    // A Docker Engine of the tests' own (dockerd, docker), and the only
    // image they use, imported from busybox-static's binary.
    "docker.io",
    "busybox-static",
    // Podman (rootful) and containerd with its CRI plugin, of the tests'
    // own, naming ports by container and by pod; the CNI plugins (bridge,
    // host-local) attach the CRI test's pod.
    "podman",
    "containerd",
    "containernetworking-plugins",
    // protoc: building macdrop's CRI client (the k8s-cri crate's protos).
    "protobuf-compiler",
    // nft: the br_netfilter lab's FORWARD policy drop, and what macdrop
    // reads the forward chains with (`nft -j list chains`).
    "nftables",
];

/// Every program the tests, the benchmark, the demo and the kernel matrix
/// run, with the Debian package that has it: one of [`APT_PACKAGES`], of
/// the kernel matrix's own (`kernel_matrix::APT_PACKAGES`), of dist's
/// (`dist::APT_PACKAGES`), or of
/// [`ESSENTIAL`]. A unit test finds the programs in the sources and fails
/// on one missing here; setup checks that each of its own is there.
pub const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("bridge", "iproute2"),
    ("tc", "iproute2"),
    ("ping", "iputils-ping"),
    ("nft", "nftables"),
    ("tcpdump", "tcpdump"),
    ("tshark", "tshark"),
    ("bpftool", "bpftool"),
    ("promtool", "prometheus"),
    ("prometheus", "prometheus"),
    ("setcap", "libcap2-bin"),
    ("tmux", "tmux"),
    ("wrk", "wrk"),
    ("strace", "strace"),
    ("python3", "python3-venv"),
    ("systemd-analyze", "systemd"),
    ("sysctl", "procps"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("setpriv", "util-linux"),
    ("taskset", "util-linux"),
    ("cat", "coreutils"),
    ("chmod", "coreutils"),
    ("sleep", "coreutils"),
    ("apt-get", "apt"),
    ("dpkg-query", "dpkg"),
    ("dpkg-deb", "dpkg"),
    ("tar", "tar"),
    ("gzip", "gzip"),
    ("ldd", "libc-bin"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("xz", "xz-utils"),
    ("strip", "binutils"),
    ("docker", "docker.io"),
    ("dockerd", "docker.io"),
    ("busybox", "busybox-static"),
    ("buildah", "buildah"),
    ("podman", "podman"),
    ("readelf", "binutils"),
    ("git", "git"),
    ("dpkg", "dpkg"),
    ("sha256sum", "coreutils"),
    ("man", "man-db"),
    ("bash", "bash"),
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("sh", "dash"),
    ("mount", "mount"),
];

/// Packages every Debian system has (`Essential: yes`).
pub const ESSENTIAL: &[&str] = &[
    "apt",
    "bash",
    "coreutils",
    "dash",
    "dpkg",
    "gzip",
    "libc-bin",
    "tar",
    "util-linux",
];

/// Where Debian's llvm-22 packages put LLVM.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// bpf-linker version requirement: 0.13.x.
const BPF_LINKER_VERSION_REQ: &str = "~0.13";
const BPF_LINKER_VERSION_PREFIX: &str = "0.13.";

#[derive(Default)]
pub struct Options {
    /// Check and print what would be done, change nothing.
    pub dry_run: bool,
}

pub fn run(options: &Options) -> Result<()> {
    let start = Instant::now();
    apt_packages(options)?;
    rust_toolchains(options)?;
    bpf_linker(options)?;
    println!("setup: done in {}", ui::duration(start.elapsed()));
    Ok(())
}

/// Runs `cmd`, or in a dry run only says it would.
fn act(options: &Options, cmd: &Cmd) -> Result<()> {
    if options.dry_run {
        println!("setup: (dry run) would run: {}", cmd.display());
        Ok(())
    } else {
        cmd.run()
    }
}

// ---- 1. Debian packages ----------------------------------------------------

fn apt_packages(options: &Options) -> Result<()> {
    install_apt_packages(options, APT_PACKAGES)?;
    if options.dry_run {
        return Ok(());
    }
    // A package can be installed and still lack the program (renamed or
    // split off in another release): the tests would then fail far from
    // the cause.
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(_, package)| APT_PACKAGES.contains(package) || ESSENTIAL.contains(package))
        .filter(|(tool, _)| find_tool(tool).is_none())
        .map(|(tool, package)| format!("{tool} ({package})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "setup: the packages are installed but these programs are not found: {}",
            missing.join(", ")
        );
    }
    Ok(())
}

/// `tool` on PATH or in the sbin directories (a non-root PATH may lack them).
fn find_tool(tool: &str) -> Option<std::path::PathBuf> {
    find_in_path(tool).or_else(|| {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|dir| std::path::Path::new(dir).join(tool))
            .find(|p| p.is_file())
    })
}

/// Installs those of `packages` that are missing, exactly as `setup` installs
/// its own (checked one by one; `apt-get update`, then `apt-get install
/// --no-install-recommends`); prints one "ok" line if none is. For commands
/// with prerequisites of their own, such as `cargo xtask kernel-matrix`.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    install_apt_packages(&Options::default(), packages)
}

fn install_apt_packages(options: &Options, packages: &[&str]) -> Result<()> {
    let missing = missing_apt_packages(packages)?;
    if missing.is_empty() {
        println!(
            "setup: apt packages: ok (already present: {})",
            packages.join(" ")
        );
        return Ok(());
    }
    println!("setup: apt packages: installing {}", missing.join(" "));
    if !is_root() && find_in_path("sudo").is_none() && !options.dry_run {
        bail!(
            "setup: apt packages {} are missing and installing them needs root; run with sudo",
            missing.join(" ")
        );
    }
    // A fresh machine has no package lists, so always update first.
    let apt_get = |args: &[&str]| {
        let cmd = Cmd::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(args);
        if options.dry_run {
            Ok(cmd)
        } else {
            cmd.privileged()
        }
    };
    act(options, &apt_get(&["-q", "update"])?)?;
    let mut install = vec![
        "-q",
        "install",
        "-y",
        "--no-install-recommends",
        // Wait for dpkg's lock instead of failing if something else (e.g.
        // unattended-upgrades on a fresh VM) holds it.
        "-o",
        "DPkg::Lock::Timeout=600",
    ];
    install.extend(&missing);
    act(options, &apt_get(&install)?)?;
    if !options.dry_run {
        let still_missing = missing_apt_packages(&missing)?;
        if !still_missing.is_empty() {
            bail!(
                "setup: apt-get install succeeded but {} still not installed",
                still_missing.join(" ")
            );
        }
    }
    Ok(())
}

/// The packages of `packages` that dpkg does not report as installed.
fn missing_apt_packages<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    if find_in_path("dpkg-query").is_none() {
        bail!("setup: dpkg-query not found; setup supports Debian (12) only");
    }
    Ok(packages
        .iter()
        .copied()
        .filter(|package| {
            // dpkg-query exits non-zero for a package it has never heard of.
            !probe("dpkg-query", &["-W", "-f", "${Status}", package])
                .is_some_and(|status| is_installed_status(&status))
        })
        .collect())
}

/// dpkg's `${Status}` of an installed package. (A removed package whose
/// configuration files remain reads `deinstall ok config-files`.)
fn is_installed_status(status: &str) -> bool {
    status.trim() == "install ok installed"
}

// ---- 2. Rust toolchains ----------------------------------------------------

fn rust_toolchains(options: &Options) -> Result<()> {
    if probe("rustup", &["--version"]).is_none() {
        bail!("setup: rustup not found on PATH; install rustup (https://rustup.rs) first");
    }
    let host = probe("rustc", &["-vV"])
        .as_deref()
        .and_then(host_triple)
        .context("setup: `rustc -vV` failed or printed no `host:` line")?;
    let toolchains =
        probe("rustup", &["toolchain", "list"]).context("setup: `rustup toolchain list` failed")?;
    let nightly_present = has_nightly(&toolchains);
    if nightly_present {
        println!("setup: rust toolchain nightly: ok (already present)");
    } else {
        println!("setup: rust toolchain nightly: installing (with rust-src, clippy, rustfmt)");
        act(
            options,
            &Cmd::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
                "--component",
                "clippy",
                "--component",
                "rustfmt",
            ]),
        )?;
    }
    if nightly_present || !options.dry_run {
        components(
            options,
            &host,
            "nightly",
            &["rust-src", "clippy", "rustfmt"],
        )?;
    }

    // The toolchain plain `cargo` uses in the workspace (stable here; under
    // `cargo xtask` rustup passes it down in RUSTUP_TOOLCHAIN).
    let active = probe("rustup", &["show", "active-toolchain"])
        .and_then(|out| out.split_whitespace().next().map(str::to_owned))
        .context(
            "setup: `rustup show active-toolchain` failed; set one with `rustup default stable`",
        )?;
    components(options, &host, &active, &["clippy", "rustfmt"])
}

/// The `host:` triple in `rustc -vV` output.
fn host_triple(rustc_version: &str) -> Option<String> {
    rustc_version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
}

/// Whether `rustup toolchain list` lists the `nightly` channel (not a dated
/// `nightly-YYYY-MM-DD`).
fn has_nightly(toolchain_list: &str) -> bool {
    toolchain_list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| {
            name == "nightly"
                || name
                    .strip_prefix("nightly-")
                    .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        })
}

/// Adds the `wanted` components `toolchain` lacks.
fn components(options: &Options, host: &str, toolchain: &str, wanted: &[&str]) -> Result<()> {
    let installed = probe(
        "rustup",
        &["component", "list", "--toolchain", toolchain, "--installed"],
    )
    .with_context(|| format!("setup: cannot list the components of toolchain {toolchain}"))?;
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|component| !has_component(&installed, host, component))
        .collect();
    if missing.is_empty() {
        println!(
            "setup: {toolchain} components {}: ok (already present)",
            wanted.join(" ")
        );
        return Ok(());
    }
    println!(
        "setup: {toolchain} components: installing {}",
        missing.join(" ")
    );
    act(
        options,
        &Cmd::new("rustup")
            .args(["component", "add", "--toolchain", toolchain])
            .args(missing),
    )
}

/// Whether `rustup component list --installed` output lists `component`
/// (shown as `rust-src`, or with the host triple: `clippy-x86_64-...`).
fn has_component(installed: &str, host: &str, component: &str) -> bool {
    installed
        .lines()
        .map(str::trim)
        .any(|line| line == component || line == format!("{component}-{host}"))
}

// ---- 3. bpf-linker ---------------------------------------------------------

fn bpf_linker(options: &Options) -> Result<()> {
    let version = probe("bpf-linker", &["--version"]);
    if let Some(version) = version.as_deref().filter(|v| is_wanted_bpf_linker(v)) {
        println!(
            "setup: bpf-linker: ok (already present: {})",
            version.trim()
        );
        return Ok(());
    }
    match version {
        Some(other) => println!(
            "setup: bpf-linker: found {}, installing {BPF_LINKER_VERSION_REQ} (LLVM 22)",
            other.trim()
        ),
        None => println!("setup: bpf-linker: installing {BPF_LINKER_VERSION_REQ} (LLVM 22)"),
    }
    let install = |locked: bool| {
        let cmd = Cmd::cargo()
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION_REQ,
                "--no-default-features",
                "--features",
                "llvm-22",
                // Replace a bpf-linker of another version that cargo did not
                // install (cargo refuses to overwrite it otherwise).
                "--force",
            ])
            .args(locked.then_some("--locked"));
        act(options, &cmd)
    };
    if let Err(error) = install(true) {
        println!("setup: bpf-linker: install with --locked failed ({error:#}); retrying without");
        install(false)?;
    }
    if !options.dry_run {
        match probe("bpf-linker", &["--version"]) {
            Some(version) if is_wanted_bpf_linker(&version) => {
                println!("setup: bpf-linker: installed {}", version.trim());
            }
            other => bail!(
                "setup: installed bpf-linker {BPF_LINKER_VERSION_REQ} but `bpf-linker --version` on PATH reports {}; is ~/.cargo/bin first on PATH?",
                other.as_deref().map_or("nothing", str::trim)
            ),
        }
    }
    Ok(())
}

/// Whether `bpf-linker --version` output (`bpf-linker 0.13.0`) is a 0.13.x.
fn is_wanted_bpf_linker(version_output: &str) -> bool {
    version_output
        .split_whitespace()
        .nth(1)
        .is_some_and(|version| version.starts_with(BPF_LINKER_VERSION_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status() {
        assert!(is_installed_status("install ok installed"));
        assert!(!is_installed_status("deinstall ok config-files"));
        assert!(!is_installed_status("unknown ok not-installed"));
        assert!(!is_installed_status(""));
    }

    #[test]
    fn nightly_in_toolchain_list() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n\
                    1.95.0-x86_64-unknown-linux-gnu\n";
        assert!(has_nightly(list));
        assert!(!has_nightly(
            "stable-x86_64-unknown-linux-gnu (default)\nnightly-2025-01-01-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!has_nightly("no installed toolchains\n"));
    }

    #[test]
    fn components_in_list() {
        let list = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\nrust-src\n\
                    rust-std-x86_64-unknown-linux-gnu\nrustc-x86_64-unknown-linux-gnu\n";
        let host = "x86_64-unknown-linux-gnu";
        assert!(has_component(list, host, "rust-src"));
        assert!(has_component(list, host, "clippy"));
        assert!(!has_component(list, host, "rustfmt"));
        assert!(!has_component(list, host, "rust"));
        assert!(!has_component(list, host, "std-x86_64"));
    }

    #[test]
    fn host_from_rustc() {
        let out = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
        assert_eq!(
            host_triple(out).as_deref(),
            Some("x86_64-unknown-linux-gnu")
        );
        assert_eq!(host_triple("rustc 1.95.0\n"), None);
    }

    #[test]
    fn bpf_linker_version() {
        assert!(is_wanted_bpf_linker("bpf-linker 0.13.0\n"));
        assert!(is_wanted_bpf_linker("bpf-linker 0.13.2"));
        assert!(!is_wanted_bpf_linker("bpf-linker 0.12.1"));
        assert!(!is_wanted_bpf_linker("bpf-linker 0.130.0"));
        assert!(!is_wanted_bpf_linker(""));
    }

    /// The programs the sources start (by a string literal after
    /// `Command::new(`, `.command(&[` or `.exec(&[`), each with a package
    /// setup or the kernel matrix
    /// installs, or that every Debian system has.
    #[test]
    fn every_program_the_sources_run_has_a_package() {
        // Not Debian's to install: ours, rustup's, setup's own rust step;
        // sudo only runs for a user who is not root, and has it then.
        const NOT_APT: &[&str] = &["macdrop", "cargo", "rustup", "rustc", "bpf-linker", "sudo"];
        let root = crate::cmd::workspace_root();
        let mut found = std::collections::BTreeSet::new();
        for dir in ["tests/src", "tests/tests", "xtask/src", "monitor/src"] {
            for file in rust_files(&root.join(dir)) {
                let text = std::fs::read_to_string(&file).unwrap();
                for tool in programs_started(&text) {
                    found.insert((tool, file.display().to_string()));
                }
            }
        }
        assert!(
            found.iter().any(|(t, _)| t == "ip"),
            "the scan finds nothing"
        );
        for (tool, file) in &found {
            assert!(
                NOT_APT.contains(&tool.as_str()) || TOOLS.iter().any(|(t, _)| t == tool),
                "{file} runs {tool}: add it and its package to setup::TOOLS"
            );
        }
        for (tool, package) in TOOLS {
            assert!(
                APT_PACKAGES.contains(package)
                    || crate::kernel_matrix::APT_PACKAGES.contains(package)
                    || crate::dist::APT_PACKAGES.contains(package)
                    || ESSENTIAL.contains(package),
                "{tool}: package {package} is installed by nothing"
            );
        }
    }

    #[test]
    fn programs_are_found_in_their_usual_spellings() {
        let text = r#"Command::new("tshark") ns.exec(&[
                "ip", "link"]) x.command(&["tmux", "-V"]) Command::new(tool) exec(&[cmd])"#;
        assert_eq!(programs_started(text), ["tshark", "ip", "tmux"]);
    }

    /// The literal first word after each way the sources start a program.
    fn programs_started(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for pattern in ["Command::new(", ".command(&[", ".exec(&["] {
            for (at, _) in text.match_indices(pattern) {
                let rest = text[at + pattern.len()..].trim_start();
                if let Some(rest) = rest.strip_prefix('"')
                    && let Some(end) = rest.find('"')
                    // A program's name, not this test's own patterns.
                    && !rest[..end].is_empty()
                    && rest[..end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    out.push(rest[..end].to_owned());
                }
            }
        }
        // In the order they appear.
        let order = |t: &String| text.find(&format!("\"{t}\"")).unwrap_or(0);
        out.sort_by_key(order);
        out
    }

    fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(rust_files(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
        out
    }
}
