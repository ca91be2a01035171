//! `portsyncd-gen-assets DIR`: writes the man pages (section 8) and shell completions of `portsyncd`
//! and `portsyncd-state`, generated from their clap definitions, for the Debian package
//! (`tools/package.sh`):
//!
//! ```text
//! DIR/man/portsyncd.8  DIR/man/portsyncd-state.8  DIR/man/portsyncd-state-<command>.8
//! DIR/completions/{portsyncd,portsyncd-state}.bash  _portsyncd  _portsyncd-state  *.fish
//! ```

#![deny(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

// The offline tool's command line, from its own source (the binary is the one source of truth).
// dead_code: only its clap definition is used here, not the commands themselves.
#[allow(dead_code)]
#[path = "portsyncd_state.rs"]
mod state_tool;

/// The page of `cmd`, and one per subcommand (`portsyncd-state-audit.8`, ...), which the main page's
/// SUBCOMMANDS section refers to.
fn man(cmd: clap::Command, dir: &Path) -> Result<()> {
    let mut cmd = cmd;
    cmd.build();
    let name = cmd.get_name().to_string();
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        // clap names are &'static str; this short-lived generator may leak a few bytes.
        let sub_name: &'static str = format!("{name}-{}", sub.get_name()).leak();
        man_page(sub.clone().name(sub_name), dir)?;
    }
    man_page(cmd, dir)
}

fn man_page(cmd: clap::Command, dir: &Path) -> Result<()> {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section("8")
        .manual("System Manager's Manual")
        .source(format!("portsyncd {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)?;
    let path = dir.join(format!("{name}.8"));
    fs::write(&path, out).with_context(|| format!("write {}", path.display()))
}

fn completions(mut cmd: clap::Command, dir: &Path) -> Result<()> {
    let name = cmd.get_name().to_string();
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, &name, &mut out);
        let path = dir.join(file);
        fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        bail!("usage: portsyncd-gen-assets DIR");
    };
    let dir = PathBuf::from(dir);
    let (man_dir, comp_dir) = (dir.join("man"), dir.join("completions"));
    for d in [&man_dir, &comp_dir] {
        fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    for cmd in [
        portsyncd::config::Config::command(),
        state_tool::Cli::command(),
    ] {
        man(cmd.clone(), &man_dir)?;
        completions(cmd, &comp_dir)?;
    }
    println!(
        "man pages in {}, completions in {}",
        man_dir.display(),
        comp_dir.display()
    );
    Ok(())
}
