//! `bpfwalk allnetns`: what a `--source bpf --all-netns` gather would do
//! besides the walk, to measure it whole: find every network namespace
//! through /proc/PID/ns/net (each once, by inode), enter each and dump its
//! UDP sockets (IPv4, IPv6) over sock_diag, take its TCP counts from the walk,
//! and come back. Prints `inode tcp udp` per namespace.
use std::{collections::HashMap, fs, os::fd::AsRawFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;

/// One sock_diag dump of `family`'s UDP sockets in the current namespace:
/// the number of sockets.
fn udp_dump(buf: &mut [u8], family: u8) -> std::io::Result<u64> {
    // SAFETY: plain syscalls on a socket and buffers we own.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req = [0u8; 16 + 56];
        req[0..4].copy_from_slice(&72u32.to_ne_bytes());
        req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req[6..8].copy_from_slice(&0x301u16.to_ne_bytes()); // REQUEST | DUMP
        req[16] = family;
        req[17] = libc::IPPROTO_UDP as u8;
        req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
        let sent = libc::send(fd, req.as_ptr().cast(), req.len(), 0);
        let mut n = 0;
        let result = 'dump: {
            if sent < 0 {
                break 'dump Err(std::io::Error::last_os_error());
            }
            loop {
                let got = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                if got < 0 {
                    break 'dump Err(std::io::Error::last_os_error());
                }
                let mut at = 0;
                while at + 16 <= got as usize {
                    let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                    let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
                    if kind == NLMSG_DONE {
                        break 'dump Ok(n);
                    }
                    if kind == NLMSG_ERROR || len < 16 {
                        break 'dump Err(std::io::Error::other("sock_diag error"));
                    }
                    n += 1;
                    at += (len + 3) & !3;
                }
            }
        };
        libc::close(fd);
        result
    }
}

/// Every namespace reachable through /proc, once: inode -> an open handle.
fn namespaces() -> HashMap<u64, fs::File> {
    use std::os::unix::fs::MetadataExt;
    let mut found = HashMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = entry.path().join("ns/net");
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if found.contains_key(&meta.ino()) {
            continue;
        }
        if let Ok(f) = fs::File::open(&path) {
            found.insert(meta.ino(), f);
        }
    }
    found
}

fn enter(f: &fs::File) -> std::io::Result<()> {
    // SAFETY: setns on a namespace file we hold open.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One gather of every namespace: the walk's TCP totals per inode (from
/// `tcp`), each namespace's UDP by netlink. Returns (namespaces, tcp, udp).
pub fn gather(
    tcp: &HashMap<u32, u64>,
    buf: &mut [u8],
    print: bool,
) -> Result<(usize, u64, u64), Box<dyn std::error::Error>> {
    let home = fs::File::open("/proc/thread-self/ns/net")?;
    let all = namespaces();
    let (mut tcp_total, mut udp_total) = (0, 0);
    for (ino, f) in &all {
        enter(f)?;
        let udp = udp_dump(buf, libc::AF_INET as u8)? + udp_dump(buf, libc::AF_INET6 as u8)?;
        let t = tcp.get(&(*ino as u32)).copied().unwrap_or(0);
        if print {
            println!("{ino} {t} {udp}");
        }
        tcp_total += t;
        udp_total += udp;
    }
    enter(&home)?;
    Ok((all.len(), tcp_total, udp_total))
}
