//! The `macdrop` binary: parse flags, run the command, turn errors into one
//! line on stderr and a documented exit code (see `error.rs`).

use std::process::ExitCode;

use macdrop::{
    cli::Command,
    cmd,
    error::{ExitKind, classify},
    output::{Sink, closed, error, panic_line},
};

fn main() -> ExitCode {
    // A panic is a bug: one line (lost if stderr is gone, never a second
    // panic), then the unwinding detaches what is attached (the sessions'
    // drops) and the process exits 1, the documented code, not Rust's 101.
    std::panic::set_hook(Box::new(|info| error(panic_line(info))));
    std::panic::catch_unwind(run).unwrap_or(ExitCode::from(ExitKind::Unexpected as u8))
}

fn run() -> ExitCode {
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
            error(format_args!("cannot start the async runtime: {e}"));
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
        // `| head` read what it wanted: an end like any other.
        Err(err) if closed(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let (kind, message) = classify(&err);
            error(message);
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
            // A closed or full stdout is not worth a panic here.
            let _ = Sink::Stdout.write(macdrop::version::long().as_bytes());
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
            error(format_args!("{first} (see macdrop --help)"));
            ExitCode::from(ExitKind::Usage as u8)
        }
    }
}
