//! The kernel-side filter of `--tcp-info`'s extra dump: the selected ports
//! compiled to `INET_DIAG_REQ_BYTECODE`, and the request that carries it.
//!
//! The kernel runs the bytecode on every socket of the walk before it fills
//! a record (`inet_diag_bc_sk()` in `inet_diag_dump_icsk()`,
//! net/ipv4/inet_diag.c), so a socket that no selection names costs the walk
//! and nothing more: no `lock_sock()`, no `tcp_info`, no bytes.
//!
//! ```text
//! struct inet_diag_bc_op {     offset
//!     unsigned char  code;     0   INET_DIAG_BC_S_GE (2), S_LE (3), D_GE (4),
//!                                  D_LE (5), JMP (1), D_COND (8)
//!     unsigned char  yes;      1   bytes to skip when the test holds
//!     unsigned short no;       2   bytes to skip when it does not
//! };                           4   a port test is followed by a second op
//!                                  whose `no` is the port (host order)
//! ```
//!
//! `inet_diag_bc_run()` accepts a socket when the jumps land exactly on the
//! end and rejects it when they land past it. `inet_diag_bc_audit()` walks
//! the `yes` chain from the start and requires every `yes` and `no` to be a
//! multiple of 4, at least the op's own length (8 for a port test), at most
//! 4 past the end, and every `no` short of the end to land on an op of the
//! `yes` chain (`valid_cc()`). Checked in torvalds/linux net/ipv4/inet_diag.c
//! (the tree at 00ed905ab8e5); the ops used here (`S_GE`, `S_LE`, `D_GE`,
//! `D_LE`, `JMP`, `D_COND`) are in every kernel with sock_diag, and the test
//! suite runs the filter on Linux 6.18. `S_EQ`/`D_EQ` (newer) are not used, so
//! one port is the range `port..=port`.
//!
//! A destination (`--destinations`' top rows) is one `D_COND` op followed by
//! its `struct inet_diag_hostcond`, 16 bytes for IPv4 and 28 for IPv6:
//!
//! ```text
//! struct inet_diag_hostcond {  offset (after the op)
//!     __u8  family;            0   AF_INET or AF_INET6 (valid_hostcond())
//!     __u8  prefix_len;        1   32 or 128: the whole address
//!     int   port;              4   the remote port (-1 would be any)
//!     __be32 addr[];           8   4 or 16 bytes
//! };
//! ```
//!
//! `inet_diag_bc_run()` matches an `AF_INET` condition against an IPv6
//! socket's IPv4-mapped address too, as `--destinations` counts them.
//!
//! One selected port is a term of 16 bytes, `GE port; LE port`; every term
//! but the last is followed by `JMP` to the end (accept). A failing test
//! jumps to the next term, or, in the last term, 4 past the end (reject).
//! So the `yes` chain visits every op, as the audit wants:
//!
//! ```text
//! GE p1 (yes 8, no 20) ─► LE p1 (yes 8, no 12) ─► JMP (no: to the end)
//! GE p2 (yes 8, no 20) ─► LE p2 (yes 8, no 12) ─► JMP ...
//! GE pn (yes 8, no 20 = past the end) ─► LE pn (yes 8: the end, no 12: past)
//! ```

use crate::wire::{self, NLMSG_HDRLEN};

const BC_JMP: u8 = 1;
const BC_S_GE: u8 = 2;
const BC_S_LE: u8 = 3;
const BC_D_GE: u8 = 4;
const BC_D_LE: u8 = 5;
const BC_D_COND: u8 = 8;

/// `INET_DIAG_REQ_BYTECODE`: the request attribute holding the program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;

/// One thing a selected socket matches.
#[derive(Debug, Clone, Copy)]
enum Term<'a> {
    Local(u16),
    Remote(u16),
    /// Remote address (IPv6 form, IPv4 mapped) and port.
    Destination(&'a [u8; 16], u16),
}

impl Term<'_> {
    /// Its bytes, without the `JMP` that follows all but the last.
    fn len(self) -> usize {
        match self {
            Term::Local(_) | Term::Remote(_) => 16,
            Term::Destination(a, _) if is_v4(a) => 4 + 8 + 4,
            Term::Destination(..) => 4 + 8 + 16,
        }
    }

    /// Appends its ops; a failing test jumps `fail` bytes past the term's
    /// end (4: over its `JMP` to the next term, or past the program).
    fn write(self, out: &mut Vec<u8>) {
        let len = self.len();
        match self {
            Term::Local(p) | Term::Remote(p) => {
                let (ge, le) = if matches!(self, Term::Remote(_)) {
                    (BC_D_GE, BC_D_LE)
                } else {
                    (BC_S_GE, BC_S_LE)
                };
                op(out, ge, 8, 16 + 4);
                op(out, 0, 0, p);
                op(out, le, 8, 8 + 4);
                op(out, 0, 0, p);
            }
            Term::Destination(a, p) => {
                op(out, BC_D_COND, len as u8, (len + 4) as u16);
                let v4 = is_v4(a);
                out.push(if v4 { wire::AF_INET } else { wire::AF_INET6 });
                out.push(if v4 { 32 } else { 128 });
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&i32::from(p).to_ne_bytes());
                out.extend_from_slice(if v4 { &a[12..] } else { &a[..] });
            }
        }
    }
}

