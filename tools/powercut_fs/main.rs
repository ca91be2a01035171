//! `powercut-fs`: a FUSE filesystem that models a volatile disk cache, for power-cut tests.
//!
//! ```text
//! powercut-fs --backing DIR --mountpoint MNT [--stdin-control] [--torn-seed N] [--write-through]
//! ```
//!
//! Loads `DIR` (the "disk"), mounts it on `MNT` and prints `ready` on stdout. Writes, truncates and
//! directory changes stay volatile until an fsync covers them (see `model.rs`).
//!
//! Control: `SIGUSR1` cuts, `SIGTERM`/`SIGINT` unmount. With `--stdin-control`, also `cut` and
//! `unmount` lines on stdin, and the end of stdin unmounts (a crashed harness leaves no mount).
//! The fault hook `hang-fsync` makes every `fsync` block (a hung disk; the whole filesystem stalls
//! behind it) until `release-fsync`; each is acknowledged on stdout. An unmount releases it first.
//! The fault hooks `full` (changes that need space fail with `ENOSPC`) and `read-only` (every change
//! fails with `EROFS`) last until `writable`; each is acknowledged on stdout with its own name.
//!
//! - A cut drops the power: everything not fsynced is dropped, the durable state replaces `DIR`,
//!   `cut` is printed, and every further operation fails with `EIO`.
//! - An unmount (or an external `umount`): the same — only durable state is written to
//!   `DIR` — then the filesystem unmounts and the process exits. The disk never sees data that was
//!   not fsynced, clean shutdown or not; this keeps one model and makes every test stricter.
//! - `--write-through` is a fault hook: every change is durable at once (a disk without cache). A
//!   power-cut test run on it must stop seeing losses, which proves the losses come from the model.
//!
//! See `docs/powercut.md` for the model and its limits.

#![deny(unsafe_code)]

mod backing;
mod fuse;
mod model;
mod torn;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use fuser::{Config, MountOption, Session, SessionUnmounter};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::model::{Model, Refusal};

#[derive(Debug, Parser)]
#[command(
    name = "powercut-fs",
    about = "FUSE filesystem that drops unsynced data on a power cut"
)]
struct Args {
    /// Directory holding the durable state: loaded at mount, replaced at cut or unmount.
    #[arg(long)]
    backing: PathBuf,
    /// Where to mount (an existing empty directory).
    #[arg(long)]
    mountpoint: PathBuf,
    /// Fault hook: make every change durable at once (no cache to lose).
    #[arg(long)]
    write_through: bool,
    /// Read `cut` / `unmount` lines from stdin; end of stdin means unmount.
    #[arg(long)]
    stdin_control: bool,
    /// At a cut, write back a random subset (seeded) of each file's unsynced 4 KiB pages instead
    /// of dropping them all: torn writes, for checking that recovery rejects them.
    #[arg(long, value_name = "SEED")]
    torn_seed: Option<u64>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // fuser logs every unimplemented call (xattrs, ioctls) at warn level.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=error")),
        )
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("powercut-fs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A request to the filesystem, from a signal or a stdin line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Cut,
    Unmount,
    HangFsync,
    ReleaseFsync,
    Refuse(Option<Refusal>),
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The harness reads these lines; if it went away there is nobody left to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Cut the power once: freeze the model and write its durable tree to the backing directory.
/// Returns false if the power was already cut.
fn cut_and_persist(
    model: &Mutex<Model>,
    backing: &Path,
    torn_seed: Option<u64>,
) -> anyhow::Result<bool> {
    let mut m = model.lock().unwrap_or_else(|p| p.into_inner());
    if m.is_cut() {
        return Ok(false);
    }
    m.cut();
    let tree = match torn_seed {
        None => m.durable_tree(),
        Some(seed) => {
            // xorshift64: reproducible from the seed alone.
            let mut state = seed | 1;
            m.torn_tree(&mut move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            })
        }
    };
    let stats = m.stats;
    drop(m);
    backing::persist(&tree, backing)
        .with_context(|| format!("writing durable state to {}", backing.display()))?;
    tracing::info!(
        writes = stats.writes,
        file_syncs = stats.file_syncs,
        dir_syncs = stats.dir_syncs,
        backing = %backing.display(),
        "power cut: durable state persisted"
    );
    Ok(true)
}

