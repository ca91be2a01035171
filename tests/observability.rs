//! What operators load as it is must match what the daemon exports: every series the Grafana dashboard
//! and the Prometheus alert rules query is one a real portsyncd's `/metrics` serves, and that page passes
//! `promtool check metrics` without a warning. Real daemon, redis-server and veths (tests/common).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::rig::{rig_with, T};

const DASHBOARD: &str = "deploy/grafana/portsyncd-dashboard.json";
const RULES: &str = "deploy/prometheus/portsyncd-rules.yml";

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `portsyncd_...` metric names in a PromQL expression (a name is `[a-z_]+`, not preceded by a word
/// character: `job="portsyncd"` is no metric).
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("portsyncd_") {
        let before = rest[..i].chars().last();
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            out.push(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    out
}

/// Every `expr` (and templating query) of the dashboard.
fn dashboard_exprs(json: &serde_json::Value, out: &mut Vec<String>) {
    match json {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// Every `expr:` of the rules file: `expr: <one line>` or `expr: |` and the more-indented lines after it.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, rest)) = line.split_once("expr:") else {
            continue;
        };
        if !indent.trim().is_empty() {
            continue;
        }
        let rest = rest.trim();
        if rest != "|" && rest != ">" {
            out.push(rest.to_string());
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent.len();
            if !deeper && !next.trim().is_empty() {
                break;
            }
            block.push_str(next.trim());
            block.push('\n');
            lines.next();
        }
        out.push(block);
    }
    out
}

/// The sample names of an exposition page (`name{labels} value` or `name value`).
fn exported(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_parsers_find_what_they_should() {
    assert_eq!(
        names_in(
            r#"rate(portsyncd_a_total{job="portsyncd"}[5m]) / xportsyncd_b + portsyncd_c_sum"#
        ),
        ["portsyncd_a_total", "portsyncd_c_sum"]
    );
    let yaml = "      - alert: A\n        expr: |\n          up == 0\n          and portsyncd_x\n        for: 1m\n      - alert: B\n        expr: portsyncd_y > 1\n";
    assert_eq!(
        rule_exprs(yaml),
        ["up == 0\nand portsyncd_x\n", "portsyncd_y > 1"]
    );
    assert_eq!(
        exported("# TYPE a counter\na_total 1\nb_bucket{le=\"1\"} 2\n"),
        BTreeSet::from(["a_total".to_string(), "b_bucket".to_string()])
    );
}

#[test]
fn dashboard_and_rules_query_only_exported_series_and_metrics_lint_clean() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6, "{} panels", panels.len());
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    let rules = rule_exprs(&read(RULES));
    assert!(rules.len() >= 6, "{rules:?}");
    let mut wanted: BTreeSet<(String, &str)> = BTreeSet::new();
    for (exprs, source) in [(&exprs, DASHBOARD), (&rules, RULES)] {
        for e in exprs {
            for n in names_in(e) {
                wanted.insert((n, source));
            }
        }
    }
    assert!(wanted.len() >= 10, "{wanted:?}");

    let (rig, names) = rig_with(2);
    rig.first_run(&names, &[], false);
    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    let page = d.metrics();
    assert!(page.contains("portsyncd_starts_total"), "{page}");
    let have = exported(&page);
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(n, _)| !have.contains(n))
        .map(|(n, src)| format!("{n} (queried by {src})"))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported: {missing:#?}\n/metrics:\n{page}"
    );

    // promtool reads the page on stdin; any line it prints is a lint finding.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (tools/setup.sh installs Debian's prometheus package)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write to promtool");
    let out = promtool.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {:?}\n{said}\n/metrics:\n{page}",
        out.status
    );
    assert_eq!(d.terminate().code(), Some(0));
}

/// A store saved by a portsyncd from before the stable metric IDs (lifetime values keyed by the series
/// string): the upgraded daemon keeps counting from those values and saves them under the IDs.
#[test]
fn lifetime_values_saved_under_series_strings_survive_the_upgrade() {
    use portsyncd::store::{Snapshot, Store, StoreConfig, StoreReader};
    let (rig, _names) = rig_with(2);
    let mut old = Snapshot::default();
    for (key, v) in [
        ("portsyncd_starts_total{mode=\"cold\"}", 40),
        ("portsyncd_netlink_overruns_total", 7),
        ("portsyncd_state_db_writes_total{op=\"del\"}", 123),
        ("portsyncd_initial_sync_seconds_count", 40),
        ("portsyncd_initial_sync_seconds_bucket{le=\"60\"}", 40),
    ] {
        old.counters.insert(key.to_string(), v);
    }
    {
        let (mut store, _) = Store::open(StoreConfig::new(&rig.state_dir)).expect("open store");
        store.commit(&old).expect("commit");
    }
    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    let page = d.metrics();
    common::daemon::assert_metrics(
        &page,
        &[
            ("portsyncd_starts_total{mode=\"cold\"}", 41.0),
            ("portsyncd_netlink_overruns_total", 7.0),
            ("portsyncd_state_db_writes_total{op=\"del\"}", 123.0),
            ("portsyncd_initial_sync_seconds_count", 41.0),
            ("portsyncd_initial_sync_seconds_bucket{le=\"60\"}", 41.0),
        ],
    );
    assert_eq!(d.terminate().code(), Some(0));
    let gens = StoreReader::open(&rig.state_dir, 1 << 20)
        .expect("open store")
        .generations()
        .expect("generations");
    let saved = gens
        .iter()
        .filter(|g| g.counters.is_some())
        .max_by_key(|g| g.number)
        .and_then(|g| g.counters.clone())
        .expect("counters saved");
    assert_eq!(saved.get("starts.cold"), Some(&41), "{saved:?}");
    assert_eq!(saved.get("netlink.overruns"), Some(&7), "{saved:?}");
    assert!(
        saved.keys().all(|k| !k.starts_with("portsyncd_")),
        "{saved:?}"
    );
}
