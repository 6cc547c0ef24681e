//! Kernel I/O over NETLINK_SOCK_DIAG: one socket, one reused receive buffer,
//! the dump requests and the receive loop. Counting is left to the caller,
//! which gets one [`Record`] per socket, read from the record's fixed
//! header only.
//!
//! `NLM_F_DUMP_INTR` is not looked at: the kernel sets it only in
//! `nl_dump_check_consistent()` (include/net/netlink.h), when a dump
//! callback has set `cb->seq` to a table generation and it changed between
//! batches. `inet_diag_dump()` (net/ipv4/inet_diag.c), `udp_diag_dump()`
//! (net/ipv4/udp_diag.c) and `unix_diag_dump()` (net/unix/diag.c) never set
//! `cb->seq`, so `netlink_dump()`'s check on the final NLMSG_DONE compares
//! 0 with 0 and never flags these dumps. Like any sock_diag reader (`ss`),
//! a dump is a walk, not a snapshot: a socket that appears or goes during
//! the walk may or may not be in it.

use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::net::{netlink, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::error::Error;
use crate::record::{HealthInfo, Kind, ListenInfo, Record, LISTEN, SYN_RECV};
use crate::wire::{self, Dump, InetDiagMsg, Messages, UnixDiagMsg};

/// `--tcp-info`'s lookups sent at once: their answers (a few hundred bytes
/// each, about 1.5 KiB of receive buffer with the kernel's overhead) stay
/// far below any socket's receive buffer (`net.core.rmem_default`).
pub const LOOKUP_BATCH: usize = 16;

/// The kernel hands out a dump in batches of at most 32 KiB
/// (`SKB_WITH_OVERHEAD(32768)`); a larger buffer would never be filled and a
/// smaller one would make the kernel build smaller batches.
pub const RECV_BUF_LEN: usize = 32 * 1024;

/// A receive buffer for `DiagSocket::dump`: one is enough for any number of
/// sockets, since a dump is read to its end before the next starts.
pub fn recv_buffer() -> Box<[u8]> {
    vec![0u8; RECV_BUF_LEN].into_boxed_slice()
}

/// A sock_diag socket bound to the network namespace it was created in.
pub struct DiagSocket {
    fd: OwnedFd,
    seq: u32,
}

fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

impl DiagSocket {
    pub fn open() -> Result<Self, Error> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(netlink::SOCK_DIAG),
        )
        .map_err(|e| Error::NetlinkOpen(e.into()))?;
        Ok(DiagSocket { fd, seq: 0 })
    }

    /// Runs one dump, receiving into `buf` (`recv_buffer()`), and calls
    /// `on_record` with every socket it returns (see `read_batch`). `Dump::Tcp` covers IPv4 and IPv6 in a single hash
    /// walk. `stop` is asked after every batch (~300 sockets); when it says
    /// so the dump is abandoned with `Error::Stopped` and the socket must
    /// not be reused.
    /// Runs one dump, handing each socket to `on_record`; with `cgroups`
    /// the records carry their cgroup id, with `health` a UDP dump asks for
    /// `INET_DIAG_SKMEMINFO` and its records carry their drop counter.
    pub fn dump(
        &mut self,
        buf: &mut [u8],
        dump: Dump,
        cgroups: bool,
        health: bool,
        mut on_record: impl FnMut(&Record),
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<(), Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let tcp;
        let udp;
        let unix;
        let request: &[u8] = match dump {
            Dump::Unix => {
                unix = wire::unix_request(seq, wire::UNIX_STATES_ALL);
                &unix
            }
            // `dump_info` makes `TcpInfo`'s filtered request; asked here,
            // it is the plain TCP dump.
            Dump::Tcp | Dump::TcpInfo => {
                tcp = wire::tcp_request(seq, wire::STATES_REAL, 0);
                &tcp
            }
            Dump::Listeners => {
                tcp = wire::tcp_request(seq, wire::STATES_LISTEN, wire::EXT_SKMEMINFO);
                &tcp
            }
            Dump::Udp4 | Dump::Udp6 => {
                let family = if dump == Dump::Udp4 {
                    wire::AF_INET
                } else {
                    wire::AF_INET6
                };
                let ext = if health { wire::EXT_SKMEMINFO } else { 0 };
                udp = wire::family_request(seq, family, wire::IPPROTO_UDP, wire::STATES_REAL, ext);
                &udp
            }
        };
        self.exchange(buf, request, dump, stop, |batch| {
            read_batch(batch, dump, seq, cgroups, health, &mut on_record)
        })
    }

    /// `--tcp-info`'s dump: the TCP sockets in `states` that `bytecode`
    /// (`bytecode::compile`) accepts, each with `INET_DIAG_INFO`,
    /// handed to `on_record` as the kernel wrote them. `request` is a
    /// reused buffer for the request; the received bytes are added to
    /// `bytes`.
    #[allow(clippy::too_many_arguments)]
    pub fn dump_info(
        &mut self,
        buf: &mut [u8],
        request: &mut Vec<u8>,
        states: u32,
        bytecode: &[u8],
        bytes: &mut u64,
        mut on_record: impl FnMut(&InetDiagMsg<'_>),
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<(), Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        crate::bytecode::info_request(seq, states, bytecode, request);
        self.exchange(buf, request, Dump::TcpInfo, stop, |batch| {
            *bytes += batch.len() as u64;
            read_info_batch(batch, seq, &mut on_record)
        })
    }

    /// `--tcp-info`'s lookups: asks for each of `sockets` (family and
    /// `inet_diag_sockid` of its record in the main pass) by itself, with
    /// `INET_DIAG_INFO`, [`LOOKUP_BATCH`] requests per send, and hands each
    /// record answered to `on_record`; a socket gone since (`ENOENT`,
    /// `ESTALE`) is left out. The kernel answers while it handles the send
    /// (`sock_diag_rcv()` runs in the sender's context), so every answer is
    /// queued when `send` returns and is read without waiting: one missing
    /// (`ENOBUFS`, `EAGAIN`) is an error, never a hang. The received bytes
    /// are added to `bytes`.
    pub fn lookup_info(
        &mut self,
        buf: &mut [u8],
        request: &mut Vec<u8>,
        sockets: &[(u8, [u8; wire::SOCKID_LEN])],
        bytes: &mut u64,
        mut on_record: impl FnMut(&InetDiagMsg<'_>),
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<(), Error> {
        let dump = Dump::TcpInfo;
        for chunk in sockets.chunks(LOOKUP_BATCH) {
            if stop() {
                return Err(Error::Stopped);
            }
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            request.clear();
            for (family, id) in chunk {
                wire::lookup_request(seq, *family, wire::EXT_INFO, id, request);
            }
            retry(|| rustix::net::send(&self.fd, request, SendFlags::empty())).map_err(|e| {
                Error::NetlinkSend {
                    dump,
                    source: e.into(),
                }
            })?;
            let mut answers = 0;
            while answers < chunk.len() {
                let len = self.recv(buf, dump, RecvFlags::DONTWAIT)?;
                *bytes += len as u64;
                answers += read_lookup_batch(&buf[..len], seq, &mut on_record)?;
            }
        }
        Ok(())
    }

    /// Receives one batch into `buf`: its length, checked.
    fn recv(&self, buf: &mut [u8], dump: Dump, flags: RecvFlags) -> Result<usize, Error> {
        let (_, len) = retry(|| rustix::net::recv(&self.fd, &mut *buf, flags | RecvFlags::TRUNC))
            .map_err(|e| Error::NetlinkRecv {
            dump,
            source: e.into(),
        })?;
        if len > buf.len() {
            return Err(Error::NetlinkTruncated {
                dump,
                len,
                capacity: buf.len(),
            });
        }
        if len == 0 {
            return Err(Error::NetlinkMalformed {
                dump,
                detail: wire::WireError::ShortHeader {
                    offset: 0,
                    available: 0,
                },
            });
        }
        Ok(len)
    }

    /// Sends `request` and reads the replies into `buf`, one batch at a
    /// time, handing each to `on_batch` until it says the dump is done.
    fn exchange(
        &mut self,
        buf: &mut [u8],
        request: &[u8],
        dump: Dump,
        stop: &mut dyn FnMut() -> bool,
        mut on_batch: impl FnMut(&[u8]) -> Result<Batch, Error>,
    ) -> Result<(), Error> {
        retry(|| rustix::net::send(&self.fd, request, SendFlags::empty())).map_err(|e| {
            Error::NetlinkSend {
                dump,
                source: e.into(),
            }
        })?;

        loop {
            let len = self.recv(buf, dump, RecvFlags::empty())?;
            if on_batch(&buf[..len])? == Batch::Done {
                return Ok(());
            }
            if stop() {
                return Err(Error::Stopped);
            }
        }
    }
}

/// Whether a dump goes on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    More,
    Done,
}

/// The message type of every record in a reply to `dump`.
fn reply_kind(dump: Dump) -> u16 {
    match dump {
        Dump::Tcp | Dump::Listeners | Dump::TcpInfo => wire::TCPDIAG_GETSOCK,
        Dump::Udp4 | Dump::Udp6 | Dump::Unix => wire::SOCK_DIAG_BY_FAMILY,
    }
}

/// Reads the messages of one received batch of the dump with sequence
/// number `seq`: calls `on_record` per socket record (with its cgroup id
/// when `cgroups`, a UDP socket's drop counter when `health`), and says
/// whether the dump is done. Pure: no I/O, so it is
/// tested on captured bytes.
pub fn read_batch(
    batch: &[u8],
    dump: Dump,
    seq: u32,
    cgroups: bool,
    health: bool,
    on_record: &mut impl FnMut(&Record),
) -> Result<Batch, Error> {
    let malformed = |detail| Error::NetlinkMalformed { dump, detail };
    let record = reply_kind(dump);
    let kind = match dump {
        Dump::Tcp | Dump::Listeners | Dump::TcpInfo => Kind::Tcp,
        Dump::Udp4 | Dump::Udp6 => Kind::Udp,
        Dump::Unix => Kind::Unix,
    };
    for msg in Messages::new(batch) {
        let msg = msg.map_err(malformed)?;
        // Replies to an earlier request that was abandoned half way.
        if msg.seq() != seq {
            continue;
        }
        match msg.kind() {
            k if k == record && dump == Dump::Unix => {
                let r = UnixDiagMsg::new(&msg).map_err(malformed)?;
                on_record(&Record::unix(r.sock_type()))
            }
            k if k == record => {
                let r = InetDiagMsg::new(&msg).map_err(malformed)?;
                let state = r.state();
                // Only listeners and handshakes need more than the header's
                // first bytes (for netstat_listen).
                let listen =
                    (kind == Kind::Tcp && (state == LISTEN || state == SYN_RECV)).then(|| {
                        ListenInfo {
                            queue: r.rqueue(),
                            backlog: Some(r.wqueue()),
                            drops: r.drops(),
                        }
                    });
                let ends = ((r.src(), r.sport()), (r.dst(), r.dport()));
                let drops = if health && kind == Kind::Udp {
                    r.drops().unwrap_or(0)
                } else {
                    0
                };
                on_record(
                    &Record::inet(kind, r.family(), state, ends.0, ends.1)
                        .with_listen(listen)
                        .with_queues(r.rqueue(), r.wqueue())
                        .with_cgroup(if cgroups { r.cgroup_id() } else { None })
                        .with_health(HealthInfo {
                            timer: r.timer(),
                            retrans: r.retrans(),
                            drops,
                        })
                        .with_sock_ref(r.sock_ref()),
                )
            }
            _ => {
                if control(&msg, dump)? == Batch::Done {
                    return Ok(Batch::Done);
                }
            }
        }
    }
    Ok(Batch::More)
}

/// A message that is not a socket record: the end of the dump, an error,
/// or nothing (`NLMSG_NOOP` and anything newer carry no socket).
fn control(msg: &wire::NlMsg<'_>, dump: Dump) -> Result<Batch, Error> {
    let malformed = |detail| Error::NetlinkMalformed { dump, detail };
    match msg.kind() {
        wire::NLMSG_DONE | wire::NLMSG_ERROR => {
            let errno = msg.errno().map_err(malformed)?;
            if errno != 0 {
                return Err(Error::NetlinkRefused {
                    dump,
                    source: std::io::Error::from_raw_os_error(errno),
                });
            }
            if msg.kind() == wire::NLMSG_DONE {
                return Ok(Batch::Done);
            }
        }
        wire::NLMSG_OVERRUN => {
            return Err(Error::NetlinkRecv {
                dump,
                source: Errno::NOBUFS.into(),
            })
        }
        _ => {}
    }
    Ok(Batch::More)
}

/// Reads one batch of `--tcp-info`'s dump with sequence number `seq`:
/// calls `on_record` per TCP record (its `INET_DIAG_INFO` is read by the
/// caller), and says whether the dump is done. Pure.
pub fn read_info_batch(
    batch: &[u8],
    seq: u32,
    on_record: &mut impl FnMut(&InetDiagMsg<'_>),
) -> Result<Batch, Error> {
    let dump = Dump::TcpInfo;
    let malformed = |detail| Error::NetlinkMalformed { dump, detail };
    for msg in Messages::new(batch) {
        let msg = msg.map_err(malformed)?;
        if msg.seq() != seq {
            continue;
        }
        if msg.kind() == wire::TCPDIAG_GETSOCK {
            on_record(&InetDiagMsg::new(&msg).map_err(malformed)?);
        } else if control(&msg, dump)? == Batch::Done {
            return Ok(Batch::Done);
        }
    }
    Ok(Batch::More)
}

/// Reads one batch of answers to `--tcp-info`'s lookups with sequence
/// number `seq`: calls `on_record` per record, and returns how many
/// lookups it answered (a record, or an error: `ENOENT` or `ESTALE` for a
/// socket gone since the main pass; any other error fails). Pure.
pub fn read_lookup_batch(
    batch: &[u8],
    seq: u32,
    on_record: &mut impl FnMut(&InetDiagMsg<'_>),
) -> Result<usize, Error> {
    let dump = Dump::TcpInfo;
    let malformed = |detail| Error::NetlinkMalformed { dump, detail };
    let gone = [Errno::NOENT.raw_os_error(), Errno::STALE.raw_os_error()];
    let mut answers = 0;
    for msg in Messages::new(batch) {
        let msg = msg.map_err(malformed)?;
        if msg.seq() != seq {
            continue;
        }
        match msg.kind() {
            wire::SOCK_DIAG_BY_FAMILY => on_record(&InetDiagMsg::new(&msg).map_err(malformed)?),
            wire::NLMSG_ERROR => match msg.errno().map_err(malformed)? {
                e if e == 0 || gone.contains(&e) => {}
                e => {
                    return Err(Error::NetlinkRefused {
                        dump,
                        source: std::io::Error::from_raw_os_error(e),
                    })
                }
            },
            _ => continue,
        }
        answers += 1;
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::{captured_record, push_msg};
    use crate::wire::{NLMSG_DONE, NLMSG_ERROR, NLM_F_MULTI, SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK};

    fn run(batch: &[u8], dump: Dump, seq: u32) -> (Result<Batch, Error>, Vec<u8>) {
        let mut states = Vec::new();
        let r = read_batch(batch, dump, seq, false, false, &mut |r: &Record| {
            assert_eq!(r.family, if dump == Dump::Unix { 1 } else { 2 });
            states.push(r.state)
        });
        (r, states)
    }

    #[test]
    fn counts_records_until_done() {
        let mut b = Vec::new();
        for s in [1u8, 1, 10, 6] {
            push_msg(&mut b, TCPDIAG_GETSOCK, NLM_F_MULTI, 5, &captured_record(s));
        }
        let (r, states) = run(&b, Dump::Tcp, 5);
        assert_eq!(r.unwrap(), Batch::More);
        assert_eq!(states, [1, 1, 10, 6]);
        push_msg(&mut b, NLMSG_DONE, NLM_F_MULTI, 5, &0i32.to_ne_bytes());
        assert_eq!(run(&b, Dump::Tcp, 5).0.unwrap(), Batch::Done);
    }

    #[test]
    fn records_carry_their_timer_and_a_udp_socket_s_drops() {
        // A SYN_SENT socket on its third SYN retry (timer 1, retrans 3).
        let mut syn_sent = captured_record(2);
        syn_sent[2..4].copy_from_slice(&[1, 3]);
        // A UDP record with INET_DIAG_SKMEMINFO: nine u32, drops the last.
        let mut udp = captured_record(7);
        udp.extend_from_slice(&[40, 0, 7, 0]);
        for v in [1280u32, 2304, 0, 212992, 2816, 0, 0, 0, 997] {
            udp.extend_from_slice(&v.to_ne_bytes());
        }
        let mut seen = Vec::new();
        let mut b = Vec::new();
        push_msg(&mut b, TCPDIAG_GETSOCK, NLM_F_MULTI, 1, &syn_sent);
        read_batch(&b, Dump::Tcp, 1, false, true, &mut |r: &Record| {
            seen.push(r.health)
        })
        .unwrap();
        let mut b = Vec::new();
        push_msg(&mut b, SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 1, &udp);
        for health in [true, false] {
            read_batch(&b, Dump::Udp4, 1, false, health, &mut |r: &Record| {
                seen.push(r.health)
            })
            .unwrap();
        }
        let h = |timer, retrans, drops| HealthInfo {
            timer,
            retrans,
            drops,
        };
        // Without --health a UDP dump has no SKMEMINFO to read.
        assert_eq!(seen, [h(1, 3, 0), h(0, 0, 997), h(0, 0, 0)]);
    }

    #[test]
    fn unix_records_give_their_socket_type() {
        use crate::wire::tests::captured_unix_record;
        let mut b = Vec::new();
        for t in [1u8, 2, 5, 2] {
            push_msg(
                &mut b,
                SOCK_DIAG_BY_FAMILY,
                NLM_F_MULTI,
                8,
                &captured_unix_record(t),
            );
        }
        push_msg(&mut b, NLMSG_DONE, NLM_F_MULTI, 8, &0i32.to_ne_bytes());
        let (r, types) = run(&b, Dump::Unix, 8);
        assert_eq!(r.unwrap(), Batch::Done);
        assert_eq!(types, [1, 2, 5, 2]);
        // Shorter than `struct unix_diag_msg`: malformed.
        let mut short = Vec::new();
        push_msg(
            &mut short,
            SOCK_DIAG_BY_FAMILY,
            NLM_F_MULTI,
            8,
            &captured_unix_record(1)[..12],
        );
        assert!(matches!(
            run(&short, Dump::Unix, 8).0,
            Err(Error::NetlinkMalformed {
                dump: Dump::Unix,
                ..
            })
        ));
    }

    #[test]
    fn skips_stale_sequence_numbers() {
        let mut b = Vec::new();
        push_msg(
            &mut b,
            SOCK_DIAG_BY_FAMILY,
            NLM_F_MULTI,
            3,
            &captured_record(7),
        );
        push_msg(&mut b, NLMSG_DONE, NLM_F_MULTI, 3, &0i32.to_ne_bytes());
        push_msg(
            &mut b,
            SOCK_DIAG_BY_FAMILY,
            NLM_F_MULTI,
            4,
            &captured_record(1),
        );
        let (r, states) = run(&b, Dump::Udp4, 4);
        assert_eq!(r.unwrap(), Batch::More);
        assert_eq!(states, [1]);
    }

    #[test]
    fn ignores_records_of_another_request_type() {
        let mut b = Vec::new();
        push_msg(
            &mut b,
            SOCK_DIAG_BY_FAMILY,
            NLM_F_MULTI,
            1,
            &captured_record(1),
        );
        push_msg(&mut b, 1 /* NLMSG_NOOP */, 0, 1, &[]);
        let (r, states) = run(&b, Dump::Tcp, 1);
        assert_eq!(r.unwrap(), Batch::More);
        assert!(states.is_empty());
    }

    #[test]
    fn reports_kernel_errors_with_errno() {
        let mut b = Vec::new();
        let mut err = (-2i32).to_ne_bytes().to_vec(); // -ENOENT: no udp_diag
        err.extend_from_slice(&[0; 16]);
        push_msg(&mut b, NLMSG_ERROR, 0, 9, &err);
        let (r, _) = run(&b, Dump::Udp6, 9);
        let e = r.unwrap_err();
        assert!(matches!(
            e,
            Error::NetlinkRefused {
                dump: Dump::Udp6,
                ..
            }
        ));
        assert_eq!(e.raw_os_error(), Some(2));
        assert!(e.is_refusal());
        // A dump that fails half way ends with an error in NLMSG_DONE.
        let mut b = Vec::new();
        push_msg(&mut b, NLMSG_DONE, NLM_F_MULTI, 9, &(-105i32).to_ne_bytes());
        assert_eq!(
            run(&b, Dump::Tcp, 9).0.unwrap_err().raw_os_error(),
            Some(105)
        );
        // An acknowledgement (error 0) is not an error.
        let mut b = Vec::new();
        push_msg(&mut b, NLMSG_ERROR, 0, 9, &[0; 20]);
        assert_eq!(run(&b, Dump::Tcp, 9).0.unwrap(), Batch::More);
    }

    #[test]
    fn truncated_batches_are_errors() {
        let mut b = Vec::new();
        push_msg(&mut b, TCPDIAG_GETSOCK, NLM_F_MULTI, 2, &captured_record(1));
        for cut in [1, 15, 16, 50, b.len() - 1] {
            let (r, _) = run(&b[..cut], Dump::Tcp, 2);
            assert!(
                matches!(r, Err(Error::NetlinkMalformed { .. })),
                "cut at {cut}: {r:?}"
            );
        }
        let mut short = Vec::new();
        push_msg(
            &mut short,
            TCPDIAG_GETSOCK,
            NLM_F_MULTI,
            2,
            &captured_record(1)[..71],
        );
        let e = run(&short, Dump::Tcp, 2).0.unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed netlink tcp dump reply: netlink message type 18 has a 71-byte payload, 72 needed"
        );
    }

    #[test]
    fn lookup_answers_are_records_or_sockets_gone() {
        let err = |errno: i32| {
            let mut p = (-errno).to_ne_bytes().to_vec();
            p.extend_from_slice(&[0; 16]);
            p
        };
        let mut b = Vec::new();
        push_msg(&mut b, SOCK_DIAG_BY_FAMILY, 0, 9, &captured_record(1));
        push_msg(&mut b, NLMSG_ERROR, 0, 9, &err(2)); // ENOENT: closed since
        push_msg(&mut b, NLMSG_ERROR, 0, 9, &err(116)); // ESTALE: another socket now
        push_msg(&mut b, SOCK_DIAG_BY_FAMILY, 0, 8, &captured_record(1)); // an older batch's
        let mut ports = Vec::new();
        let answers = read_lookup_batch(&b, 9, &mut |m: &InetDiagMsg<'_>| ports.push(m.sport()));
        assert_eq!(answers.unwrap(), 3);
        assert_eq!(ports, [40000]);
        let mut refused = Vec::new();
        push_msg(&mut refused, NLMSG_ERROR, 0, 9, &err(1));
        assert!(matches!(
            read_lookup_batch(&refused, 9, &mut |_: &InetDiagMsg<'_>| {}),
            Err(Error::NetlinkRefused { .. })
        ));
    }
}
