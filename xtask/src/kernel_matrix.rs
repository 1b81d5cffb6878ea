//! `cargo xtask kernel-matrix`: macdrop on the kernels people run. Debian's
//! cloud kernels 5.10 (bullseye), 6.1 (bookworm) and 6.12 (trixie) boot
//! under QEMU (TCG: this machine's /dev/kvm cannot run them) from a small
//! initramfs whose `/init` runs `matrix_guest` (tests/src/bin), and the same
//! program runs natively on the host's own kernel. Each prints a verdict and
//! what it observed (hooks, drop reasons, the otherhost counter) on its
//! console; this collects them into a table and `target/kernel-matrix/
//! report.md`, and fails if any kernel failed.
//!
//! Everything it needs it fetches or installs itself, idempotently: the apt
//! packages it runs (QEMU, xz, binutils), the pinned kernel and busybox
//! packages (private apt configuration, cached under
//! `target/kernel-matrix/`; see `packages`), macdrop and the guest program.
//!
//! Layout of `target/kernel-matrix/`: `apt/` (private apt state), `debs/`
//! (the pinned packages), `kernels/LABEL-VERSION/` (vmlinuz, decompressed
//! modules, kernel release), `runs/LABEL/` (console.log; the initramfs with
//! `--keep`), `report.md`; with `--macdrop PATH` (another binary, e.g.
//! dist's static one) `runs-given/LABEL/` and `report-given.md` instead.

mod console;
mod initramfs;
mod packages;

use std::{
    collections::VecDeque,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::{
    build,
    cmd::{Cmd, find_in_path, is_root, workspace_root},
    setup, ui,
};

use self::{
    console::Outcome,
    packages::{BUSYBOX, KERNELS, Kernel, PrivateApt},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kernels to run, in this order: 5.10, 6.1, 6.12 (Debian cloud kernels
    /// under QEMU) and host (this machine's kernel, natively).
    #[arg(long, value_delimiter = ',', default_value = "5.10,6.1,6.12,host")]
    kernels: Vec<String>,
    /// Keep each guest's initramfs in target/kernel-matrix/runs/ and print
    /// the QEMU command that boots it.
    #[arg(long)]
    keep: bool,
    /// QEMU guests to boot at once. Each has 2 vCPUs; on 2 cores, 2 at
    /// once still finish sooner than one after the other.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Only print the newest version of each pinned package in Debian's
    /// archive (to update the pins in xtask/src/kernel_matrix/packages.rs).
    #[arg(long)]
    resolve: bool,
    /// Run this macdrop binary instead of the debug build (the static one
    /// of `cargo xtask dist`: `cargo xtask test --dist` boots 5.10 with
    /// it). Its runs and report go to runs-given/ and report-given.md,
    /// beside the matrix's own.
    #[arg(long, value_name = "PATH")]
    macdrop: Option<PathBuf>,
}

/// The oldest kernel of the matrix (`--kernels` label): the static binary
/// of `cargo xtask dist` is run there by `cargo xtask test --dist`.
pub fn oldest_kernel() -> &'static str {
    KERNELS[0].label
}

/// Kernel modules the labs need, in load order (`llc` and `stp` before
/// `bridge`; `sch_ingress` and `cls_bpf` for tc below TCX; `garp` and
/// `mrp` before `8021q`, whose VLAN devices the fate oracle's VLAN lab
/// needs). The cloud kernels build them as modules and ship no
/// modules.dep.
const MODULES: &[&str] = &[
    "llc",
    "stp",
    "bridge",
    "veth",
    "sch_ingress",
    "cls_bpf",
    "garp",
    "mrp",
    "8021q",
];

/// Apt packages the matrix runs: QEMU, xz for 6.12's compressed modules,
/// strip from binutils.
pub const APT_PACKAGES: &[&str] = &["qemu-system-x86", "xz-utils", "binutils"];

/// The QEMU machine: TCG (no KVM), the emulated CPU with every feature,
/// 1 GiB, 2 vCPUs, no default devices, the serial console on stdio.
const QEMU_MEMORY: &str = "1024";
const QEMU_CPUS: &str = "2";
const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 quiet";

/// Limits per run. A TCG guest takes 5-7 minutes in CI (two at a time on
/// 2 CPUs), its longest check (fate) about 2 minutes without a line; the
/// host about 20 s. The ceilings keep three guests plus the host inside
/// half of CI's 90 minutes even if each one hangs.
const QEMU_LIMITS: console::Limits = console::Limits {
    silence: Duration::from_secs(300),
    total: Duration::from_secs(900),
};
const HOST_LIMITS: console::Limits = console::Limits {
    silence: Duration::from_secs(180),
    total: Duration::from_secs(300),
};

/// One entry of `--kernels`.
#[derive(Clone, Copy, Debug)]
enum Target {
    Qemu(&'static Kernel),
    Host,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Qemu(kernel) => kernel.label,
            Target::Host => "host",
        }
    }
}

