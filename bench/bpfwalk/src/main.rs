//! Issue 35 Part 2 prototype: counts the TCP sockets of every network
//! namespace that shares the host's TCP hash tables in one BPF walk
//! (../../bpf/tcpwalk.bpf.c), loaded with aya.
//!
//! `bpfwalk dump`: one gather, a line `inode family state count` per
//! namespace, family (4, 6) and state (state 12, a request socket, printed
//! as 3 SYN_RECV as sock_diag reports it), then the walk's trailer on stderr.
//! `bpfwalk allnetns [N]`: N (1) whole `--all-netns`-like gathers: the walk
//! for TCP, then every namespace entered for its UDP dumps (allnetns.rs);
//! with N > 1, CPU per gather as `bench` prints it.
//! `bpfwalk bench N`: N gathers, CPU (this thread's, CLOCK_THREAD_CPUTIME_ID) per
//! gather: min, median, max; fds and RSS before and after.
use std::{collections::HashMap as Map, fs, io::Read};

mod allnetns;

use aya::{
    maps::{Array, HashMap},
    programs::Iter,
    Btf, Ebpf, EbpfLoader,
};

static OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcpwalk.bpf.o"));

#[derive(Debug, Default, Clone, Copy)]
struct Trailer {
    generation: u64,
    sockets: u64,
    restarts: u64,
    broken: u64,
    long_chains: u64,
    map_full: u64,
    buckets: u64,
    slices: u64,
    max_slice_us: u64,
    slices_over_1ms: u64,
    reads: u32,
}

struct Walker {
    /// Process CPU ms of the load's phases: BTF parse, object load (maps,
    /// relocations), the verifier.
    phases: [f64; 3],
    ebpf: Ebpf,
    buf: Vec<u8>,
    stale: Vec<u64>,
}

impl Walker {
    fn new() -> Result<Walker, Box<dyn std::error::Error>> {
        let t0 = clock_ns(2);
        let btf = Btf::from_sys_fs()?;
        let t1 = clock_ns(2);
        // BPFWALK_OBJ: another build of the program, for experiments.
        let other = std::env::var_os("BPFWALK_OBJ").map(fs::read).transpose()?;
        // The parsed BTF serves both the relocations and the attach target.
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(other.as_deref().unwrap_or(OBJ))?;
        let t2 = clock_ns(2);
        let prog: &mut Iter = ebpf
            .program_mut("tcpwalk")
            .ok_or("no program")?
            .try_into()?;
        prog.load("task", &btf)?;
        let t3 = clock_ns(2);
        let ms = |a: u64, b: u64| (b - a) as f64 / 1e6;
        let phases = [ms(t0, t1), ms(t1, t2), ms(t2, t3)];
        Ok(Walker {
            phases,
            ebpf,
            buf: Vec::with_capacity(4096),
            stale: Vec::new(),
        })
    }

    /// Groups walked since the load (the program's `progress` map).
    fn walked(&self) -> Result<u64, Box<dyn std::error::Error>> {
        let a: Array<_, u64> =
            Array::try_from(self.ebpf.map("progress").ok_or("no progress map")?)?;
        Ok(a.get(&0, 0)?)
    }

    /// One walk; `each(inode, counts)` per namespace.
    fn gather(
        &mut self,
        mut each: impl FnMut(u32, &[u32; 32]),
    ) -> Result<Trailer, Box<dyn std::error::Error>> {
        let mut t = Trailer::default();
        let mut walked = self.walked()?;
        loop {
            t.reads += 1;
            let prog: &mut Iter = self
                .ebpf
                .program_mut("tcpwalk")
                .ok_or("no program")?
                .try_into()?;
            let id = prog.attach()?;
            let mut f = prog.take_link(id)?.into_file()?;
            self.buf.clear();
            f.read_to_end(&mut self.buf)?;
            if self.buf.len() >= 88 {
                break;
            }
            // A read that visited tasks but did not finish the walk: it must
            // have walked some groups, or the walk would never end.
            let now = self.walked()?;
            if now == walked {
                return Err(format!("read {} of the walk made no progress", t.reads).into());
            }
            walked = now;
        }
        let w = |i: usize| u64::from_ne_bytes(self.buf[i * 8..i * 8 + 8].try_into().unwrap());
        if w(0) != 0x6b6c617774706374 {
            return Err("bad trailer".into());
        }
        t.generation = w(1);
        t.sockets = w(2);
        t.restarts = w(3);
        t.broken = w(4);
        t.long_chains = w(5);
        t.map_full = w(6);
        t.buckets = w(7);
        t.slices = w(8);
        t.max_slice_us = w(9) / 1000;
        t.slices_over_1ms = w(10);
        let mut map: HashMap<_, u64, [u32; 32]> =
            HashMap::try_from(self.ebpf.map_mut("counts").ok_or("no map")?)?;
        self.stale.clear();
        for kv in map.iter() {
            let (k, v) = kv?;
            if u64::from(v[0]) == t.generation & 0xffff_ffff {
                each(v[14], &v);
            } else {
                self.stale.push(k);
            }
        }
        for k in &self.stale {
            map.remove(k)?;
        }
        Ok(t)
    }
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// CPU time of `clock` (2: the process, 3: this thread; exact, unlike
/// schedstat, which moves only at ticks and switches).
fn clock_ns(clock: i32) -> u64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: ts is a valid timespec.
    assert_eq!(unsafe { clock_gettime(clock, &mut ts) }, 0);
    ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
}

