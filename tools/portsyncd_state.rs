//! `portsyncd-state`: inspect, verify, export and import portsyncd's state store. Exit codes follow
//! `interface.md`.
//!
//! `inspect`, `verify` and `export` never take the daemon's lock: they read a snapshot copy of the
//! store (see `StoreReader`), so they work while portsyncd runs (and say so, with its pid) and never stop
//! a daemon from starting. `import` writes the store and refuses while a daemon runs.

#![deny(unsafe_code)]
#![warn(clippy::too_many_lines)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portsyncd::store::{
    durable, format_utc, json_export, layout, migrate, GenerationInfo, Snapshot, Store,
    StoreConfig, StoreError, StoreReader,
};
use serde_json::json;

#[path = "state_tool/audit.rs"]
mod audit;

const CACHE: u64 = 8 << 20;

/// The saved lifetime commit count.
const COMMITS: &str = "portsyncd_state_commits_total";

/// Open a copy of the store; says on stderr when a daemon runs (the copy is of its live store).
fn open_reader(dir: &Path) -> Result<StoreReader, StoreError> {
    let r = StoreReader::open(dir, CACHE)?;
    if let Some(pid) = r.daemon_pid() {
        eprintln!(
            "note: portsyncd (pid {pid}) is running; reading a snapshot copy of its store{}",
            if r.copy_is_whole() {
                ""
            } else {
                " (the store kept changing while it was copied; the newest commit may be missing)"
            }
        );
    }
    // Test hook: hold the (copied) store open for a while, to prove a daemon starts meanwhile.
    if cfg!(feature = "fault-injection") {
        if let Some(ms) = std::env::var("PORTSYNCD_STATE_TEST_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            eprintln!("note: pausing {ms} ms with the store open (test hook)");
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    Ok(r)
}

#[derive(Parser)]
#[command(
    name = "portsyncd-state",
    version,
    about = "Inspect and repair portsyncd's state store"
)]
pub struct Cli {
    /// The state directory (the sled store and the JSON export).
    #[arg(
        long,
        env = "PORTSYNCD_STATE_DIR",
        default_value = "/var/lib/sonic/portsyncd",
        global = true
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print (or write) the compatibility JSON of a generation (default: the newest valid one).
    Export {
        #[arg(long)]
        generation: Option<u64>,
        /// Write atomically to FILE instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Schema version, every generation (number, time, port count, valid or why not), lifetime counters.
    Inspect {
        #[arg(long)]
        json: bool,
    },
    /// Check every record of every generation (and the JSON export). 0 valid, 1 corruption, 2 cannot open.
    Verify,
    /// Import a legacy port_state.json as a new generation (exactly FILE; a valid backup is only named
    /// when FILE is unusable). 0 imported, 2 bad input (store untouched).
    Import {
        file: PathBuf,
        /// Where to rewrite the compatibility JSON afterwards (`off` to skip).
        #[arg(long, env = "PORTSYNCD_JSON_EXPORT")]
        json_export: Option<String>,
    },
    /// Per configured port: kernel vs STATE_DB PORT_TABLE vs saved state; run in the switch's netns.
    /// 0 STATE_DB matches the kernel, 1 it does not (names the ports), 2 bad input.
    Audit(audit::AuditArgs),
}

/// A failure with the exit code it maps to.
struct Fail(u8, String);

fn open_error(dir: &Path, e: StoreError) -> Fail {
    match e {
        StoreError::InUse { pid } => Fail(
            2,
            format!(
                "state store {} is in use by pid {pid}; stop portsyncd first",
                dir.display()
            ),
        ),
        e @ StoreError::NotAStore { .. } => Fail(2, e.to_string()),
        other => Fail(
            2,
            format!("cannot open state store {}: {other}", dir.display()),
        ),
    }
}

fn export_path(dir: &Path, opt: Option<&str>) -> Option<PathBuf> {
    match opt {
        Some("off") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(dir.join(layout::LEGACY_FILE)),
    }
}

fn newest_valid(gens: &[GenerationInfo]) -> Option<&GenerationInfo> {
    gens.iter().find(|g| g.is_valid())
}

/// True for a store that exists but is too damaged to open: it has no valid generation to offer.
fn damaged(e: &StoreError) -> bool {
    matches!(e, StoreError::Open { .. } | StoreError::Corruption { .. })
}

fn export(dir: &Path, generation: Option<u64>, output: Option<&Path>) -> Result<(), Fail> {
    let r = open_reader(dir).map_err(|e| match e {
        e if damaged(&e) => Fail(
            1,
            format!(
                "no valid generation: state store {} cannot be opened: {e}",
                dir.display()
            ),
        ),
        e => open_error(dir, e),
    })?;
    let gens = r
        .generations()
        .map_err(|e| Fail(2, format!("cannot read {}: {e}", dir.display())))?;
    let gen = match generation {
        Some(n) => n,
        None => newest_valid(&gens)
            .map(|g| g.number)
            .ok_or_else(|| Fail(1, "no valid generation in the store".into()))?,
    };
    let (m, snap) = r
        .load(gen)
        .map_err(|e| Fail(1, format!("generation {gen} is not valid: {e}")))?;
    let bytes = json_export::render(&snap, m.saved_at, gen);
    match output {
        Some(p) => {
            durable::write_atomic(p, &bytes)
                .map_err(|e| Fail(1, format!("cannot write {}: {e}", p.display())))?;
            eprintln!(
                "exported generation {gen} ({} ports) to {}",
                snap.ports.len(),
                p.display()
            );
        }
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| Fail(1, format!("stdout: {e}")))?,
    }
    Ok(())
}