fn parse_targets(names: &[String]) -> Result<Vec<Target>> {
    let mut targets = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let target = if name == "host" {
            Target::Host
        } else {
            Target::Qemu(KERNELS.iter().find(|k| k.label == name).with_context(|| {
                format!(
                    "unknown kernel {name:?} in --kernels; choose from {}, host",
                    KERNELS
                        .iter()
                        .map(|k| k.label)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?)
        };
        ensure!(
            !targets.iter().any(|t: &Target| t.label() == target.label()),
            "{name} is listed twice in --kernels"
        );
        targets.push(target);
    }
    ensure!(!targets.is_empty(), "--kernels lists no kernel");
    Ok(targets)
}

/// A kernel unpacked from its package.
struct Unpacked {
    release: String,
    vmlinuz: PathBuf,
    /// (name, decompressed .ko), in [`MODULES`] order.
    modules: Vec<(String, PathBuf)>,
}

/// What one run produced, for the table and the report.
struct Row {
    target: Target,
    /// Package and version, or "native".
    source: String,
    outcome: Outcome,
    log: PathBuf,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    if !is_root() {
        bail!(
            "`cargo xtask kernel-matrix` needs root (it installs packages and the host run creates network namespaces and attaches eBPF programs); run it with sudo"
        );
    }
    let targets = parse_targets(&args.kernels)?;
    if args.resolve {
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from)
            .join("kernel-matrix");
        let mut apt = PrivateApt::new(dir.join("apt"));
        print!("{}", apt.resolve()?);
        return Ok(ExitCode::SUCCESS);
    }
    let start = Instant::now();
    let qemu: Vec<&Kernel> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Qemu(kernel) => Some(*kernel),
            Target::Host => None,
        })
        .collect();

    ui::phase("kernel-matrix: prerequisites");
    setup::run(&setup::Options::default())?;
    if !qemu.is_empty() {
        setup::ensure_packages(APT_PACKAGES)?;
    }

    ui::phase("kernel-matrix: build");
    let built = build::run(false)?;
    Cmd::cargo()
        .args([
            "build",
            "--package",
            "macdrop-tests",
            "--bin",
            "matrix_guest",
        ])
        .run()?;
    let guest = built.with_file_name("matrix_guest");
    ensure!(guest.is_file(), "no {} after the build", guest.display());
    let dir = built
        .parent()
        .and_then(Path::parent)
        .context("macdrop is not in <target>/debug")?
        .join("kernel-matrix");
    // A given binary's runs and report do not replace the matrix's own;
    // the packages and kernels are shared.
    let (macdrop, runs, report_name) = match &args.macdrop {
        Some(given) => {
            ensure!(
                given.is_file(),
                "--macdrop {}: no such file (run `cargo xtask dist` for the static binary)",
                given.display()
            );
            (
                fs::canonicalize(given)?,
                dir.join("runs-given"),
                "report-given.md",
            )
        }
        None => (built, dir.join("runs"), "report.md"),
    };
    println!("xtask: kernel-matrix: macdrop {}", macdrop.display());
    fs::create_dir_all(&runs)?;

    let mut images = Vec::new();
    if !qemu.is_empty() {
        ui::phase("kernel-matrix: kernel packages");
        let debs = dir.join("debs");
        fs::create_dir_all(&debs)?;
        let mut apt = PrivateApt::new(dir.join("apt"));
        let busybox_deb = packages::fetch(&mut apt, &BUSYBOX, &debs)?;
        let busybox = unpack_busybox(&busybox_deb, &dir.join("tools"))?;
        let mut unpacked = Vec::new();
        for kernel in &qemu {
            let deb = packages::fetch(&mut apt, &kernel.pin, &debs)?;
            let into = dir
                .join("kernels")
                .join(format!("{}-{}", kernel.label, kernel.pin.version));
            unpacked.push((*kernel, unpack_kernel(&deb, kernel, &into)?));
        }

        ui::phase("kernel-matrix: initramfs");
        let ip = tool("ip")?;
        let bridge = tool("bridge")?;
        let tc = tool("tc")?;
        let payload = initramfs::Payload {
            busybox: &busybox,
            ip: &ip,
            bridge: &bridge,
            tc: &tc,
            macdrop: &macdrop,
            guest: &guest,
        };
        let common = initramfs::common(&payload, &dir.join("work"))?;
        for (kernel, unpacked) in unpacked {
            let run_dir = runs.join(kernel.label);
            fs::create_dir_all(&run_dir)?;
            let image = run_dir.join("initramfs.cpio.gz");
            let archive = initramfs::for_kernel(&common, &unpacked.release, &unpacked.modules)?;
            archive.write_gz(&image)?;
            println!(
                "xtask: kernel-matrix: {} ({}): {} ({} MB of files, {:.1} MB compressed)",
                kernel.label,
                unpacked.release,
                image.display(),
                archive.payload_bytes() / 1_000_000,
                fs::metadata(&image)?.len() as f64 / 1e6
            );
            images.push((kernel.label, unpacked, image));
        }
        let _ = fs::remove_dir_all(dir.join("work"));
    }

    // QEMU guests `--jobs` at a time, then the host natively (alone, so
    // its timing is its own).
    let run = |target: Target| -> Result<Row> {
        ui::phase(&format!("kernel-matrix: {}", target.label()));
        let run_dir = runs.join(target.label());
        fs::create_dir_all(&run_dir)?;
        let log = run_dir.join("console.log");
        let (mut command, source, limits) = match target {
            Target::Host => {
                let mut command = Command::new(&guest);
                command.arg("--macdrop").arg(&macdrop);
                (command, "native".to_owned(), HOST_LIMITS)
            }
            Target::Qemu(kernel) => {
                let (_, unpacked, image) = images
                    .iter()
                    .find(|(label, _, _)| *label == kernel.label)
                    .expect("an image per QEMU kernel");
                let command = qemu_command(&unpacked.vmlinuz, image);
                println!("xtask: running {}", describe(&command));
                (
                    command,
                    format!("{} {}", kernel.pin.package, kernel.pin.version),
                    QEMU_LIMITS,
                )
            }
        };
        let mut outcome = console::run(&mut command, target.label(), &log, limits)?;
        // A guest kernel that dies before `/init` never ran a check (seen
        // once: 6.12 under TCG panicked in enqueue_timer 1.2 s into boot):
        // it is booted once more, its first console kept beside. Anything
        // after `/init` started is never retried.
        if matches!(target, Target::Qemu(_)) && outcome.pass.is_none() && outcome.boot.is_none() {
            let first = run_dir.join("console.first-boot.log");
            println!(
                "xtask: kernel-matrix: {}: the kernel stopped before /init ({}; console: {}); \
                 booting it once more",
                target.label(),
                outcome.problem.as_deref().unwrap_or("no verdict"),
                first.display()
            );
            fs::rename(&log, &first)?;
            outcome = console::run(&mut command, target.label(), &log, limits)?;
        }
        println!(
            "xtask: kernel-matrix: {}: {} in {}{} (console: {})",
            target.label(),
            result_word(&outcome),
            ui::duration(outcome.elapsed),
            outcome
                .problem
                .as_deref()
                .map(|p| format!(": {p}"))
                .unwrap_or_default(),
            log.display()
        );
        Ok(Row {
            target,
            source,
            outcome,
            log,
        })
    };
    let queue: Mutex<VecDeque<Target>> = Mutex::new(
        targets
            .iter()
            .copied()
            .filter(|t| matches!(t, Target::Qemu(_)))
            .collect(),
    );
    let done: Mutex<Vec<Result<Row>>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.clamp(1, qemu.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue lock").pop_front();
                    let Some(target) = next else { break };
                    let row = run(target);
                    done.lock().expect("results lock").push(row);
                }
            });
        }
    });
    let mut done = done.into_inner().expect("results lock");
    if targets.iter().any(|t| matches!(t, Target::Host)) {
        done.push(run(Target::Host));
    }
    let mut rows = Vec::new();
    for row in done {
        rows.push(row?);
    }
    // In the order of --kernels.
    rows.sort_by_key(|row| targets.iter().position(|t| t.label() == row.target.label()));

    let elapsed = start.elapsed();
    let table = table(&rows);
    println!("\n{table}");
    let report_path = dir.join(report_name);
    fs::write(&report_path, report(&rows, &table, elapsed, args.jobs))
        .with_context(|| format!("writing {}", report_path.display()))?;
    if args.keep {
        for (label, unpacked, image) in &images {
            println!(
                "xtask: kernel-matrix: {label}: kept {}; boot it with: {}",
                image.display(),
                describe(&qemu_command(&unpacked.vmlinuz, image))
            );
        }
    } else {
        for (_, _, image) in &images {
            let _ = fs::remove_file(image);
        }
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|row| !passed(row))
        .map(|row| row.target.label())
        .collect();
    println!(
        "xtask: kernel-matrix: {} in {} (report: {})",
        if failed.is_empty() {
            "PASSED".to_owned()
        } else {
            format!("FAILED on {}", failed.join(", "))
        },
        ui::duration(elapsed),
        report_path.display()
    );
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// An iproute2 tool from PATH or the usual places (root's PATH has sbin,
/// a sudo'd one not always).
fn tool(name: &str) -> Result<PathBuf> {
    find_in_path(name)
        .or_else(|| {
            ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .map(|dir| Path::new(dir).join(name))
                .find(|path| path.is_file())
        })
        .with_context(|| format!("{name} (iproute2) not found"))
}