fn unmount(unmounter: &mut SessionUnmounter, mountpoint: &Path) {
    if let Err(e) = unmounter.unmount() {
        tracing::warn!(error = %e, mountpoint = %mountpoint.display(), "unmount failed, detaching lazily");
        let status = std::process::Command::new("umount")
            .arg("-l")
            .arg(mountpoint)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            tracing::error!(mountpoint = %mountpoint.display(), "lazy unmount failed too");
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let tree = backing::load(&args.backing)
        .with_context(|| format!("loading backing directory {}", args.backing.display()))?;
    let model = Arc::new(Mutex::new(Model::from_tree(&tree, args.write_through)));

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("powercut".to_owned()),
        MountOption::Subtype("powercut".to_owned()),
    ];
    let gate = Arc::new(fuse::FsyncGate::default());
    let mut session = Session::new(
        fuse::PowercutFs::new(Arc::clone(&model), Arc::clone(&gate)),
        &args.mountpoint,
        &config,
    )
    .with_context(|| format!("mounting on {}", args.mountpoint.display()))?;
    let mut unmounter = session.unmount_callable();

    let (tx, rx) = mpsc::channel::<Control>();
    let mut signals =
        Signals::new([SIGUSR1, SIGTERM, SIGINT]).context("installing signal handlers")?;
    let signal_handle = signals.handle();
    let sig_tx = tx.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let ctl = if sig == SIGUSR1 {
                Control::Cut
            } else {
                Control::Unmount
            };
            if sig_tx.send(ctl).is_err() {
                break;
            }
        }
    });
    if args.stdin_control {
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let ctl = match line.as_deref().map(str::trim) {
                    Ok("cut") => Control::Cut,
                    Ok("unmount") => Control::Unmount,
                    Ok("hang-fsync") => Control::HangFsync,
                    Ok("release-fsync") => Control::ReleaseFsync,
                    Ok("full") => Control::Refuse(Some(Refusal::Full)),
                    Ok("read-only") => Control::Refuse(Some(Refusal::ReadOnly)),
                    Ok("writable") => Control::Refuse(None),
                    Ok(other) => {
                        tracing::warn!(line = other, "unknown control line");
                        continue;
                    }
                    Err(_) => break,
                };
                if tx.send(ctl).is_err() {
                    return;
                }
            }
            // The controller went away (e.g. a harness that crashed): do not stay mounted.
            let _ = tx.send(Control::Unmount);
        });
    }
    let ctl_model = Arc::clone(&model);
    let torn_seed = args.torn_seed;
    let backing = args.backing.clone();
    let mountpoint = args.mountpoint.clone();
    let control_thread = std::thread::spawn(move || {
        for ctl in rx {
            match ctl {
                Control::Refuse(r) => {
                    ctl_model
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .set_refusal(r);
                    say(match r {
                        Some(Refusal::Full) => "full",
                        Some(Refusal::ReadOnly) => "read-only",
                        None => "writable",
                    });
                    continue;
                }
                Control::HangFsync | Control::ReleaseFsync => {
                    let hang = ctl == Control::HangFsync;
                    gate.set(hang);
                    say(if hang { "fsync-hung" } else { "fsync-released" });
                    continue;
                }
                Control::Unmount => gate.set(false),
                Control::Cut => {}
            }
            match cut_and_persist(&ctl_model, &backing, torn_seed) {
                Ok(_) if ctl == Control::Cut => say("cut"),
                Ok(_) => {}
                Err(e) => say(&format!("error {e:#}")),
            }
            if ctl == Control::Unmount {
                unmount(&mut unmounter, &mountpoint);
                break;
            }
        }
    });

    say("ready");
    let run_result = session.run();
    // Unmounted (by a signal above or from outside): make sure the disk holds the durable state.
    let persisted = cut_and_persist(&model, &args.backing, args.torn_seed);
    signal_handle.close();
    // The control thread ends after an unmount request; after an external unmount it may still be
    // waiting for stdin, so it is not joined.
    if control_thread.is_finished() {
        let _ = control_thread.join();
    }
    run_result.context("FUSE session")?;
    persisted?;
    Ok(())
}
