//! The daemon limits glibc to one malloc arena by itself (`mallopt(M_ARENA_MAX, 1)` in main, before any
//! thread starts): its worker threads share the main heap instead of each getting a 64 MiB-reserved
//! arena heap of its own, which measured 2-3 MiB less peak RSS at 2048 ports (docs/performance.md).
//! `MALLOC_ARENA_MAX` in the environment still wins. Judged from the daemon's /proc/<pid>/maps.

mod common;

use std::time::Duration;

use common::daemon::{wait_until, Daemon};
use common::rig::Rig;

const T: Duration = Duration::from_secs(15);

/// glibc's secondary arenas are heaps reserved 64 MiB at a time (HEAP_MAX_SIZE on 64-bit): an
/// anonymous read-write part followed by an anonymous `---p` reservation of the rest. Nothing else in
/// the daemon reserves an inaccessible anonymous mapping of more than 32 MiB (thread stack guards are
/// one page), so such a mapping is an arena heap.
fn arena_heaps(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    maps.lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let Some((a, b)) = f.first().and_then(|r| r.split_once('-')) else {
                return false;
            };
            let size =
                u64::from_str_radix(b, 16).unwrap_or(0) - u64::from_str_radix(a, 16).unwrap_or(0);
            f.get(1) == Some(&"---p") && f.len() == 5 && size > 32 << 20
        })
        .map(str::to_string)
        .collect()
}

/// Starts the daemon with `env`, lets every worker thread allocate (initial sync, a port appears and
/// reaches STATE_DB, a flap), and returns the arena heaps in its address space.
fn arena_heaps_after_work(env: &[(&str, &str)]) -> Vec<String> {
    let rig = Rig::new(&["Ethernet0", "Ethernet4"]);
    let mut d: Daemon = rig.start_with_env(&[], env);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    rig.add_port("Ethernet0");
    rig.add_port("Ethernet4");
    rig.ns.set_mtu("Ethernet0", 4000);
    assert!(
        wait_until(T, || rig.state("Ethernet0").get("mtu").map(String::as_str)
            == Some("4000")),
        "STATE_DB never saw the MTU\n{}",
        d.log_text()
    );
    let heaps = arena_heaps(d.pid());
    let st = d.terminate();
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    heaps
}

#[test]
fn the_daemon_uses_one_malloc_arena_by_default() {
    assert!(
        std::env::var_os("MALLOC_ARENA_MAX").is_none(),
        "this test needs MALLOC_ARENA_MAX unset in the test's environment"
    );
    let heaps = arena_heaps_after_work(&[]);
    assert!(heaps.is_empty(), "secondary malloc arenas: {heaps:#?}");
}

#[test]
fn malloc_arena_max_in_the_environment_still_wins() {
    // With glibc's own choice (up to 8 per core) the worker threads get arenas of their own: this also
    // shows that the check above can see them.
    let heaps = arena_heaps_after_work(&[("MALLOC_ARENA_MAX", "8")]);
    assert!(
        !heaps.is_empty(),
        "no secondary arena with MALLOC_ARENA_MAX=8"
    );
}