/// `qemu-system-x86_64` booting `vmlinuz` with `initrd`.
fn qemu_command(vmlinuz: &Path, initrd: &Path) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            QEMU_MEMORY,
            "-smp",
            QEMU_CPUS,
        ])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", KERNEL_CMDLINE]);
    command
}

/// A command line as one would type it.
fn describe(command: &Command) -> String {
    Cmd::new(command.get_program())
        .args(command.get_args())
        .display()
}

/// `tools/busybox-VERSION`, extracted from the package once.
fn unpack_busybox(deb: &Path, tools: &Path) -> Result<PathBuf> {
    let bin = tools.join(format!("busybox-{}", BUSYBOX.version.replace(':', "_")));
    if bin.is_file() {
        return Ok(bin);
    }
    let tmp = tools.join(".unpack");
    let _ = fs::remove_dir_all(&tmp);
    packages::extract(deb, &tmp, &["*/bin/busybox"])?;
    let found = find_files(&tmp, &|path| path.ends_with("bin/busybox"))?;
    let busybox = found.first().context("no bin/busybox in busybox-static")?;
    fs::rename(busybox, &bin)?;
    fs::remove_dir_all(&tmp)?;
    Ok(bin)
}

/// vmlinuz, the modules of [`MODULES`] (decompressed) and the kernel
/// release, unpacked into `dir` once per package (a `complete` file holds
/// the package's SHA-256).
fn unpack_kernel(deb: &Path, kernel: &Kernel, dir: &Path) -> Result<Unpacked> {
    let stamp = dir.join("complete");
    // The package and the modules taken from it: a new module unpacks again.
    let stamp_text = format!("{} {}", kernel.pin.sha256, MODULES.join(","));
    let load = || -> Result<Unpacked> {
        Ok(Unpacked {
            release: fs::read_to_string(dir.join("release"))?.trim().to_owned(),
            vmlinuz: dir.join("vmlinuz"),
            modules: MODULES
                .iter()
                .map(|name| {
                    (
                        (*name).to_owned(),
                        dir.join("modules").join(format!("{name}.ko")),
                    )
                })
                .collect(),
        })
    };
    if fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == stamp_text) {
        println!(
            "xtask: kernel-matrix: {}: ok (already unpacked in {})",
            kernel.label,
            dir.display()
        );
        return load();
    }
    let _ = fs::remove_dir_all(dir);
    let tmp = dir.join("deb");
    let mut patterns = vec!["*/vmlinuz-*".to_owned()];
    patterns.extend(MODULES.iter().map(|m| format!("*/{m}.ko*")));
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    packages::extract(deb, &tmp, &patterns).with_context(|| {
        format!(
            "{} lacks vmlinuz or one of the modules {} (built in now?)",
            kernel.pin.package,
            MODULES.join(" ")
        )
    })?;

    let vmlinuz = find_files(&tmp, &|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
    })?;
    let [vmlinuz] = &vmlinuz[..] else {
        bail!(
            "expected one vmlinuz in {}, found {vmlinuz:?}",
            kernel.pin.package
        );
    };
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .context("vmlinuz name")?
        .to_owned();
    fs::rename(vmlinuz, dir.join("vmlinuz"))?;
    fs::create_dir_all(dir.join("modules"))?;
    for name in MODULES {
        let found = find_files(&tmp, &|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(name)
                    .is_some_and(|rest| rest == ".ko" || rest.starts_with(".ko."))
            })
        })?;
        let [module] = &found[..] else {
            bail!(
                "expected one {name}.ko in {}, found {found:?}",
                kernel.pin.package
            );
        };
        decompress(module, &dir.join("modules").join(format!("{name}.ko")))?;
    }
    fs::write(dir.join("release"), format!("{release}\n"))?;
    fs::remove_dir_all(&tmp)?;
    fs::write(&stamp, format!("{stamp_text}\n"))?;
    load()
}