fn cpu_ns() -> u64 {
    clock_ns(3)
}

fn fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let p0 = clock_ns(2);
    let mut w = Walker::new()?;
    let load_ms = (clock_ns(2) - p0) as f64 / 1e6;
    match args.get(1).map(String::as_str) {
        Some("dump") => {
            let t = w.gather(|inode, v| {
                for (family, half) in [(4, &v[..16]), (6, &v[16..])] {
                    let mut c = [0; 14];
                    c[1..14].copy_from_slice(&half[1..14]);
                    c[3] += c[12];
                    c[12] = 0;
                    for (s, n) in c.iter().enumerate().skip(1) {
                        if *n > 0 {
                            println!("{inode} {family} {s} {n}");
                        }
                    }
                }
                if v[16] > 0 {
                    println!("{inode} other 0 {}", v[16]);
                }
            })?;
            eprintln!("{t:?}");
        }
        Some("bench") => {
            let n: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
            w.gather(|_, _| {})?;
            let (f0, r0) = (fds(), rss_kib());
            let mut times = Vec::with_capacity(n);
            let mut last = Trailer::default();
            let mut restarts = 0;
            let mut max_slice_us = 0;
            let (mut slices, mut over, mut incomplete) = (0, 0, 0);
            let (mut fewest, mut most) = (u64::MAX, 0);
            for _ in 0..n {
                let c0 = cpu_ns();
                let mut namespaces = 0;
                last = w.gather(|_, _| namespaces += 1)?;
                times.push(cpu_ns() - c0);
                restarts += last.restarts;
                max_slice_us = max_slice_us.max(last.max_slice_us);
                slices += last.slices;
                over += last.slices_over_1ms;
                if last.broken + last.long_chains + last.map_full > 0 {
                    eprintln!("incomplete walk: {last:?}");
                    incomplete += 1;
                }
                fewest = fewest.min(last.sockets);
                most = most.max(last.sockets);
                let _ = namespaces;
            }
            times.sort_unstable();
            println!(
                "load CPU ms {load_ms:.1} (BTF {:.1}, object {:.1}, verifier {:.1}); gathers {n}: CPU ms min {:.2} median {:.2} max {:.2}; sockets {fewest}..{most} (last {}), {incomplete} incomplete walks; reads {} slices {} longest slice {max_slice_us} us, {over} of {slices} over 1 ms; restarts {restarts}; fds {f0}->{} RSS KiB {r0}->{}",
                w.phases[0],
                w.phases[1],
                w.phases[2],
                times[0] as f64 / 1e6,
                times[n / 2] as f64 / 1e6,
                times[n - 1] as f64 / 1e6,
                last.sockets,
                last.reads,
                last.slices,
                fds(),
                rss_kib()
            );
        }
        Some("allnetns") => {
            let n: usize = args.get(2).map_or(Ok(1), |s| s.parse())?;
            let mut tcp: Map<u32, u64> = Map::new();
            let mut buf = vec![0u8; 32 * 1024];
            let mut times = Vec::with_capacity(n);
            let mut last = (0, 0, 0);
            for i in 0..n {
                let c0 = cpu_ns();
                tcp.clear();
                w.gather(|inode, v| {
                    let all: u32 = v[1..14].iter().chain(&v[16..30]).sum();
                    tcp.insert(inode, u64::from(all));
                })?;
                last = allnetns::gather(&tcp, &mut buf, n == 1 && i == 0)?;
                times.push(cpu_ns() - c0);
            }
            times.sort_unstable();
            eprintln!(
                "load CPU ms {load_ms:.1}; gathers {n}: CPU ms min {:.2} median {:.2} max {:.2}; namespaces {} tcp {} udp {}; fds {} RSS KiB {}",
                times[0] as f64 / 1e6,
                times[n / 2] as f64 / 1e6,
                times[n - 1] as f64 / 1e6,
                last.0,
                last.1,
                last.2,
                fds(),
                rss_kib()
            );
        }
        _ => return Err("usage: bpfwalk dump | bench N | allnetns [N]".into()),
    }
    Ok(())
}