fn export_status(path: &Path) -> serde_json::Value {
    if !path.exists() {
        return json!({"path": path, "present": false});
    }
    match json_export::read(path, true) {
        Ok(st) => {
            json!({"path": path, "present": true, "valid": true, "generation": st.generation, "saved_at": st.saved_at, "ports": st.snapshot.ports.len()})
        }
        Err(e) => json!({"path": path, "present": true, "valid": false, "problem": e.to_string()}),
    }
}

fn inspect(dir: &Path, as_json: bool) -> Result<(), Fail> {
    let r = match open_reader(dir) {
        Ok(r) => r,
        // A damaged store is something to show, not a failure of the tool (`verify` exits non-zero).
        Err(e) if damaged(&e) => {
            inspect_unopenable(dir, &e, as_json);
            return Ok(());
        }
        Err(e) => return Err(open_error(dir, e)),
    };
    let gens = r
        .generations()
        .map_err(|e| Fail(2, format!("cannot read {}: {e}", dir.display())))?;
    let counters = newest_valid(&gens)
        .and_then(|g| g.counters.clone())
        .unwrap_or_default();
    let exp = export_status(&dir.join(layout::LEGACY_FILE));
    if as_json {
        let doc = json!({
            "state_dir": dir,
            "daemon_pid": r.daemon_pid(),
            "schema": r.schema(),
            "supported_schema": portsyncd::store::SCHEMA_VERSION,
            "disk_bytes": r.size_on_disk(),
            "generations": gens.iter().map(|g| json!({
                "generation": g.number, "saved_at": g.saved_at, "ports": g.port_count,
                "valid": g.is_valid(), "problem": g.problem,
            })).collect::<Vec<_>>(),
            "counters": counters,
            "json_export": exp,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    print_store_header(dir, &r);
    print_generations(&gens);
    print_counters(&gens, &counters);
    print_export_status(&exp);
    Ok(())
}

/// `inspect` of a store that cannot be opened: what is known, and the JSON export.
fn inspect_unopenable(dir: &Path, e: &StoreError, as_json: bool) {
    let exp = export_status(&dir.join(layout::LEGACY_FILE));
    if as_json {
        let doc = json!({"state_dir": dir, "openable": false, "problem": e.to_string(),
                         "generations": [], "json_export": exp});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        println!("state store   {}", dir.display());
        println!("status        CANNOT BE OPENED: {e}");
        println!("              (portsyncd would quarantine it and fall back to the JSON export)");
        println!("json export   {exp}");
    }
}

/// `inspect`'s first lines: the store, the daemon, the schema, the size.
fn print_store_header(dir: &Path, r: &StoreReader) {
    println!("state store   {}", dir.display());
    if let Some(pid) = r.daemon_pid() {
        println!("daemon        portsyncd pid {pid} is running (shown: a snapshot copy)");
    }
    match r.schema() {
        Some(v) => println!(
            "schema        {v} (this tool supports {})",
            portsyncd::store::SCHEMA_VERSION
        ),
        None => println!("schema        none yet: an empty store whose creation was interrupted"),
    }
    if let Some(b) = r.size_on_disk() {
        println!("disk bytes    {b}");
    }
    println!();
}

/// `inspect`'s table of generations.
fn print_generations(gens: &[GenerationInfo]) {
    println!(
        "{:>10}  {:<20}  {:>6}  STATUS",
        "GENERATION", "SAVED AT (UTC)", "PORTS"
    );
    if gens.is_empty() {
        println!("{:>10}", "(none)");
    }
    for g in gens {
        println!(
            "{:>10}  {:<20}  {:>6}  {}",
            g.number,
            g.saved_at.map(format_utc).unwrap_or_else(|| "?".into()),
            g.port_count
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into()),
            match &g.problem {
                None => "valid".to_string(),
                Some(p) => format!("INVALID: {p}"),
            }
        );
    }
    println!();
}

/// `inspect`'s lifetime counters of the newest valid generation.
fn print_counters(gens: &[GenerationInfo], counters: &std::collections::BTreeMap<String, u64>) {
    match newest_valid(gens) {
        Some(g) => println!("lifetime counters (generation {})", g.number),
        None => println!("lifetime counters: none (no valid generation)"),
    }
    let rows = counter_rows(counters);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &rows {
        println!("  {k:<width$}  {v}");
    }
    println!();
}

/// `inspect`'s last line: the JSON export ([`export_status`]).
fn print_export_status(exp: &serde_json::Value) {
    let path = exp["path"].as_str().unwrap_or_default().to_string();
    match (exp["present"].as_bool(), exp["valid"].as_bool()) {
        (Some(false), _) => println!("json export   {path}: absent"),
        (_, Some(true)) => println!(
            "json export   {path}: valid, generation {}, {} ports",
            exp["generation"], exp["ports"]
        ),
        _ => println!(
            "json export   {path}: INVALID: {}",
            exp["problem"].as_str().unwrap_or_default()
        ),
    }
}

/// A rolled-back sled, as the daemon's ladder sees it: the JSON export (written only after a
/// generation is durable in sled) holds a newer generation, or a higher lifetime commit count, than
/// anything sled still has.
fn rollback(gens: &[GenerationInfo], exp: &json_export::JsonState) -> Vec<String> {
    let mut out = Vec::new();
    let newest = gens.first().map_or(0, |g| g.number);
    if let Some(eg) = exp.generation.filter(|&eg| eg > newest) {
        out.push(format!(
            "sled rolled back: its newest generation is {newest}, the JSON export holds generation {eg} \
             (sled lost committed generations; portsyncd would recover from the JSON export)"
        ));
    }
    let saved = newest_valid(gens).and_then(|g| g.counters.as_ref()?.get(COMMITS).copied());
    if let Some(ec) = exp.snapshot.counters.get(COMMITS).copied() {
        if saved.is_some_and(|sc| ec > sc) {
            out.push(format!(
                "sled rolled back: its newest valid generation saved {COMMITS} {}, the JSON export {ec}",
                saved.unwrap_or(0)
            ));
        }
    }
    out
}

fn verify(dir: &Path) -> Result<(), Fail> {
    // The export first: it is written after sled's commit, so read before the copy of sled it can
    // never be newer than that copy unless sled really lost generations.
    let exp_path = dir.join(layout::LEGACY_FILE);
    let exp = exp_path
        .exists()
        .then(|| json_export::read(&exp_path, true));
    let r = open_reader(dir).map_err(|e| open_error(dir, e))?;
    let gens = r.generations().map_err(|e| {
        Fail(
            2,
            format!("cannot read the generations of {}: {e}", dir.display()),
        )
    })?;
    let mut problems: Vec<String> = gens
        .iter()
        .filter_map(|g| {
            g.problem
                .as_ref()
                .map(|p| format!("CORRUPT generation {}: {p}", g.number))
        })
        .collect();
    match &exp {
        Some(Err(e)) => problems.push(format!("CORRUPT json export {}: {e}", exp_path.display())),
        Some(Ok(st)) => problems.extend(
            rollback(&gens, st)
                .into_iter()
                .map(|p| format!("ROLLBACK {p}")),
        ),
        None => {}
    }
    if problems.is_empty() {
        let ports: u64 = gens
            .iter()
            .map(|g| u64::from(g.port_count.unwrap_or(0)))
            .sum();
        println!("ok: {} generations, {ports} records verified", gens.len());
        return Ok(());
    }
    for p in &problems {
        println!("{p}");
    }
    Err(Fail(
        1,
        format!("{} problem(s) found in {}", problems.len(), dir.display()),
    ))
}

/// `import FILE`: imports FILE itself. Its backups (`FILE.backup`, `backups/`) are read only to name a
/// valid one when FILE is unusable: an operator who names a file gets that file or an error (exit 2,
/// nothing written), never a sibling chosen behind their back.
fn import(dir: &Path, file: &Path, json_export_opt: Option<&str>) -> Result<(), Fail> {
    // Read and validate everything before the store is touched.
    let st = match json_export::read(file, false) {
        Ok(st) => st,
        Err(e) => {
            let mut msg = format!("{}: {e}; nothing imported", file.display());
            let backups: Vec<PathBuf> = migrate::legacy_candidates(file)
                .into_iter()
                .filter(|p| p != file)
                .collect();
            if let Some((p, b)) = migrate::read_legacy(&backups).chosen {
                msg.push_str(&format!(
                    "; a valid backup is {} (saved {}): import it by name",
                    p.display(),
                    format_utc(b.saved_at)
                ));
            }
            return Err(Fail(2, msg));
        }
    };
    let chosen_path = file.to_path_buf();
    if dir.exists() && !dir.is_dir() {
        return Err(Fail(2, format!("{} is not a directory", dir.display())));
    }
    let cfg = StoreConfig {
        json_export: export_path(dir, json_export_opt),
        ..StoreConfig::new(dir)
    };
    let (mut store, recovered) =
        Store::open_without_migration(cfg).map_err(|e| open_error(dir, e))?;
    let mut snap = Snapshot {
        ports: st.snapshot.ports,
        counters: recovered.counters,
    };
    if snap.counters.is_empty() {
        snap.counters = st.snapshot.counters;
    }
    let gen = store
        .commit_at(&snap, st.saved_at)
        .map_err(|e| Fail(1, format!("commit failed: {e}")))?;
    println!(
        "imported {} ({} ports, saved {}) as generation {gen}",
        chosen_path.display(),
        snap.ports.len(),
        format_utc(st.saved_at)
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = cli.state_dir.as_path();
    let result = match &cli.command {
        Command::Export { generation, output } => export(dir, *generation, output.as_deref()),
        Command::Inspect { json } => inspect(dir, *json),
        Command::Verify => verify(dir),
        Command::Import { file, json_export } => import(dir, file, json_export.as_deref()),
        Command::Audit(a) => audit::run(dir, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("portsyncd-state: {msg}");
            ExitCode::from(code)
        }
    }
}

/// The lifetime counters as the table shows them: histogram buckets in numeric order of their bound
/// (`le.2.5` before `le.10`), durations in seconds (`sum`, not the stored `sum_us`).
fn counter_rows(counters: &std::collections::BTreeMap<String, u64>) -> Vec<(String, String)> {
    let bound = |k: &str| -> (String, f64) {
        match k.rsplit_once(".le.") {
            Some((base, b)) => (
                format!("{base}.le"),
                b.parse::<f64>().unwrap_or(f64::INFINITY),
            ),
            None => (k.to_string(), f64::NEG_INFINITY),
        }
    };
    let mut keys: Vec<&String> = counters.keys().collect();
    keys.sort_by(|a, b| {
        let (ba, na) = bound(a);
        let (bb, nb) = bound(b);
        ba.cmp(&bb).then(na.total_cmp(&nb))
    });
    keys.into_iter()
        .map(|k| match k.strip_suffix("_us") {
            Some(secs) => (secs.to_string(), format!("{:.6}", counters[k] as f64 / 1e6)),
            None => (k.clone(), counters[k].to_string()),
        })
        .collect()
}

#[cfg(test)]
mod counter_rows_tests {
    use super::counter_rows;

    #[test]
    fn buckets_in_numeric_order_and_durations_in_seconds() {
        let counters = [
            ("initial_sync_seconds.le.10", 3),
            ("initial_sync_seconds.le.2.5", 2),
            ("initial_sync_seconds.le.0.005", 1),
            ("initial_sync_seconds.sum_us", 1_500_000),
            ("starts.cold", 4),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let rows = counter_rows(&counters);
        let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "initial_sync_seconds.le.0.005",
                "initial_sync_seconds.le.2.5",
                "initial_sync_seconds.le.10",
                "initial_sync_seconds.sum",
                "starts.cold"
            ]
        );
        assert_eq!(rows[3].1, "1.500000");
    }
}
