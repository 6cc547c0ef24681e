//! Benchmark floor: the least a collector can do. One sock_diag socket, one
//! TCPDIAG_GETSOCK walk (IPv4 + IPv6) and two UDP dumps, mask 0xFFE, a 32 KiB
//! buffer, and only the state byte of each record is read. Raw libc, no
//! error reporting beyond an exit code: this is a yardstick, not a tool.
//!
//! usage: floor [REPEAT]: the same dumps REPEAT times (default 1) on one
//! socket, to measure the per-gather kernel cost without process start-up.
//!
//! usage: floor [REPEAT]: the same dumps REPEAT times (default 1) on the same
//! socket, to measure the per-gather kernel cost without process start-up.

const HDR: usize = 16;

fn request(seq: u32, kind: u16, family: u8, proto: u8) -> Vec<u8> {
    let mut b = vec![0u8; if kind == 18 { HDR + 60 } else { HDR + 56 }];
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&kind.to_ne_bytes());
    b[6..8].copy_from_slice(&(0x01u16 | 0x300).to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    if kind == 18 {
        b[HDR] = family;
        b[HDR + 52..HDR + 56].copy_from_slice(&0xFFEu32.to_ne_bytes());
    } else {
        b[HDR] = family;
        b[HDR + 1] = proto;
        b[HDR + 4..HDR + 8].copy_from_slice(&0xFFEu32.to_ne_bytes());
    }
    b
}

fn main() {
    // SAFETY: plain syscalls on a buffer we own.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        );
        assert!(fd >= 0);
        let mut buf = vec![0u8; 32 * 1024];
        let mut states = [0u64; 256];
        let repeat: usize = std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1);
        let dumps = [(18u16, 0u8, 6u8), (20, 2, 17), (20, 10, 17)];
        for (seq, (kind, family, proto)) in
            dumps.iter().cycle().take(3 * repeat).copied().enumerate()
        {
            let req = request(seq as u32 + 1, kind, family, proto);
            assert_eq!(
                libc::send(fd, req.as_ptr().cast(), req.len(), 0),
                req.len() as isize
            );
            'dump: loop {
                let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                assert!(n > 0);
                let n = n as usize;
                let mut off = 0;
                while off + HDR <= n {
                    let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
                    let t = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
                    if t == 3 {
                        break 'dump;
                    }
                    assert!(t != 2 && len >= HDR + 2);
                    states[buf[off + HDR + 1] as usize] += 1;
                    off += (len + 3) & !3;
                }
            }
        }
        let total: u64 = states.iter().sum();
        println!("{total}");
    }
}
