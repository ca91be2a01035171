//! Generative tests of what portsyncd reads before it starts (issue 15): `database_config.json` and
//! `database_global.json` (arbitrary JSON, mutated valid files, arbitrary values in a valid shape),
//! the options (arbitrary values and command lines) and, on the built binary, the environment.
//!
//! Oracle: no panic, bounded time, and either a result whose values are usable or a clear error: a
//! bad file's error names the file; a bad option or environment value exits with status 2 and names
//! the option and the value (bytes that are not UTF-8 shown escaped).
//!
//! The generative tests are the `gen_*` ones (`tools/fuzz.sh config`). Case counts come from
//! `PROPTEST_CASES` (default: a CI-sized slice), the seed from `PROPTEST_RNG_SEED` (fixed under CI, `CI` set); failing cases are
//! kept in `tests/hostile_config.proptest-regressions`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portsyncd::config::{Config, MAX_GENERATIONS, MAX_RESYNC_INTERVAL_SECS};
use portsyncd::sonic::dbconfig::MAX_DB_ID;
use portsyncd::sonic::{DbEndpoint, DbLayout, RedisAddr};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

/// The seed of CI's slice (with `CI` set and no `PROPTEST_RNG_SEED`).
const CI_SEED: u64 = 0x5EED_0015;
use serde_json::{json, Value};

/// Cases per in-process generative test when `PROPTEST_CASES` is not set.
const CI_CASES: u32 = 256;
/// Cases of the binary-level environment test when `PROPTEST_CASES` is not set (each valid value
/// costs a daemon start).
const CI_BINARY_CASES: u32 = 16;
/// Parsing one file or one command line must take less than this (the real figure: microseconds).
const PARSE_BOUND: Duration = Duration::from_secs(1);

fn config(default_cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default(); // reads PROPTEST_CASES, PROPTEST_RNG_SEED, ...
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default_cases;
    }
    // CI runs a fixed-seed slice unless a seed is given.
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() && std::env::var_os("CI").is_some() {
        c.rng_seed = RngSeed::Fixed(CI_SEED);
    }
    c
}

/// Shaped like SONiC's database_config.json on a single-ASIC switch.
fn sonic_config() -> Value {
    json!({
        "INSTANCES": {
            "redis": {"hostname": "127.0.0.1", "port": 6379,
                      "unix_socket_path": "/var/run/redis/redis.sock"},
            "redis_bmp": {"hostname": "10.0.0.9", "port": 6400}
        },
        "DATABASES": {
            "APPL_DB": {"id": 0, "separator": ":", "instance": "redis"},
            "CONFIG_DB": {"id": 4, "separator": "|", "instance": "redis"},
            "STATE_DB": {"id": 6, "separator": "|", "instance": "redis"},
            "BMP_STATE_DB": {"id": 20, "separator": "|", "instance": "redis_bmp"}
        },
        "VERSION": "1.0"
    })
}

fn assert_usable(ep: &DbEndpoint) {
    assert!((0..=MAX_DB_ID).contains(&ep.id), "{ep:?}");
    assert!(
        !ep.separator.is_empty() && !ep.separator.contains('\0'),
        "{ep:?}"
    );
    match &ep.addr {
        RedisAddr::Unix(p) => {
            let bytes = p.as_os_str().as_encoded_bytes();
            assert!(!bytes.is_empty() && !bytes.contains(&0), "{ep:?}");
        }
        RedisAddr::Tcp { host, port } => {
            assert!(
                !host.is_empty() && !host.contains('\0') && *port != 0,
                "{ep:?}"
            );
        }
    }
}

