//! Throughput of the SONiC write paths against a local redis-server. A program that prints numbers,
//! not a timed assertion: `cargo test --release --test sonic_bench -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::redis::RedisServer;
use portsyncd::sonic::{DbLayout, SonicDb, StateWrite};

fn fields(i: usize) -> Vec<(String, String)> {
    [
        (
            "lanes",
            format!("{},{},{},{}", i * 4, i * 4 + 1, i * 4 + 2, i * 4 + 3),
        ),
        ("alias", format!("etp{i}")),
        ("speed", "100000".to_string()),
        ("mtu", "9100".to_string()),
        ("admin_status", "up".to_string()),
        ("index", i.to_string()),
    ]
    .into_iter()
    .map(|(f, v)| (f.to_string(), v))
    .collect()
}

#[test]
#[ignore = "benchmark: prints numbers"]
fn bench_sonic_writes() {
    let srv = RedisServer::start();
    let mut d = SonicDb::new(DbLayout::from_redis_url(&srv.url()).unwrap());
    d.ping().unwrap();
    let n = 1024;
    let ports: BTreeMap<String, Vec<(String, String)>> = (0..n)
        .map(|i| (format!("Ethernet{}", i * 4), fields(i)))
        .collect();

    let t = Instant::now();
    d.publish_app_ports(&ports).unwrap();
    let publish = t.elapsed();

    let t = Instant::now();
    for (name, f) in &ports {
        d.apply_state_writes(&[StateWrite::Set {
            name: name.clone(),
            fields: f[..4].to_vec(),
        }])
        .unwrap();
    }
    let one_by_one = t.elapsed();

    let batch: Vec<StateWrite> = ports
        .keys()
        .map(|name| StateWrite::Set {
            name: name.clone(),
            fields: vec![
                ("state".into(), "ok".into()),
                ("netdev_oper_status".into(), "up".into()),
                ("admin_status".into(), "up".into()),
                ("mtu".into(), "9100".into()),
            ],
        })
        .collect();
    let t = Instant::now();
    d.apply_state_writes(&batch).unwrap();
    let batched = t.elapsed();

    let t = Instant::now();
    let read = d.read_state_ports().unwrap();
    let read_time = t.elapsed();
    assert_eq!(read.len(), n);

    println!("ports: {n}");
    println!(
        "publish_app_ports (pipelined EVALSHA): {:.1} ms",
        publish.as_secs_f64() * 1e3
    );
    println!(
        "apply_state_writes one port per call: {:.1} ms ({:.1} us/port)",
        one_by_one.as_secs_f64() * 1e3,
        one_by_one.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "apply_state_writes all ports in one call: {:.1} ms",
        batched.as_secs_f64() * 1e3
    );
    println!("read_state_ports: {:.1} ms", read_time.as_secs_f64() * 1e3);
}
