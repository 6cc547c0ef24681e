//! Writes the man page and the bash, zsh and fish completions of
//! telegraf-netstat into a directory, from the same clap definition that
//! parses the command line: they cannot drift from `--help`.
//!
//! usage: dist-docs OUT_DIR  (writes telegraf-netstat.1 and completions/)

use std::path::PathBuf;

use clap_complete::{generate_to, Shell};

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: dist-docs OUT_DIR"),
    );
    std::fs::create_dir_all(out.join("completions"))?;
    let cmd = telegraf_netstat::cli::command();
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