/// The layout parse of `text`, timed; a result must be usable, an error must name the file.
fn parse_config_text(text: &str) -> Result<DbLayout, String> {
    let path = Path::new("/hostile/database_config.json");
    let start = Instant::now();
    let res = DbLayout::from_config_str(text, path);
    assert!(start.elapsed() < PARSE_BOUND, "took {:?}", start.elapsed());
    match res {
        Ok(l) => {
            for ep in [&l.appl, &l.config, &l.state] {
                assert_usable(ep);
            }
            Ok(l)
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("/hostile/database_config.json"), "{msg}");
            Err(msg)
        }
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "APPL_DB",
            "CONFIG_DB",
            "STATE_DB",
            "INSTANCES",
            "DATABASES",
            "redis",
            "id",
            "separator",
            "instance",
            "hostname",
            "port",
            "unix_socket_path",
            "|",
            ":",
            "",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "INSTANCES",
                    "DATABASES",
                    "APPL_DB",
                    "CONFIG_DB",
                    "STATE_DB",
                    "redis",
                    "id",
                    "separator",
                    "instance",
                    "hostname",
                    "port",
                    "unix_socket_path",
                    "INCLUDES",
                    "namespace",
                    "include",
                    "x",
                ]),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// A value for one field of a database or instance: mostly of the right JSON type, near the bounds.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(4),
            json!(i64::from(i32::MAX)),
            json!(i64::from(i32::MAX) + 1),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(65535),
            json!(65536),
            json!(""),
            json!("|"),
            json!("\u{0}"),
            json!("a\u{0}b"),
            json!("redis"),
            json!("/var/run/redis/redis.sock"),
            json!(null),
            json!(1.5),
        ]),
        json_value(),
    ]
}

