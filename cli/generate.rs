//! `--generate`: shell completions and the man page of a binary, from its
//! clap definitions.
//!
//! The same for `sumserver`, `sumclient` and `sumworker`, so each binary's
//! `cli.rs` includes this one file (`#[path]`) instead of a copy: clap stays
//! inside the binaries' `cli.rs`, and a crate of its own for forty lines
//! would cost more than it gives.

use clap::ValueEnum;

/// What `--generate` writes: a shell's completion script or the man page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Generate {
    /// Completions for bash.
    Bash,
    /// Completions for zsh.
    Zsh,
    /// Completions for fish.
    Fish,
    /// The man page (roff), for `man -l` or a man1 folder.
    Man,
}

/// Writes what `what` names for `command` to `out`.
///
/// # Errors
///
/// When `out` cannot be written.
pub(crate) fn write(
    what: Generate,
    mut command: clap::Command,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let name = command.get_name().to_owned();
    let shell = match what {
        Generate::Bash => clap_complete::Shell::Bash,
        Generate::Zsh => clap_complete::Shell::Zsh,
        Generate::Fish => clap_complete::Shell::Fish,
        Generate::Man => return clap_mangen::Man::new(command).render(out),
    };
    // clap_complete panics when it cannot write (`| head` closing the
    // pipe): it writes to memory, which cannot fail, and this to `out`.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    out.write_all(&script)
}
