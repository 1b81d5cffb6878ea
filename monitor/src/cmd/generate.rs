//! `macdrop completions SHELL` and `macdrop man [COMMAND]`: what packages
//! install (shell completions, man pages), generated from the parser's own
//! definition so they cannot drift from it. Both print to stdout; macdrop
//! writes no file.

use clap::CommandFactory as _;

use crate::{
    cli::Cli,
    error::{Failure, Outcome},
};

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<Outcome> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "macdrop", &mut out);
    super::print(&String::from_utf8_lossy(&out))
}

/// macdrop(1), or macdrop-COMMAND(1).
pub fn man(command: Option<&str>) -> anyhow::Result<Outcome> {
    super::print(&String::from_utf8_lossy(&page(command)?))
}

/// The roff of one page. Every command's page is named macdrop-COMMAND and
/// its synopsis reads `macdrop COMMAND ...`.
pub fn page(command: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let version = env!("CARGO_PKG_VERSION");
    let root = Cli::command().version(version);
    let cmd = match command {
        None => root,
        Some(name) => {
            let sub = root
                .get_subcommands()
                .find(|c| c.get_name() == name && !c.is_hide_set())
                .cloned()
                .ok_or_else(|| {
                    let names: Vec<&str> = root
                        .get_subcommands()
                        .filter(|c| !c.is_hide_set())
                        .map(|c| c.get_name())
                        .collect();
                    anyhow::Error::new(Failure::usage(format!(
                        "no command named {name}; man pages exist for: {}",
                        names.join(", ")
                    )))
                })?;
            let page = format!("macdrop-{name}");
            sub.name(page.clone())
                .bin_name(format!("macdrop {name}"))
                .display_name(page)
                .version(version)
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(|e| anyhow::anyhow!("cannot render the man page: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_page_that_documents_its_flags() {
        let watch = String::from_utf8(page(Some("watch")).unwrap()).unwrap();
        assert!(watch.starts_with(".ie \\n(.g .ds Aq"), "{}", &watch[..80]);
        assert!(
            watch.contains(&format!(
                ".TH macdrop-watch 1  \"macdrop-watch {}\"",
                env!("CARGO_PKG_VERSION")
            )),
            "{watch}"
        );
        assert!(watch.contains("\\-\\-bridge"), "{watch}");
        let root = String::from_utf8(page(None).unwrap()).unwrap();
        assert!(root.contains(".TH macdrop 1"), "{root}");
        for name in ["status", "top", "diagnose", "completions"] {
            assert!(page(Some(name)).is_ok(), "{name}");
        }
        assert!(page(Some("man")).is_err(), "the hidden command has no page");
        assert!(page(Some("nope")).is_err());
    }

    #[test]
    fn completions_know_the_commands_and_flags() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "macdrop",
            &mut out,
        );
        let bash = String::from_utf8(out).unwrap();
        for word in ["watch", "diagnose", "--bridge", "--top-flows"] {
            assert!(bash.contains(word), "{word}");
        }
    }
}
