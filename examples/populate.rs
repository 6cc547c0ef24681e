//! Benchmark population: fills the calling process's network namespace with
//! ESTABLISHED pairs, TIME_WAIT sockets, listeners and UDP sockets, prints
//! "ready" and holds them until stdin closes. Run it in a private namespace
//! (bench/run does); traffic stays on loopback.
//!
//! usage: populate ESTABLISHED_SOCKETS TIME_WAIT LISTENERS UDP

use std::io::{BufRead, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};

fn arg(i: usize) -> usize {
    std::env::args().nth(i).and_then(|a| a.parse().ok()).expect("usage: populate ESTABLISHED TIME_WAIT LISTENERS UDP")
}

fn loopback_up() {
    // SAFETY: socket ioctls on a zeroed ifreq naming "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr), 0, "lo up: {}", std::io::Error::last_os_error());
        libc::close(fd);
    }
}

fn main() {
    let (established, time_wait, listeners, udp) = (arg(1), arg(2), arg(3), arg(4));
    let want = (established + time_wait * 2 + listeners + udp + 1024) as u64;
    // SAFETY: setrlimit with a valid struct.
    unsafe {
        let lim = libc::rlimit { rlim_cur: want, rlim_max: want };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            panic!("cannot raise the fd limit to {want}: {}", std::io::Error::last_os_error());
        }
    }
    loopback_up();
    // Per-namespace sysctls: room for many connections per destination.
    std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535").unwrap();

    let mut keep_l = Vec::new();
    for i in 0..listeners.max(4) {
        let addr = if i % 2 == 0 { "127.0.0.1:0" } else { "[::1]:0" };
        keep_l.push(TcpListener::bind(addr).unwrap());
    }
    let mut keep = Vec::with_capacity(established);
    let pairs = established / 2;
    let mut made = 0;
    while made < pairs {
        // std listeners have a backlog of 128: stay under it per listener.
        let batch = (pairs - made).min(400);
        for j in 0..batch {
            let l = &keep_l[(made + j) % 4];
            keep.push(TcpStream::connect(l.local_addr().unwrap()).unwrap());
        }
        for j in 0..batch {
            keep.push(keep_l[(made + j) % 4].accept().unwrap().0);
        }
        made += batch;
    }
    for i in 0..time_wait {
        let l = &keep_l[i % 4];
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(c);
        drop(s);
    }
    let keep_u: Vec<UdpSocket> = (0..udp).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    println!("ready");
    std::io::stdout().flush().unwrap();
    for _ in std::io::stdin().lock().lines() {}
    drop((keep, keep_l, keep_u));
}
