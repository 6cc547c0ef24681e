//! Writes the man page and the bash, zsh and fish completions of
//! telegraf-netstat into a directory, from the same clap definition that
//! parses the command line: they cannot drift from `--help`.
//!
//! usage: dist-docs OUT_DIR TARGET  (writes telegraf-netstat.1 and completions/)
//!
//! TARGET is the target triple of the binary the page goes with: this example
//! runs on the build machine (gnu), while the packaged binary is musl, and the
//! page's version line must name the packaged one.

use std::path::PathBuf;

use clap_complete::{generate_to, Shell};

// The binary's own flag definitions: the library does not carry clap's
// parser, so the page is made from the same source file the binary
// compiles.
#[allow(dead_code)]
#[path = "../src/cli.rs"]
mod cli;

fn main() -> std::io::Result<()> {
    let usage = "usage: dist-docs OUT_DIR TARGET";
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().expect(usage));
    let target = args.next().expect(usage);
    std::fs::create_dir_all(out.join("completions"))?;
    // clap keeps &'static str; this process writes one page and exits.
    let version: &'static str =
        Box::leak(format!("{} ({target})", env!("CARGO_PKG_VERSION")).into_boxed_str());
    let cmd = cli::command().version(version);
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(out.join("telegraf-netstat.1"), page)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        generate_to(
            shell,
            &mut cmd.clone(),
            "telegraf-netstat",
            out.join("completions"),
        )?;
    }
    Ok(())
}
