//! `macdrop diagnose`: watch for a window, then print the findings; with
//! `--fail-on SEVERITY` end with exit code 4 when one reaches it.

use crate::{
    cli::{DiagnoseArgs, FailOn, Format},
    diagnose::{diagnose, finding::Severity, render},
    error::Outcome,
    output::Sink,
};

pub async fn run(args: DiagnoseArgs) -> anyhow::Result<Outcome> {
    let format = args.format.printing("diagnose")?;
    let capture = args.pcap.plan()?;
    // `--pcap -`: stdout carries the capture, the findings go to stderr.
    let sink = Sink::for_reports(capture.as_ref().is_some_and(|e| e.target.is_stdout()));
    let report = diagnose(&args.select, args.duration, capture).await?;
    let text = match format {
        Format::Json => render::json(&report),
        Format::Table | Format::None => {
            let numbers = crate::render::Numbers::from_flag(args.human);
            crate::untrusted::for_terminal(&render::table(&report, numbers))
        }
    };
    let printed = super::print(sink, &text)?;
    let Some(threshold) = args.fail_on else {
        return Ok(printed);
    };
    let worst = match threshold {
        FailOn::Error => Severity::Error,
        FailOn::Warning => Severity::Warning,
        FailOn::Info => Severity::Info,
    };
    Ok(if report.findings.iter().any(|f| f.severity() <= worst) {
        Outcome::FindingsFound
    } else {
        printed
    })
}