/// Whether an address in IPv6 form is IPv4-mapped.
fn is_v4(a: &[u8; 16]) -> bool {
    a[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
}

/// Appends one op.
fn op(out: &mut Vec<u8>, code: u8, yes: u8, no: u16) {
    out.push(code);
    out.push(yes);
    out.extend_from_slice(&no.to_ne_bytes());
}

/// Appends the bytecode that accepts a socket whose local port is one of
/// `local`, whose remote port is one of `remote`, or whose remote address
/// and port are one of `destinations` (IPv6 form). Empty when nothing is
/// selected (the caller then dumps nothing). At most
/// [`crate::measure::port::count::MAX_PORTS`] ports and as many destinations,
/// so every jump fits its 16 bits.
pub fn compile(local: &[u16], remote: &[u16], destinations: &[([u8; 16], u16)], out: &mut Vec<u8>) {
    let terms = || {
        let l = local.iter().map(|&p| Term::Local(p));
        let r = remote.iter().map(|&p| Term::Remote(p));
        let d = destinations.iter().map(|(a, p)| Term::Destination(a, *p));
        l.chain(r).chain(d)
    };
    let n = terms().count();
    let total: usize = terms()
        .map(|t| t.len() + 4)
        .sum::<usize>()
        .saturating_sub(4);
    debug_assert!(total + 4 <= u16::MAX as usize);
    let start = out.len();
    for (i, t) in terms().enumerate() {
        t.write(out);
        if i + 1 < n {
            // JMP: its test never holds, so `no` is taken: to the end.
            let at = out.len() - start;
            op(out, BC_JMP, 4, (total - at) as u16);
        }
    }
    debug_assert_eq!(out.len() - start, total);
}

/// A `TCPDIAG_GETSOCK` dump request of TCP sockets in `states` (IPv4 and
/// IPv6 in one walk) asking for `INET_DIAG_INFO`, with `bytecode` as its
/// `INET_DIAG_REQ_BYTECODE` attribute, written into `out` (cleared). The
/// compat request takes the attribute as `SOCK_DIAG_BY_FAMILY` does: both
/// audit it with `inet_diag_bc_audit()` before the dump starts
/// (`inet_diag_rcv_msg_compat()`), and `inet_diag_dump_compat()` hands it to
/// the same walk.
pub fn info_request(seq: u32, states: u32, bytecode: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&wire::tcp_request(seq, states, wire::EXT_INFO));
    wire::push_attr(out, INET_DIAG_REQ_BYTECODE, bytecode);
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_ne_bytes());
    debug_assert!(out.len() >= NLMSG_HDRLEN);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> usize {
        u16::from_ne_bytes([b[at + 2], b[at + 3]]) as usize
    }

    /// `inet_diag_bc_run()` for a socket with ports `sport`, `dport`,
    /// transcribed for the ops compiled here.
    fn run(bc: &[u8], sport: u16, dport: u16, daddr: [u8; 16]) -> bool {
        let mut len = bc.len() as isize;
        let mut at = 0usize;
        while len > 0 {
            let code = bc[at];
            let port = || u16_at(bc, at + 4) as u16;
            let yes = match code {
                BC_JMP => false,
                BC_D_COND => {
                    let c = &bc[at + 4..];
                    let want = i32::from_ne_bytes(c[4..8].try_into().unwrap());
                    let v4 = c[0] == wire::AF_INET;
                    let addr: &[u8] = if v4 { &c[8..12] } else { &c[8..24] };
                    let got: &[u8] = if v4 && is_v4(&daddr) {
                        &daddr[12..]
                    } else {
                        &daddr
                    };
                    want == i32::from(dport) && addr == got && (v4 || !is_v4(&daddr))
                }
                BC_S_GE => sport >= port(),
                BC_S_LE => sport <= port(),
                BC_D_GE => dport >= port(),
                BC_D_LE => dport <= port(),
                _ => panic!("op {code}"),
            };
            let step = if yes {
                bc[at + 1] as usize
            } else {
                u16_at(bc, at)
            };
            len -= step as isize;
            at += step;
        }
        len == 0
    }

    /// `valid_cc()`.
    fn valid_cc(bc: &[u8], cc: isize) -> bool {
        let mut len = bc.len() as isize;
        let mut at = 0;
        while len >= 0 {
            if cc > len {
                return false;
            }
            if cc == len {
                return true;
            }
            let yes = bc[at + 1] as isize;
            if yes < 4 || yes & 3 != 0 {
                return false;
            }
            len -= yes;
            at += yes as usize;
        }
        false
    }

    /// `inet_diag_bc_audit()` for the ops compiled here.
    fn audit(bc: &[u8]) -> bool {
        if bc.len() < 4 {
            return false;
        }
        let mut len = bc.len() as isize;
        let mut at = 0usize;
        while len > 0 {
            let code = bc[at];
            let min = match code {
                BC_S_GE | BC_S_LE | BC_D_GE | BC_D_LE => 8,
                BC_JMP => 4,
                // valid_hostcond(): the op, the 8-byte header, the address.
                BC_D_COND => match bc.get(at + 4) {
                    Some(&wire::AF_INET) => 4 + 8 + 4,
                    Some(&wire::AF_INET6) => 4 + 8 + 16,
                    _ => return false,
                },
                _ => return false,
            };
            if len < min {
                return false;
            }
            let (yes, no) = (bc[at + 1] as isize, u16_at(bc, at) as isize);
            if no < min || no > len + 4 || no & 3 != 0 {
                return false;
            }
            if no < len && !valid_cc(bc, len - no) {
                return false;
            }
            if yes < min || yes > len + 4 || yes & 3 != 0 {
                return false;
            }
            at += yes as usize;
            len -= yes;
        }
        len == 0
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&a);
        m
    }

    #[test]
    fn the_program_passes_the_audit_and_accepts_exactly_the_selected_sockets() {
        let six: [u8; 16] = std::array::from_fn(|i| i as u8 + 0x20);
        let many: Vec<u16> = (1000..2024).collect();
        type Case<'a> = (&'a [u16], &'a [u16], Vec<([u8; 16], u16)>);
        let cases: [Case<'_>; 7] = [
            (&[5432], &[], vec![]),
            (&[], &[443], vec![]),
            (&[22, 5432], &[443], vec![]),
            (&[1, 65535], &[0, 80, 65535], vec![]),
            (&many, &[], vec![]),
            (&[], &[], vec![(v4([10, 0, 0, 7]), 5432)]),
            (
                &[22],
                &[80],
                vec![
                    (six, 443),
                    (v4([10, 0, 0, 7]), 5432),
                    (v4([10, 0, 0, 8]), 1),
                ],
            ),
        ];
        let addrs = [
            v4([10, 0, 0, 7]),
            v4([10, 0, 0, 8]),
            v4([10, 0, 0, 9]),
            six,
            [0; 16],
        ];
        for (local, remote, dests) in cases {
            let mut bc = vec![0xee];
            compile(local, remote, &dests, &mut bc);
            let bc = &bc[1..];
            assert!(audit(bc), "{local:?} {remote:?} {dests:?}");
            for s in [
                0u16, 1, 22, 80, 443, 999, 1000, 1500, 2023, 2024, 5432, 65535,
            ] {
                for d in [0u16, 1, 80, 443, 5432, 65535] {
                    for a in addrs {
                        let want =
                            local.contains(&s) || remote.contains(&d) || dests.contains(&(a, d));
                        assert_eq!(run(bc, s, d, a), want, "{local:?} {remote:?} {s} {d} {a:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_request_carries_the_program_as_its_attribute() {
        let mut bc = Vec::new();
        compile(&[5432], &[], &[], &mut bc);
        let mut req = Vec::new();
        info_request(7, 0x2, &bc, &mut req);
        assert_eq!(req.len(), wire::TCP_REQUEST_LEN + 4 + 16);
        assert_eq!(
            u32::from_ne_bytes(req[..4].try_into().unwrap()) as usize,
            req.len()
        );
        assert_eq!(req[NLMSG_HDRLEN + 3], 1 << 1); // idiag_ext: INET_DIAG_INFO
        let attr = &req[wire::TCP_REQUEST_LEN..];
        assert_eq!(u16::from_ne_bytes([attr[0], attr[1]]), 20);
        assert_eq!(u16::from_ne_bytes([attr[2], attr[3]]), 1);
        assert_eq!(&attr[4..], &bc[..]);
    }
}
