//! `cargo xtask`: the project's commands (`cargo xtask --help`). One module
//! per command; `cmd` runs programs, `ui` formats progress.

mod bench;
mod build;
mod cmd;
mod dist;
mod kernel_matrix;
mod lint;
mod run;
mod setup;
mod test;
mod ui;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, lint, test and run macdrop."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing: Debian packages (LLVM 22 and every tool the
    /// tests run: setup::TOOLS), rustup nightly + rust-src, clippy/rustfmt,
    /// bpf-linker 0.13. Idempotent.
    Setup {
        /// Only check and print what would be installed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Setup, then build macdrop (`cargo build -p monitor`; the eBPF object is
    /// built and embedded by monitor/build.rs).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// The whole suite, as CI runs it: setup, lint, build, `cargo test` over
    /// the workspace with MACDROP_BIN set. Needs root.
    Test {
        /// Skip the four-kernel matrix (`cargo xtask kernel-matrix`), which
        /// the whole suite otherwise includes (a few minutes).
        #[arg(long)]
        no_kernel_matrix: bool,
        /// Also build the release artifacts (`cargo xtask dist`) first, so
        /// the tests that install and run them (tests/tests/deploy/dist.rs)
        /// run instead of being skipped.
        #[arg(long)]
        dist: bool,
        /// Passed to `cargo test`: a test name filter, or `-- --nocapture`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup + the release artifacts in target/dist/: a static x86_64 musl
    /// binary, a .deb, an OCI image archive (buildah, FROM scratch), and
    /// SHA256SUMS; records the image's digest in
    /// deploy/kubernetes/kustomization.yaml.
    Dist {
        /// The repository's URL for the image's org.opencontainers.image.source
        /// (default: `git remote get-url origin` without credentials; none:
        /// no source label).
        #[arg(long, value_name = "URL")]
        source: Option<String>,
    },
    /// `cargo fmt --check` and clippy (host crates, and the eBPF crate for
    /// bpfel-unknown-none), warnings denied.
    Lint,
    /// Setup + build, then the demo (no ARGS) or `macdrop ARGS` as root
    /// (via sudo if needed); exits with macdrop's exit code.
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for macdrop.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup + build, then the demo (same as `run` without arguments).
    Demo {
        #[arg(long)]
        release: bool,
    },
    /// Measure macdrop's cost (per-frame test_run, end-to-end rate per
    /// hook and against tcpdump, userspace CPU/RSS and attach time with
    /// 1,000 ports); writes target/bench/bench.{md,json}. Needs root.
    Bench(bench::Args),
    /// Boot Debian's cloud kernels 5.10, 6.1, 6.12 under QEMU and run a
    /// privileged smoke subset in each, and natively on the host's kernel;
    /// prints a table, writes target/kernel-matrix/report.md. Needs root.
    KernelMatrix(kernel_matrix::Args),
    /// Internal: the demo with an already built binary, as root (what `demo`
    /// re-executes under sudo).
    #[command(hide = true)]
    DemoAsRoot { bin: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) => {
            // `{:#}`: the error and its causes on one line, no backtrace.
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Setup { dry_run } => setup::run(&setup::Options { dry_run })?,
        Command::Build { release } => {
            setup::run(&setup::Options::default())?;
            let bin = build::run(release)?;
            println!("xtask: built {}", bin.display());
        }
        Command::Test {
            no_kernel_matrix,
            dist,
            args,
        } => test::run(
            &test::Options {
                kernel_matrix: !no_kernel_matrix,
                dist,
            },
            &args,
        )?,
        Command::Dist { source } => dist::run(source.as_deref())?,
        Command::Lint => lint::run()?,
        Command::Run { release, args } => return run::run(release, &args),
        Command::Demo { release } => return run::run(release, &[]),
        Command::DemoAsRoot { bin } => run::demo_as_root(&bin)?,
        Command::KernelMatrix(args) => return kernel_matrix::run(&args),
        Command::Bench(args) => bench::run(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_passes_arguments_after_double_dash() {
        let cli = Cli::try_parse_from(["xtask", "run", "--release", "--", "--json", "-i", "eth0"])
            .expect("parses");
        let Command::Run { release, args } = cli.command else {
            panic!("not run");
        };
        assert!(release);
        assert_eq!(args, ["--json", "-i", "eth0"]);
    }
}