fn mutate_bytes(bytes: &mut Vec<u8>, ops: &[(prop::sample::Index, u8, u8)]) {
    for (at, what, b) in ops {
        if bytes.is_empty() {
            bytes.push(*b);
            continue;
        }
        let i = at.index(bytes.len());
        match what % 4 {
            0 => bytes[i] = *b,
            1 => {
                bytes.remove(i);
            }
            2 => bytes.insert(i, *b),
            _ => {
                // A JSON-significant character: most mutations then still parse as JSON.
                const JSONISH: &[u8] = b"{}[]\",:0-9e.\\ntf";
                bytes[i] = JSONISH[usize::from(*b) % JSONISH.len()];
            }
        }
    }
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    /// Any JSON at all as database_config.json.
    #[test]
    fn gen_db_config_arbitrary_json(v in json_value()) {
        let _ = parse_config_text(&v.to_string());
    }

    /// SONiC's file with arbitrary values in its fields: accepted exactly when every value portsyncd
    /// uses is usable.
    #[test]
    fn gen_db_config_arbitrary_values(
        db in prop::sample::select(vec!["APPL_DB", "CONFIG_DB", "STATE_DB"]),
        field in prop::sample::select(vec!["id", "separator", "instance"]),
        inst_field in prop::sample::select(vec!["hostname", "port", "unix_socket_path"]),
        v1 in field_value(),
        v2 in field_value(),
        drop_socket in any::<bool>(),
    ) {
        let mut cfg = sonic_config();
        cfg["DATABASES"][db][field] = v1.clone();
        if drop_socket {
            cfg["INSTANCES"]["redis"]
                .as_object_mut()
                .expect("object")
                .remove("unix_socket_path");
        }
        cfg["INSTANCES"]["redis"][inst_field] = v2.clone();
        let res = parse_config_text(&cfg.to_string());
        // The model: is the database field usable?
        let db_ok = match field {
            "id" => v1.as_i64().is_some_and(|n| (0..=MAX_DB_ID).contains(&n)),
            "separator" => v1.as_str().is_some_and(|s| !s.is_empty() && !s.contains('\0')),
            _ => v1.as_str() == Some("redis"),
        };
        let inst = &cfg["INSTANCES"]["redis"];
        let sock = inst.get("unix_socket_path");
        let host = inst.get("hostname");
        let port = inst.get("port");
        // serde: a field present with the wrong type is an error even when it is not used.
        let typed = |v: Option<&Value>, ok: fn(&Value) -> bool| v.is_none_or(|v| v.is_null() || ok(v));
        let types_ok = typed(sock, Value::is_string)
            && typed(host, Value::is_string)
            && typed(port, |v| v.as_u64().is_some_and(|p| p <= 65535));
        let addr_ok = match (sock.and_then(Value::as_str), host.and_then(Value::as_str), port.and_then(Value::as_u64)) {
            (Some(s), _, _) if !s.is_empty() => !s.contains('\0'),
            (_, Some(h), Some(p)) if !h.is_empty() => !h.contains('\0') && p != 0,
            _ => false,
        };
        let want_ok = db_ok && types_ok && addr_ok;
        prop_assert_eq!(res.is_ok(), want_ok, "{:?} for {}", res, cfg);
    }

    /// SONiC's file with bytes changed, removed or inserted (so also not UTF-8), read from disk.
    #[test]
    fn gen_db_config_mutated_file(
        ops in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = serde_json::to_vec_pretty(&sonic_config()).expect("json");
        mutate_bytes(&mut bytes, &ops);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("database_config.json");
        std::fs::write(&path, &bytes).expect("write");
        let start = Instant::now();
        let res = DbLayout::from_config_file(&path, None);
        prop_assert!(start.elapsed() < PARSE_BOUND);
        match res {
            Ok(l) => {
                for ep in [&l.appl, &l.config, &l.state] {
                    assert_usable(ep);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(&path.display().to_string()), "{}", msg);
            }
        }
    }

    /// database_global.json: arbitrary JSON, or SONiC's shape with arbitrary entries, and any
    /// namespace. The error names the file it is about.
    #[test]
    fn gen_db_global_file(
        global in prop_oneof![
            json_value(),
            prop::collection::vec(
                (prop::option::of(prop_oneof![Just("asic0".to_string()), ".{0,6}"]), prop_oneof![
                    Just("../redis0/sonic-db/database_config.json".to_string()),
                    Just("database_config.json".to_string()),
                    Just("/".to_string()),
                    Just(String::new()),
                    ".{0,12}",
                ]),
                0..4,
            )
            .prop_map(|incs| json!({"INCLUDES": incs.into_iter().map(|(ns, inc)| match ns {
                Some(ns) => json!({"namespace": ns, "include": inc}),
                None => json!({"include": inc}),
            }).collect::<Vec<_>>()})),
        ],
        ns in prop_oneof![Just("asic0".to_string()), ".{0,6}"],
    ) {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("sonic-db");
        std::fs::create_dir_all(root.path().join("redis0/sonic-db")).expect("mkdir");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let text = sonic_config().to_string();
        std::fs::write(dir.join("database_config.json"), &text).expect("write");
        std::fs::write(root.path().join("redis0/sonic-db/database_config.json"), &text).expect("write");
        std::fs::write(dir.join("database_global.json"), global.to_string()).expect("write");
        let start = Instant::now();
        let res = DbLayout::from_config_file(&dir.join("database_config.json"), Some(&ns));
        prop_assert!(start.elapsed() < PARSE_BOUND);
        match res {
            Ok(l) => {
                for ep in [&l.appl, &l.config, &l.state] {
                    assert_usable(ep);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let root_s = root.path().display().to_string();
                prop_assert!(
                    msg.contains("database_global.json") || msg.contains(&root_s) || msg.contains("database_config.json") || msg.contains("cannot read"),
                    "{}", msg
                );
            }
        }
    }
}

/// Every option that takes a value, with whether it is a path (any bytes are a valid path).
const OPTIONS: &[(&str, bool)] = &[
    ("--db-config", true),
    ("--namespace", false),
    ("--redis-url", false),
    ("--state-dir", true),
    ("--eoiu-timeout-secs", false),
    ("--resync-interval-secs", false),
    ("--state-max-age-days", false),
    ("--state-rotation", false),
    ("--state-generations", false),
    ("--state-recovery", false),
    ("--json-export", true),
    ("--metrics-enabled", false),
    ("--metrics-listen", false),
    ("--log-level", false),
    ("--log-output", false),
];

/// Option values: bytes (often not UTF-8), numbers near the bounds, and words the parsers know.
fn option_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16),
        ".{0,16}".prop_map(String::into_bytes),
        prop::sample::select(vec![
            "0",
            "1",
            "-1",
            "3",
            "1000",
            "1001",
            "31536000",
            "31536001",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "true",
            "false",
            "yes",
            "off",
            "",
            "info",
            "debug",
            "loud",
            "stdout",
            "STDERR",
            "syslog",
            "127.0.0.1:0",
            "[::1]:9810",
            "unix:///r.sock",
            "redis://h:0",
            "redis://h:65535",
            " 1",
            "1 ",
            "0x10",
            "+5",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        (0u64..u64::MAX).prop_map(|n| n.to_string().into_bytes()),
    ]
}

