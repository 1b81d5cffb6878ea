//! The `macdrop` binary: parse flags, run the command, turn errors into one
//! line on stderr and a documented exit code (see `error.rs`).

use std::process::ExitCode;

use macdrop::{
    cli::Command,
    cmd,
    error::{ExitKind, classify},
};

fn main() -> ExitCode {
    // A panic is a bug: one line, exit 1, no backtrace. Links are file
    // descriptors, so nothing stays attached when the process ends.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("macdrop: internal error (a bug, please report it): {info}");
    }));

    // The command line, completed from `--config FILE` where it is silent.
    let cli = match macdrop::config_file::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    macdrop::kernel::klog::set_level(cli.kernel_log);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("macdrop: cannot start the async runtime: {e}");
            return ExitCode::from(ExitKind::Unexpected as u8);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Watch(args) => cmd::watch::run(args).await,
            Command::Status(args) => cmd::status::run(args).await,
            Command::Top(args) => cmd::top::run(args).await,
            Command::Diagnose(args) => cmd::diagnose::run(args).await,
            Command::Completions(args) => cmd::generate::completions(args.shell),
            Command::Man(args) => cmd::generate::man(args.command.as_deref()),
        }
    });
    match result {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(err) => {
            let (kind, message) = classify(&err);
            eprintln!("macdrop: {message}");
            ExitCode::from(kind as u8)
        }
    }
}

/// clap's own help/version output is printed as is; real usage errors are
/// shortened to their first line, with a pointer to --help.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        // The build and this kernel's features, not just the number.
        ErrorKind::DisplayVersion => {
            use std::io::Write as _;
            // A closed or full stdout is not worth a panic here.
            let _ = std::io::stdout().write_all(macdrop::version::long().as_bytes());
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(ExitKind::Usage as u8)
        }
        _ => {
            let text = e.render().to_string();
            let mut lines = text.lines();
            let first = lines.next().unwrap_or("invalid arguments");
            let mut first = first.strip_prefix("error: ").unwrap_or(first).to_owned();
            // "the following required arguments were not provided:" lists
            // them on the next, indented lines: keep them on the one line.
            if first.ends_with(':') {
                let listed: Vec<&str> = lines
                    .take_while(|l| l.starts_with("  "))
                    .map(str::trim)
                    .collect();
                first = format!("{first} {}", listed.join(", "));
            }
            eprintln!("macdrop: {first} (see macdrop --help)");
            ExitCode::from(ExitKind::Usage as u8)
        }
    }
}