/// Copies a module, decompressing `.ko.xz`/`.ko.zst`/`.ko.gz` (6.12 ships
/// xz; busybox's insmod wants plain ELF).
fn decompress(src: &Path, dest: &Path) -> Result<()> {
    let name = src.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        fs::copy(src, dest)?;
        return Ok(());
    };
    let out = fs::File::create(dest)?;
    let status = Command::new(tool)
        .arg("-dc")
        .arg(src)
        .stdout(out)
        .status()
        .with_context(|| format!("cannot start {tool}"))?;
    ensure!(
        status.success(),
        "{tool} -dc {} failed ({status})",
        src.display()
    );
    Ok(())
}

/// Regular files under `dir` for which `want` holds, sorted.
fn find_files(dir: &Path, want: &dyn Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && want(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

// ---- the table and the report -------------------------------------------------

fn result_word(outcome: &Outcome) -> &'static str {
    match outcome.pass {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "NO VERDICT",
    }
}

/// The default mode's capabilities, from the guest's JSON.
struct Caps {
    release: String,
    hooks: String,
    attach: String,
    drops: String,
    otherhost: String,
    /// The jumbo-MTU check of the default mode, and the veth peer's max
    /// MTU while watched.
    jumbo: String,
    /// The `--pcap` check of each mode that ran: the hook that captured
    /// and the frames read back, or FAIL.
    pcap: String,
    /// What stayed after SIGKILL in the default mode (and that the next
    /// start removed it), or FAIL.
    sigkill: String,
    /// Checks this kernel did not run, counted apart from the passed.
    skipped: String,
    /// What the kernel has (from the guest's independent readers) that
    /// macdrop's reports do not show, or show where the kernel has nothing.
    problems: Vec<String>,
}

fn caps(outcome: &Outcome) -> Caps {
    let Some(caps) = &outcome.caps else {
        return Caps {
            release: "?".into(),
            hooks: "?".into(),
            attach: "?".into(),
            drops: "?".into(),
            otherhost: "?".into(),
            jumbo: "?".into(),
            pcap: "?".into(),
            sigkill: "?".into(),
            skipped: "?".into(),
            problems: Vec::new(),
        };
    };
    let modes = caps["modes"].as_array().cloned().unwrap_or_default();
    let default = modes.first().cloned().unwrap_or(Value::Null);
    let hooks = default["hooks"]
        .as_object()
        .map(|hooks| {
            hooks
                .iter()
                .map(|(role, hook)| format!("{role}={}", hook.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|hooks| !hooks.is_empty())
        .unwrap_or_else(|| "none (failed)".into());
    let checks = caps["checks"].as_array().cloned().unwrap_or_default();
    let attach = if caps["attach_flag"] == Value::Bool(true) {
        modes
            .iter()
            .skip(1)
            .map(|mode| {
                let name = mode["attach"].as_str().unwrap_or("?");
                let state = if !mode["unsupported"].is_null() {
                    "unsupported".to_owned()
                } else if mode["same_as_default"] == Value::Bool(true) {
                    "= default".to_owned()
                } else {
                    let mine: Vec<&Value> = checks
                        .iter()
                        .filter(|c| {
                            c["name"]
                                .as_str()
                                .is_some_and(|n| n.ends_with(&format!("/{name}")))
                        })
                        .collect();
                    let hooks: Vec<&str> = mode["hooks"]
                        .as_object()
                        .map(|h| {
                            let mut v: Vec<&str> = h.values().filter_map(Value::as_str).collect();
                            v.sort_unstable();
                            v.dedup();
                            v
                        })
                        .unwrap_or_default();
                    let ok = !mine.is_empty() && mine.iter().all(|c| c["ok"] == Value::Bool(true));
                    let word = if ok { "ok" } else { "FAIL" };
                    if hooks.is_empty() {
                        word.to_owned()
                    } else {
                        format!("{word} ({})", hooks.join("+"))
                    }
                };
                format!("{name}: {state}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        "no --attach".into()
    };
    // What macdrop reported, from the first mode that got to see it (the
    // default mode may have failed before any report), against what the
    // kernel has, as the guest read it from its BTF and IFLA_STATS64:
    // required where it has it, absent where it has not.
    let mut problems = Vec::new();
    let mut available = |flag: &str, value: &str, has: &str, what: &str| {
        let Some(mode) = modes.iter().find(|m| m[flag].is_boolean()) else {
            return "?".to_owned();
        };
        let reported = mode[flag] == Value::Bool(true);
        match (caps["kernel_has"][has].as_bool(), reported) {
            (Some(false), false) => "n/a".into(),
            (Some(false), true) => {
                problems.push(format!("{what} reported, but the kernel has no {has}"));
                "UNEXPECTED".into()
            }
            (Some(true), false) => {
                problems.push(format!(
                    "{what} required (the kernel has {has}), reported null"
                ));
                "MISSING".into()
            }
            // Older guests did not say what the kernel has.
            (None, false) => "null".into(),
            (_, true) => match mode[value].as_u64() {
                Some(n) => format!("yes ({n})"),
                None => "yes".into(),
            },
        }
    };
    let drops = available(
        "drops",
        "drops_otherhost",
        "drop_reasons",
        "confirmed drops",
    );
    let otherhost = available(
        "otherhost",
        "otherhost_value",
        "otherhost_counter",
        "rx_otherhost_dropped",
    );
    let sigkill = match checks.iter().find(|c| c["name"] == "sigkill/default") {
        None => "?".to_owned(),
        Some(c) if c["ok"] != Value::Bool(true) => "FAIL".to_owned(),
        Some(_) => match default["sigkill"].as_str() {
            Some(s) if s.starts_with("nothing") => "none stayed".to_owned(),
            Some(s) => format!("clsact {}, cleaned", s.split(' ').next().unwrap_or("?")),
            None => "ok".to_owned(),
        },
    };
    let skipped: Vec<&str> = checks
        .iter()
        .filter(|c| c["skipped"].is_string())
        .filter_map(|c| c["name"].as_str())
        .collect();
    let jumbo_check = checks
        .iter()
        .find(|c| c["name"] == "jumbo/default")
        .map(|c| c["ok"] == Value::Bool(true));
    let jumbo = match (jumbo_check, default["jumbo"].as_str()) {
        (None, _) => "?".to_owned(),
        (Some(false), _) => "FAIL".to_owned(),
        (Some(true), Some(how)) => how.split([' ', ':']).next().unwrap_or(how).to_owned(),
        (Some(true), None) => "ok".to_owned(),
    };
    let peer_max = modes.iter().find_map(|m| m["peer_max_mtu"].as_u64());
    let pcap = modes
        .iter()
        .filter_map(|mode| {
            let name = format!("pcap/{}", mode["attach"].as_str()?);
            let ok = checks.iter().find(|c| c["name"] == name.as_str())?["ok"] == Value::Bool(true);
            // "4 frames (tcx)" -> "tcx 4"
            let how = mode["pcap"].as_str().unwrap_or("?");
            let (n, hook) = how.split_once(" frames (").unwrap_or((how, ")"));
            Some(if ok {
                format!("{} {n}", hook.trim_end_matches(')'))
            } else {
                format!("{}: FAIL", mode["attach"].as_str().unwrap_or("?"))
            })
        })
        .collect::<Vec<_>>();
    Caps {
        release: caps["kernel"].as_str().unwrap_or("?").to_owned(),
        hooks,
        attach,
        drops,
        otherhost,
        jumbo: match peer_max {
            Some(mtu) => format!("{jumbo} ({mtu})"),
            None => jumbo,
        },
        pcap: if pcap.is_empty() {
            "?".to_owned()
        } else {
            pcap.join(", ")
        },
        sigkill,
        skipped: if skipped.is_empty() {
            "0".to_owned()
        } else {
            format!("{} ({})", skipped.len(), skipped.join(", "))
        },
        problems,
    }
}

/// Whether a row passed: the guest's verdict, and nothing the kernel has
/// missing from macdrop's reports (the guest checks that too; this is the
/// table's own reading of the same facts).
fn passed(row: &Row) -> bool {
    row.outcome.pass == Some(true) && caps(&row.outcome).problems.is_empty()
}

/// The summary table, aligned, also used (as is) in the report.
fn table(rows: &[Row]) -> String {
    let header = [
        "KERNEL",
        "RELEASE",
        "BOOT",
        "TOTAL",
        "RESULT",
        "HOOKS (default)",
        "--attach",
        "DROPS",
        "OTHERHOST",
        "JUMBO (peer max MTU)",
        "PCAP (hook frames)",
        "SIGKILL (leftovers)",
        "SKIPPED",
    ]
    .map(str::to_owned);
    let mut lines = vec![header.to_vec()];
    for row in rows {
        let caps = caps(&row.outcome);
        lines.push(vec![
            row.target.label().to_owned(),
            caps.release,
            row.outcome
                .boot
                .map_or_else(|| "-".to_owned(), ui::duration),
            ui::duration(row.outcome.elapsed),
            if row.outcome.pass == Some(true) && !passed(row) {
                "FAIL".to_owned()
            } else {
                result_word(&row.outcome).to_owned()
            },
            caps.hooks,
            caps.attach,
            caps.drops,
            caps.otherhost,
            caps.jumbo,
            caps.pcap,
            caps.sigkill,
            caps.skipped,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    lines
        .iter()
        .map(|line| {
            line.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn report(rows: &[Row], table: &str, elapsed: Duration, jobs: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# macdrop kernel matrix\n");
    let _ = writeln!(
        out,
        "`cargo xtask kernel-matrix`: {} in {} (QEMU TCG, {} vCPUs, {} MiB, {} guest(s) at once).\n",
        if rows.iter().all(passed) {
            "PASSED"
        } else {
            "FAILED"
        },
        ui::duration(elapsed),
        QEMU_CPUS,
        QEMU_MEMORY,
        jobs
    );
    let _ = writeln!(out, "```text\n{table}\n```\n");
    let _ = writeln!(
        out,
        "DROPS: confirmed kernel drops (`kernel_drops` non-null), with the OTHERHOST count on the \
         standalone veth (expected 5); required where the kernel's BTF has `enum \
         skb_drop_reason`, `n/a` where it has none (MISSING or UNEXPECTED fail). OTHERHOST: \
         `rx_otherhost_dropped_since_attach` non-null, with its value there (expected 5); required \
         where the kernel's IFLA_STATS64 carries the counter, `n/a` where not. What the kernel \
         has is read by the guest from its BTF and a netlink answer, never from its version. \
         SIGKILL: what stayed after SIGKILL with the default hooks (the clsact filters and \
         qdiscs on every interface attached through clsact, nothing with TCX or XDP), removed \
         by the next start, nothing after its SIGINT. SKIPPED: checks not run on this kernel, \
         never counted as passed. JUMBO: a veth whose peer has MTU 9000 watched with \
         frames of 8000 bytes (counted, or refused with exit 3; FAIL otherwise), and in \
         parentheses the peer's max_mtu while macdrop watched a plain veth (native XDP without \
         multi-buffer caps it at 3506). PCAP: `--pcap` on the standalone veth, per attach mode \
         that ran: the hook that captured and the mismatched frames read back (exactly those \
         sent, byte for byte up to 128 bytes, with their lengths; expected 4), or FAIL. BOOT: \
         QEMU start to `/init`.\n"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "## {} — {}\n",
            row.target.label(),
            if row.outcome.pass == Some(true) && !passed(row) {
                "FAIL"
            } else {
                result_word(&row.outcome)
            }
        );
        let _ = writeln!(out, "- source: {}", row.source);
        if let Target::Qemu(kernel) = row.target {
            let _ = writeln!(out, "- sha256: `{}`", kernel.pin.sha256);
        }
        if let Some(verdict) = &row.outcome.verdict {
            let _ = writeln!(out, "- verdict: `{verdict}`");
        }
        if let Some(problem) = &row.outcome.problem {
            let _ = writeln!(out, "- problem: {problem}");
        }
        let _ = writeln!(out, "- console: `{}`", row.log.display());
        for problem in caps(&row.outcome).problems {
            let _ = writeln!(out, "- FAILED: {problem}");
        }
        if let Some(caps) = &row.outcome.caps {
            if !caps["kernel_has"].is_null() {
                let _ = writeln!(out, "- the kernel has: `{}`", caps["kernel_has"]);
            }
            for check in caps["checks"].as_array().into_iter().flatten() {
                let name = check["name"].as_str().unwrap_or("?");
                let _ = match check["skipped"].as_str() {
                    Some(why) => writeln!(out, "- check `{name}`: SKIPPED: {why}"),
                    None => writeln!(
                        out,
                        "- check `{name}`: {} in {}s{}",
                        if check["ok"] == Value::Bool(true) {
                            "ok"
                        } else {
                            "FAILED"
                        },
                        check["secs"],
                        check["error"]
                            .as_str()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                };
            }
            for mode in caps["modes"].as_array().into_iter().flatten() {
                if mode["same_as_default"] == Value::Bool(true) {
                    let _ = writeln!(
                        out,
                        "- attach `{}`: the default attached these hooks everywhere; not repeated",
                        mode["attach"].as_str().unwrap_or("?")
                    );
                    continue;
                }
                let _ = writeln!(
                    out,
                    "- attach `{}`: hooks {}, drops {}, otherhost {}{}",
                    mode["attach"].as_str().unwrap_or("?"),
                    mode["hooks"],
                    mode["drops"],
                    mode["otherhost"],
                    mode["unsupported"]
                        .as_str()
                        .map(|u| format!(", unsupported: {u}"))
                        .unwrap_or_default()
                );
                if let Some(jumbo) = mode["jumbo"].as_str() {
                    let _ = writeln!(out, "  - jumbo (peer MTU 9000): {jumbo}");
                }
                if let Some(pcap) = mode["pcap"].as_str() {
                    let _ = writeln!(out, "  - pcap: {pcap} read back");
                }
                if let Some(sigkill) = mode["sigkill"].as_str() {
                    let _ = writeln!(out, "  - after SIGKILL: {sigkill}");
                }
                if let Some(mtu) = mode["peer_max_mtu"].as_u64() {
                    let _ = writeln!(out, "  - veth peer max_mtu while watched: {mtu}");
                }
                if let Some(why) = mode["drops_unavailable"].as_str() {
                    let _ = writeln!(out, "  - drops_unavailable: {why}");
                }
                for line in mode["stderr"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "  - macdrop stderr: `{}`",
                        line.as_str().unwrap_or("?")
                    );
                }
            }
        }
        if row.outcome.pass != Some(true) {
            let _ = writeln!(out, "\nLast console lines:\n\n```text");
            for line in &row.outcome.tail {
                let _ = writeln!(out, "{line}");
            }
            let _ = writeln!(out, "```");
        }
        let _ = writeln!(out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_targets(&["6.1".into(), "host".into()]).unwrap();
        assert_eq!(
            t.iter().map(|t| t.label()).collect::<Vec<_>>(),
            ["6.1", "host"]
        );
        assert!(parse_targets(&["4.19".into()]).is_err());
        assert!(parse_targets(&["host".into(), "host".into()]).is_err());
        assert!(parse_targets(&[]).is_err());
    }

    #[test]
    fn table_from_caps() {
        let caps: Value = serde_json::from_str(
            r#"{"kernel":"5.10.0-46-cloud-amd64","btf":true,"attach_flag":true,
                "modes":[{"attach":"default","hooks":{"bridge":"xdp-generic","port":"xdp-driver"},
                          "drops":false,"otherhost":false,"pcap":"4 frames (xdp-driver)"},
                         {"attach":"tc","hooks":{"bridge":"tc","port":"tc"},"drops":false,"otherhost":false}],
                "checks":[{"name":"bridge/default","ok":true},{"name":"bridge/tc","ok":false},
                          {"name":"pcap/default","ok":true},{"name":"pcap/tc","ok":false}]}"#,
        )
        .unwrap();
        let row = Row {
            target: Target::Qemu(&KERNELS[0]),
            source: "x".into(),
            outcome: Outcome {
                pass: Some(false),
                caps: Some(caps),
                boot: Some(Duration::from_millis(2500)),
                elapsed: Duration::from_secs(40),
                ..Outcome::default()
            },
            log: PathBuf::from("log"),
        };
        let table = table(&[row]);
        let line = table.lines().nth(1).unwrap();
        let cells: Vec<&str> = line
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cells,
            [
                "5.10",
                "5.10.0-46-cloud-amd64",
                "2.5s",
                "40.0s",
                "FAIL",
                "bridge=xdp-generic port=xdp-driver",
                "tc: FAIL (tc)",
                "null",
                "null",
                "?",
                "xdp-driver 4, tc: FAIL",
                "?",
                "0"
            ],
            "{table}"
        );
    }

    fn row_of(caps: &str, pass: bool) -> Row {
        Row {
            target: Target::Qemu(&KERNELS[1]),
            source: "x".into(),
            outcome: Outcome {
                pass: Some(pass),
                caps: Some(serde_json::from_str(caps).unwrap()),
                elapsed: Duration::from_secs(40),
                ..Outcome::default()
            },
            log: PathBuf::from("log"),
        }
    }

    /// What the kernel has decides: required there, `n/a` where it has
    /// none; the leftovers after SIGKILL and the skipped checks are shown.
    #[test]
    fn the_kernel_decides_what_is_required() {
        let good = r#"{"kernel":"6.1.0-56-cloud-amd64","attach_flag":false,
            "kernel_has":{"drop_reasons":true,"otherhost_counter":false},
            "modes":[{"attach":"default","hooks":{"port":"tc-clsact"},"drops":true,
                      "drops_otherhost":5,"otherhost":false,
                      "sigkill":"3 clsact filter(s) and qdisc(s) stayed (p1 p2 br0), the next start removed them"}],
            "checks":[{"name":"sigkill/default","ok":true},
                      {"name":"fate/default/VlanDevices","ok":true,"skipped":"no 8021q"}]}"#;
        let row = row_of(good, true);
        let c = caps(&row.outcome);
        assert_eq!(
            (c.drops.as_str(), c.otherhost.as_str(), c.sigkill.as_str()),
            ("yes (5)", "n/a", "clsact 3, cleaned")
        );
        assert_eq!(c.skipped, "1 (fate/default/VlanDevices)");
        assert!(passed(&row));

        // The kernel has the counter, the report says null: the row fails,
        // whatever the guest's verdict.
        let missing = good.replace(
            r#""otherhost_counter":false"#,
            r#""otherhost_counter":true"#,
        );
        let row = row_of(&missing, true);
        let c = caps(&row.outcome);
        assert_eq!(c.otherhost, "MISSING");
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert!(!passed(&row));
        assert!(table(&[row]).lines().nth(1).unwrap().contains(" FAIL "));
    }
}