/// What an error must show of the value: the text (control characters escaped), or its bytes
/// escaped when it is not UTF-8.
fn shown(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) => portsyncd::config::printable(s),
        Err(_) => value.escape_ascii().to_string(),
    }
}

/// A parsed configuration's numbers are within the documented ranges.
fn assert_sane(c: &Config) {
    assert!(c.resync_interval_secs <= MAX_RESYNC_INTERVAL_SECS, "{c:?}");
    assert!(
        (1..=MAX_GENERATIONS).contains(&c.state_generations),
        "{c:?}"
    );
    let _ = c.state_max_age();
    let _ = c.resync_interval();
    let _ = c.json_export_path();
}

fn parse(args: Vec<OsString>) -> Result<Config, clap::Error> {
    let start = Instant::now();
    let res = Config::parse_from_iter(args);
    assert!(start.elapsed() < PARSE_BOUND);
    res
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    /// One option with any value (`--opt=value`, so the value is always taken as the value).
    #[test]
    fn gen_option_values(opt in prop::sample::select(OPTIONS.to_vec()), value in option_value()) {
        let (name, _is_path) = opt;
        let mut arg = format!("{name}=").into_bytes();
        arg.extend_from_slice(&value);
        let res = parse(vec!["portsyncd".into(), OsString::from_vec(arg)]);
        match res {
            Ok(c) => assert_sane(&c),
            Err(e) => {
                let msg = e.to_string();
                prop_assert_eq!(e.exit_code(), 2, "{}", msg);
                prop_assert!(msg.contains(name), "the option is not named: {}", msg);
                prop_assert!(msg.contains(&shown(&value)), "the value is not shown: {}", msg);
            }
        }
    }

    /// Any command line made of options, values and junk: a result or an error with status 2 (0 for
    /// --help and --version).
    #[test]
    fn gen_command_lines(
        words in prop::collection::vec(prop_oneof![
            prop::sample::select(OPTIONS.to_vec()).prop_map(|(o, _)| o.as_bytes().to_vec()),
            Just(b"--help".to_vec()),
            Just(b"--version".to_vec()),
            Just(b"-".to_vec()),
            Just(b"--".to_vec()),
            option_value(),
        ], 0..8),
    ) {
        let mut args: Vec<OsString> = vec!["portsyncd".into()];
        args.extend(words.into_iter().map(OsString::from_vec));
        match parse(args) {
            Ok(c) => assert_sane(&c),
            Err(e) => {
                use clap::error::ErrorKind;
                let want = match e.kind() {
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                    _ => 2,
                };
                prop_assert_eq!(e.exit_code(), want, "{}", e);
            }
        }
    }
}

/// The environment variables worth starting the binary for: not the paths or the Redis URL (a valid
/// value would make the daemon touch that path or that host).
const ENV_VARS: &[(&str, &str)] = &[
    ("PORTSYNCD_NAMESPACE", "--namespace"),
    ("PORTSYNCD_EOIU_TIMEOUT_SECS", "--eoiu-timeout-secs"),
    ("PORTSYNCD_RESYNC_INTERVAL_SECS", "--resync-interval-secs"),
    ("PORTSYNCD_STATE_MAX_AGE_DAYS", "--state-max-age-days"),
    ("PORTSYNCD_STATE_ROTATION", "--state-rotation"),
    ("PORTSYNCD_STATE_GENERATIONS", "--state-generations"),
    ("PORTSYNCD_STATE_RECOVERY", "--state-recovery"),
    ("PORTSYNCD_METRICS_LISTEN", "--metrics-listen"),
    ("PORTSYNCD_LOG_LEVEL", "--log-level"),
    ("PORTSYNCD_LOG_OUTPUT", "--log-output"),
];

