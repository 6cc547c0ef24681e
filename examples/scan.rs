//! Benchmark helper: the cost of one `--all-netns` re-scan (listing
//! /run/netns and every /proc/PID/ns/net), repeated REPEAT times.
//!
//! usage: scan [REPEAT]  → prints "<namespaces> <processes> <microseconds per scan>"

use std::path::Path;
use std::time::Instant;

use telegraf_netstat::netns;

fn main() {
    let repeat: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("usage: scan [REPEAT]"))
        .unwrap_or(1000);
    let dirs = netns::NAMED_DIRS.map(Path::new);
    let proc_root = Path::new("/proc");
    let mut found = 0;
    let t = Instant::now();
    for _ in 0..repeat {
        found = netns::scan(proc_root, &dirs).expect("scan").targets.len();
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / repeat as f64;
    let processes = std::fs::read_dir(proc_root)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|s| s.parse::<u32>().is_ok())
        })
        .count();
    println!("{found} {processes} {per:.1}");
}