/// How long a daemon started with a valid value runs before it is stopped (it waits for a database
/// layout that never comes); a refused value exits at once.
const VALID_RUN: Duration = Duration::from_millis(300);

/// The binary-level test's config: each valid value costs a daemon start (~0.3 s), so a long run
/// (`PROPTEST_CASES` set) runs a 200th of the cases, at least [`CI_BINARY_CASES`]. (The `proptest!`
/// macro would apply `PROPTEST_CASES` over any count set here: this test drives its runner itself.)
fn binary_config() -> ProptestConfig {
    let mut c = config(CI_BINARY_CASES);
    if std::env::var_os("PROPTEST_CASES").is_some() {
        c.cases = (c.cases / 200).max(CI_BINARY_CASES);
    }
    c.source_file = Some(file!()); // failing cases persist in tests/hostile_config.proptest-regressions
    c.test_name = Some(concat!(module_path!(), "::gen_binary_environment_values"));
    c
}

/// The built binary with one environment variable set to any value: it exits 2 at once, naming
/// the option (or the variable) and the value, or it starts.
#[allow(unsafe_code)] // prctl(2) in pre_exec: see the SAFETY comment at the call
#[test]
fn gen_binary_environment_values() {
    let strategy = (
        prop::sample::select(ENV_VARS.to_vec()),
        option_value().prop_filter("no NUL in an environment value", |v| !v.contains(&0)),
    );
    let mut runner = proptest::test_runner::TestRunner::new(binary_config());
    let result = runner.run(&strategy, |(var, value)| {
        let (var, opt) = var;
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portsyncd"));
        cmd.env_clear()
            .current_dir(tmp.path())
            .env(var, OsString::from_vec(value.clone()))
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .arg("--db-config")
            .arg(tmp.path().join("absent/database_config.json"))
            .args(["--metrics-enabled", "false"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if var != "PORTSYNCD_LOG_OUTPUT" {
            cmd.args(["--log-output", "stderr"]);
        }
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of the child process between fork and exec;
        // it allocates nothing and touches no memory of the parent. A daemon left behind by a
        // killed test run would otherwise wait for its database layout forever.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn portsyncd");
        let end = Instant::now() + VALID_RUN;
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break Some(st);
            }
            if Instant::now() >= end {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if status.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some(st) = status {
            prop_assert_eq!(
                st.code(),
                Some(2),
                "{}={:?}: {}",
                var,
                shown(&value),
                stderr
            );
            prop_assert!(stderr.contains(opt) || stderr.contains(var), "{}", stderr);
            prop_assert!(stderr.contains(&shown(&value)), "{}", stderr);
        } else {
            prop_assert!(!stderr.contains("panicked"), "{}", stderr);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The examples the interface names, on the binary: exit 2 with option and value.
#[test]
fn bad_values_in_the_environment_exit_2_naming_them() {
    for (var, value, opt) in [
        ("PORTSYNCD_LOG_LEVEL", &b"de\xffbug"[..], "--log-level"),
        (
            "PORTSYNCD_RESYNC_INTERVAL_SECS",
            b"18446744073709551615",
            "--resync-interval-secs",
        ),
        (
            "PORTSYNCD_STATE_GENERATIONS",
            b"1001",
            "--state-generations",
        ),
        (
            "PORTSYNCD_METRICS_LISTEN",
            b"\xc3\x28:80",
            "--metrics-listen",
        ),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = Command::new(env!("CARGO_BIN_EXE_portsyncd"))
            .env_clear()
            .current_dir(tmp.path())
            .env(var, OsString::from_vec(value.to_vec()))
            .arg("--state-dir")
            .arg(tmp.path())
            .stdin(Stdio::null())
            .output()
            .expect("run portsyncd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert!(stderr.contains(opt), "{var}: {stderr}");
        assert!(stderr.contains(&shown(value)), "{var}: {stderr}");
    }
}
