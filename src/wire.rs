//! The sock_diag wire format: length-checked views over received bytes and
//! encoders for the dump requests we send (inet: TCP and UDP; unix).
//!
//! Hand-written instead of using a netlink crate: a gather reads a few fixed
//! fields of each 72-byte record in place (family, state, and with the
//! aggregations that need them ports, source address, queues, inode) and one
//! attribute of listeners only, where a generic parser that decodes every
//! attribute costs more than the kernel's own walk. Everything here works on
//! borrowed byte slices and allocates nothing.
//!
//! All netlink integers are in host byte order (`from_ne_bytes`); only the
//! port and address fields of `inet_diag_sockid` are big-endian, read with
//! `from_be_bytes` in [`InetDiagMsg::sport`] and its neighbours.

use std::fmt;

/// One of the kernel dumps a gather performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dump {
    /// TCP, IPv4 and IPv6 in one walk.
    Tcp,
    /// TCP listeners only, with their drop counters (`--listen-queues`).
    Listeners,
    Udp4,
    Udp6,
    /// Unix-domain sockets of every type.
    Unix,
    /// `--tcp-info`: the selected TCP sockets with `INET_DIAG_INFO`.
    TcpInfo,
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dump::Tcp => "tcp",
            Dump::Listeners => "tcp listen",
            Dump::Udp4 => "udp ipv4",
            Dump::Udp6 => "udp ipv6",
            Dump::Unix => "unix",
            Dump::TcpInfo => "tcp info",
        })
    }
}

/// `NLMSG_HDRLEN`: size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// `NLMSG_ERROR`: payload is `struct nlmsgerr`.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: end of a multi-part dump; payload is an `int` error code.
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`: data lost; never sent for sock_diag, treated as an error.
pub const NLMSG_OVERRUN: u16 = 4;
/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x01;
/// `NLM_F_MULTI`: part of a multi-part reply.
pub const NLM_F_MULTI: u16 = 0x02;
/// `NLM_F_ROOT | NLM_F_MATCH`, i.e. `NLM_F_DUMP`.
pub const NLM_F_DUMP: u16 = 0x100 | 0x200;

/// `TCPDIAG_GETSOCK`: the old request type. With family `AF_UNSPEC` the
/// kernel walks the TCP hash once and returns IPv4 and IPv6 sockets together.
pub const TCPDIAG_GETSOCK: u16 = 18;
/// `SOCK_DIAG_BY_FAMILY`: one family and protocol per request.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// `AF_UNSPEC`, `AF_UNIX`, `AF_INET`, `AF_INET6`.
pub const AF_UNSPEC: u8 = 0;
pub const AF_UNIX: u8 = 1;
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u8 = 17;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u8 = 6;

/// `1 << state` for ESTABLISHED (1) through CLOSING (11): the eleven states
/// `/proc/net/tcp` shows. The kernel adds NEW_SYN_RECV itself when SYN_RECV is
/// set. Bit 13 (BOUND_INACTIVE) must stay clear: it makes new kernels walk the
/// bind table and report idle bound sockets as CLOSE.
pub const STATES_REAL: u32 = 0xFFE;

/// `1 << TCP_LISTEN`: a dump of listeners only, which walks the kernel's
/// listening hash and skips the established one (`inet_diag_dump_icsk()`
/// only walks the established hash when other states are asked for).
pub const STATES_LISTEN: u32 = 1 << 10;

/// `INET_DIAG_CGROUP_ID`: the id of the socket's cgroup v2 (a u64 in host
/// byte order, the inode number of the cgroup's directory), written for
/// every full socket whatever `idiag_ext` asks (`inet_diag_msg_attrs_fill()`,
/// net/ipv4/inet_diag.c, Linux 5.8+, `CONFIG_SOCK_CGROUP_DATA`); timewait
/// and request sockets have none.
pub const INET_DIAG_CGROUP_ID: u16 = 21;

/// `INET_DIAG_SKMEMINFO`: the attribute carrying `sk_meminfo` (u32 array).
pub const INET_DIAG_SKMEMINFO: u16 = 7;

/// `idiag_ext` bit that asks for `INET_DIAG_SKMEMINFO` (`1 << (7 - 1)`).
pub const EXT_SKMEMINFO: u8 = 1 << (INET_DIAG_SKMEMINFO - 1);

/// `INET_DIAG_INFO`: the attribute carrying `struct tcp_info` for a TCP
/// socket (`tcp_diag_get_info()`); full sockets only.
pub const INET_DIAG_INFO: u16 = 2;

/// `idiag_ext` bit that asks for `INET_DIAG_INFO` (`1 << (2 - 1)`).
pub const EXT_INFO: u8 = 1 << (INET_DIAG_INFO - 1);

/// `SK_MEMINFO_DROPS`: index of the drop counter in `sk_meminfo`
/// (include/uapi/linux/sock_diag.h), `sk_drops`, which `tcp_listendrop()`
/// increments for a listener.
const SK_MEMINFO_DROPS: usize = 8;

/// Every unix socket state: a unix dump counts sockets of every state.
pub const UNIX_STATES_ALL: u32 = !0;

/// Size of `struct inet_diag_sockid`.
pub const SOCKID_LEN: usize = 48;
/// Offsets in `struct inet_diag_sockid` (drawn at [`InetDiagMsg`], whose
/// `id` starts at byte 4): the local and remote port, the local and remote
/// address, then `idiag_if` and `idiag_cookie`.
pub const SOCKID_SPORT: usize = 0;
pub const SOCKID_DPORT: usize = 2;
pub const SOCKID_SRC: usize = 4;
pub const SOCKID_DST: usize = 20;
pub const SOCKID_IF: usize = 36;
/// Size of `struct inet_diag_msg`.
pub const INET_DIAG_MSG_LEN: usize = 4 + SOCKID_LEN + 20;
/// Size of `struct inet_diag_req` (the `TCPDIAG_GETSOCK` payload).
const INET_DIAG_REQ_LEN: usize = 4 + SOCKID_LEN + 8;
/// Size of `struct inet_diag_req_v2` (the `SOCK_DIAG_BY_FAMILY` payload).
const INET_DIAG_REQ_V2_LEN: usize = 8 + SOCKID_LEN;

/// Size of `struct unix_diag_req`.
const UNIX_DIAG_REQ_LEN: usize = 24;
/// Size of `struct unix_diag_msg`.
pub const UNIX_DIAG_MSG_LEN: usize = 16;

/// A complete `TCPDIAG_GETSOCK` dump request, header included.
pub const TCP_REQUEST_LEN: usize = NLMSG_HDRLEN + INET_DIAG_REQ_LEN;
/// A complete `SOCK_DIAG_BY_FAMILY` dump request, header included.
pub const FAMILY_REQUEST_LEN: usize = NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN;
/// A complete `SOCK_DIAG_BY_FAMILY` request for unix sockets.
pub const UNIX_REQUEST_LEN: usize = NLMSG_HDRLEN + UNIX_DIAG_REQ_LEN;

/// Why received bytes could not be read as netlink messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes remain than a netlink header needs.
    ShortHeader { offset: usize, available: usize },
    /// `nlmsg_len` is smaller than the header or runs past the received bytes.
    BadLength {
        offset: usize,
        len: u32,
        available: usize,
    },
    /// A message's payload is shorter than its type requires.
    ShortPayload { kind: u16, len: usize, need: usize },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WireError::ShortHeader { offset, available } => write!(
                f,
                "truncated netlink header at offset {offset}: {available} bytes left, {NLMSG_HDRLEN} needed"
            ),
            WireError::BadLength { offset, len, available } => write!(
                f,
                "bad nlmsg_len {len} at offset {offset}: {available} bytes left"
            ),
            WireError::ShortPayload { kind, len, need } => write!(
                f,
                "netlink message type {kind} has a {len}-byte payload, {need} needed"
            ),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One netlink message, its length already checked against the bytes.
///
/// ```text
/// struct nlmsghdr {            offset
///     __u32 nlmsg_len;         0   header + payload, without trailing padding
///     __u16 nlmsg_type;        4
///     __u16 nlmsg_flags;       6
///     __u32 nlmsg_seq;         8
///     __u32 nlmsg_pid;         12
/// };                           16  payload starts here
/// ```
#[derive(Debug, Clone, Copy)]
pub struct NlMsg<'a> {
    bytes: &'a [u8],
}

impl<'a> NlMsg<'a> {
    const LEN: usize = 0;
    const TYPE: usize = 4;
    const FLAGS: usize = 6;
    const SEQ: usize = 8;

    pub fn kind(&self) -> u16 {
        u16_at(self.bytes, Self::TYPE)
    }

    pub fn flags(&self) -> u16 {
        u16_at(self.bytes, Self::FLAGS)
    }

    pub fn seq(&self) -> u32 {
        u32_at(self.bytes, Self::SEQ)
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[NLMSG_HDRLEN..]
    }

    /// The errno carried by `NLMSG_ERROR` or `NLMSG_DONE`, as a positive
    /// number; 0 for an acknowledgement or a clean end of dump.
    ///
    /// ```text
    /// struct nlmsgerr { int error; struct nlmsghdr msg; };   NLMSG_ERROR
    /// int error;                                             NLMSG_DONE
    /// ```
    pub fn errno(&self) -> Result<i32, WireError> {
        let p = self.payload();
        if p.len() < 4 {
            return Err(WireError::ShortPayload {
                kind: self.kind(),
                len: p.len(),
                need: 4,
            });
        }
        Ok((u32_at(p, 0) as i32).saturating_neg())
    }
}

/// Iterates over the messages of one `recv`, checking every length.
pub struct Messages<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> Messages<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Messages { buf, offset: 0 }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<NlMsg<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.offset;
        let available = self.buf.len().checked_sub(offset)?;
        if available == 0 {
            return None;
        }
        // An error ends the iteration: nothing after a bad length can be trusted.
        self.offset = self.buf.len();
        if available < NLMSG_HDRLEN {
            return Some(Err(WireError::ShortHeader { offset, available }));
        }
        let len = u32_at(self.buf, offset + NlMsg::LEN);
        let ulen = len as usize;
        if ulen < NLMSG_HDRLEN || ulen > available {
            return Some(Err(WireError::BadLength {
                offset,
                len,
                available,
            }));
        }
        // NLMSG_ALIGN: the next header starts on a 4-byte boundary; the last
        // message of a batch may lack its padding.
        self.offset = offset + ((ulen + 3) & !3).min(available);
        Some(Ok(NlMsg {
            bytes: &self.buf[offset..offset + ulen],
        }))
    }
}

/// The fixed part of one socket record, length-checked.
///
/// ```text
/// struct inet_diag_msg {       offset
///     __u8  idiag_family;      0   AF_INET or AF_INET6
///     __u8  idiag_state;       1   TCP state number (TCP_ESTABLISHED = 1, ...)
///     __u8  idiag_timer;       2
///     __u8  idiag_retrans;     3
///     struct inet_diag_sockid id;  4   (48 bytes)
///         __be16 idiag_sport;  4   local port, network byte order
///         __be16 idiag_dport;  6   remote port
///         __be32 idiag_src[4]; 8   local address (IPv4: the first 4 bytes)
///         __be32 idiag_dst[4]; 24  remote address
///         __u32  idiag_if;     40
///         __u32  idiag_cookie[2]; 44
///     __u32 idiag_expires;     52
///     __u32 idiag_rqueue;      56
///     __u32 idiag_wqueue;      60
///     __u32 idiag_uid;         64
///     __u32 idiag_inode;       68
/// };                           72  attributes (rtattr) follow
/// ```
#[derive(Debug, Clone, Copy)]
pub struct InetDiagMsg<'a> {
    bytes: &'a [u8],
}

impl<'a> InetDiagMsg<'a> {
    const FAMILY: usize = 0;
    const STATE: usize = 1;
    const TIMER: usize = 2;
    const RETRANS: usize = 3;
    const ID: usize = 4;
    const SPORT: usize = Self::ID + SOCKID_SPORT;
    const DPORT: usize = Self::ID + SOCKID_DPORT;
    const SRC: usize = Self::ID + SOCKID_SRC;
    const DST: usize = Self::ID + SOCKID_DST;
    const IF: usize = Self::ID + SOCKID_IF;
    const RQUEUE: usize = 56;
    const WQUEUE: usize = 60;
    const INODE: usize = 68;

    /// Views a message payload; fails if it is shorter than the struct.
    pub fn new(msg: &NlMsg<'a>) -> Result<Self, WireError> {
        let bytes = msg.payload();
        if bytes.len() < INET_DIAG_MSG_LEN {
            return Err(WireError::ShortPayload {
                kind: msg.kind(),
                len: bytes.len(),
                need: INET_DIAG_MSG_LEN,
            });
        }
        Ok(InetDiagMsg { bytes })
    }

    pub fn family(&self) -> u8 {
        self.bytes[Self::FAMILY]
    }

    pub fn state(&self) -> u8 {
        self.bytes[Self::STATE]
    }

    /// Which timer runs (`idiag_timer`): filled for every full socket
    /// whatever `idiag_ext` asks (`inet_sk_diag_fill()`, net/ipv4/inet_diag.c:
    /// 1 retransmit or loss probe, 4 zero-window probe, 2 keepalive, 0
    /// none), 1 for a request socket (`tcp_req_diag_fill()`), 3 for
    /// TIME_WAIT (`inet_twsk_diag_fill()`), 0 for UDP.
    pub fn timer(&self) -> u8 {
        self.bytes[Self::TIMER]
    }

    /// `idiag_retrans`: with timer 1 `icsk_retransmits` (a request socket:
    /// `num_retrans`, its SYN-ACKs resent), with 2 and 4 `icsk_probes_out`.
    pub fn retrans(&self) -> u8 {
        self.bytes[Self::RETRANS]
    }

    /// The local port.
    pub fn sport(&self) -> u16 {
        u16::from_be_bytes([self.bytes[Self::SPORT], self.bytes[Self::SPORT + 1]])
    }

    /// The remote port (0 for listeners and unconnected UDP sockets).
    pub fn dport(&self) -> u16 {
        u16::from_be_bytes([self.bytes[Self::DPORT], self.bytes[Self::DPORT + 1]])
    }

    /// The local address: 16 bytes, of which IPv4 uses the first 4.
    pub fn src(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.bytes[Self::SRC..Self::SRC + 16]);
        a
    }

    /// The remote address, laid out as [`Self::src`].
    pub fn dst(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.bytes[Self::DST..Self::DST + 16]);
        a
    }

    /// For a listener, its accept queue's length (`sk_ack_backlog`).
    pub fn rqueue(&self) -> u32 {
        u32_at(self.bytes, Self::RQUEUE)
    }

    /// For a listener, its accept queue's limit (`sk_max_ack_backlog`).
    pub fn wqueue(&self) -> u32 {
        u32_at(self.bytes, Self::WQUEUE)
    }

    pub fn inode(&self) -> u32 {
        u32_at(self.bytes, Self::INODE)
    }

    /// `idiag_if` and `idiag_cookie` as sent (see `Record::sock_ref`).
    pub fn sock_ref(&self) -> [u8; 12] {
        let mut r = [0u8; 12];
        r.copy_from_slice(&self.bytes[Self::IF..Self::IF + 12]);
        r
    }

    /// The payload of the first attribute of type `kind` after the fixed
    /// part (`struct rtattr { u16 rta_len; u16 rta_type; }`, 4-byte
    /// aligned), if present and well formed.
    pub fn attr(&self, kind: u16) -> Option<&'a [u8]> {
        let mut rest = &self.bytes[INET_DIAG_MSG_LEN..];
        while rest.len() >= 4 {
            let len = u16_at(rest, 0) as usize;
            if len < 4 || len > rest.len() {
                return None;
            }
            if u16_at(rest, 2) == kind {
                return Some(&rest[4..len]);
            }
            rest = &rest[((len + 3) & !3).min(rest.len())..];
        }
        None
    }

    /// The socket's cgroup v2 id (`INET_DIAG_CGROUP_ID`), if the record
    /// carries one.
    pub fn cgroup_id(&self) -> Option<u64> {
        let a = self.attr(INET_DIAG_CGROUP_ID)?;
        Some(u64::from_ne_bytes(a.get(..8)?.try_into().ok()?))
    }

    /// The socket's drop counter, from `INET_DIAG_SKMEMINFO` (present only
    /// when the request asked for it): `sk_drops`, which a listener's
    /// `tcp_listendrop()` and a UDP socket's full receive buffer
    /// (`__udp_queue_rcv_skb()`) increment.
    pub fn drops(&self) -> Option<u32> {
        let m = self.attr(INET_DIAG_SKMEMINFO)?;
        let at = SK_MEMINFO_DROPS * 4;
        (m.len() >= at + 4).then(|| u32_at(m, at))
    }
}

/// The fixed part of one unix socket record, length-checked.
///
/// ```text
/// struct unix_diag_msg {       offset
///     __u8  udiag_family;      0   AF_UNIX
///     __u8  udiag_type;        1   SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5
///     __u8  udiag_state;       2   TCP_ESTABLISHED, TCP_LISTEN or TCP_CLOSE
///     __u8  pad;               3
///     __u32 udiag_ino;         4
///     __u32 udiag_cookie[2];   8
/// };                           16  attributes (rtattr) follow
/// ```
#[derive(Debug, Clone, Copy)]
pub struct UnixDiagMsg<'a> {
    bytes: &'a [u8],
}

impl<'a> UnixDiagMsg<'a> {
    const TYPE: usize = 1;
    const STATE: usize = 2;

    /// Views a message payload; fails if it is shorter than the struct.
    pub fn new(msg: &NlMsg<'a>) -> Result<Self, WireError> {
        let bytes = msg.payload();
        if bytes.len() < UNIX_DIAG_MSG_LEN {
            return Err(WireError::ShortPayload {
                kind: msg.kind(),
                len: bytes.len(),
                need: UNIX_DIAG_MSG_LEN,
            });
        }
        Ok(UnixDiagMsg { bytes })
    }

    /// The socket type (`SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`).
    pub fn sock_type(&self) -> u8 {
        self.bytes[Self::TYPE]
    }

    pub fn state(&self) -> u8 {
        self.bytes[Self::STATE]
    }
}

fn put_header(buf: &mut [u8], len: usize, kind: u16, seq: u32) {
    put_header_flags(buf, len, kind, NLM_F_REQUEST | NLM_F_DUMP, seq);
}

fn put_header_flags(buf: &mut [u8], len: usize, kind: u16, flags: u16, seq: u32) {
    buf[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    buf[4..6].copy_from_slice(&kind.to_ne_bytes());
    buf[6..8].copy_from_slice(&flags.to_ne_bytes());
    buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port id.
    buf[12..16].fill(0);
}

/// A `TCPDIAG_GETSOCK` dump of TCP sockets of every family in `states`.
///
/// ```text
/// struct inet_diag_req {       offset (after the 16-byte header)
///     __u8  idiag_family;      0   AF_UNSPEC: IPv4 and IPv6 in one walk
///     __u8  idiag_src_len;     1
///     __u8  idiag_dst_len;     2
///     __u8  idiag_ext;         3   0, or EXT_SKMEMINFO for listeners
///     struct inet_diag_sockid id;  4   zero: no filter
///     __u32 idiag_states;      52
///     __u32 idiag_dbs;         56
/// };                           60
/// ```
pub fn tcp_request(seq: u32, states: u32, ext: u8) -> [u8; TCP_REQUEST_LEN] {
    let mut buf = [0u8; TCP_REQUEST_LEN];
    put_header(&mut buf, TCP_REQUEST_LEN, TCPDIAG_GETSOCK, seq);
    let p = &mut buf[NLMSG_HDRLEN..];
    p[0] = AF_UNSPEC;
    p[3] = ext;
    p[4 + SOCKID_LEN..8 + SOCKID_LEN].copy_from_slice(&states.to_ne_bytes());
    buf
}

/// A `SOCK_DIAG_BY_FAMILY` dump of one family and protocol in `states`.
///
/// ```text
/// struct inet_diag_req_v2 {   offset (after the 16-byte header)
///     __u8  sdiag_family;      0
///     __u8  sdiag_protocol;    1
///     __u8  idiag_ext;         2   0, or EXT_SKMEMINFO (--health's UDP drops)
///     __u8  pad;               3
///     __u32 idiag_states;      4
///     struct inet_diag_sockid id;  8   zero: no filter
/// };                           56
/// ```
pub fn family_request(
    seq: u32,
    family: u8,
    protocol: u8,
    states: u32,
    ext: u8,
) -> [u8; FAMILY_REQUEST_LEN] {
    let mut buf = [0u8; FAMILY_REQUEST_LEN];
    put_header(&mut buf, FAMILY_REQUEST_LEN, SOCK_DIAG_BY_FAMILY, seq);
    let p = &mut buf[NLMSG_HDRLEN..];
    p[0] = family;
    p[1] = protocol;
    p[2] = ext;
    p[4..8].copy_from_slice(&states.to_ne_bytes());
    buf
}

/// A `SOCK_DIAG_BY_FAMILY` request for one TCP socket, appended to `out`:
/// no `NLM_F_DUMP`, so the kernel looks the socket up in its hash by the
/// `id` (ports, addresses, interface and cookie of its record) instead of
/// walking the table (`inet_diag_cmd_exact()` → `inet_diag_find_one_icsk()`,
/// net/ipv4/inet_diag.c), and answers with one record, or with an error
/// (`ENOENT` once it is gone, `ESTALE` when the cookie names an older
/// socket of the same addresses: `sock_diag_check_cookie()`).
pub fn lookup_request(seq: u32, family: u8, ext: u8, id: &[u8; SOCKID_LEN], out: &mut Vec<u8>) {
    let mut buf = [0u8; FAMILY_REQUEST_LEN];
    put_header_flags(
        &mut buf,
        FAMILY_REQUEST_LEN,
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST,
        seq,
    );
    let p = &mut buf[NLMSG_HDRLEN..];
    p[0] = family;
    p[1] = IPPROTO_TCP;
    p[2] = ext;
    p[8..].copy_from_slice(id);
    out.extend_from_slice(&buf);
}

/// A `SOCK_DIAG_BY_FAMILY` dump of unix sockets in `states`.
///
/// ```text
/// struct unix_diag_req {       offset (after the 16-byte header)
///     __u8  sdiag_family;      0   AF_UNIX
///     __u8  sdiag_protocol;    1   0
///     __u16 pad;               2
///     __u32 udiag_states;      4
///     __u32 udiag_ino;         8   0: no filter
///     __u32 udiag_show;        12  0: no attributes beyond the fixed part
///     __u32 udiag_cookie[2];   16
/// };                           24
/// ```
pub fn unix_request(seq: u32, states: u32) -> [u8; UNIX_REQUEST_LEN] {
    let mut buf = [0u8; UNIX_REQUEST_LEN];
    put_header(&mut buf, UNIX_REQUEST_LEN, SOCK_DIAG_BY_FAMILY, seq);
    let p = &mut buf[NLMSG_HDRLEN..];
    p[0] = AF_UNIX;
    p[4..8].copy_from_slice(&states.to_ne_bytes());
    buf
}

/// Appends an attribute to a request in `out`: its `struct rtattr { u16
/// rta_len; u16 rta_type; }`, `payload`, and padding to 4 bytes (the caller
/// sets the message's length when it is whole).
pub fn push_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Appends one netlink message to `out`, padded to 4 bytes.
    pub(crate) fn push_msg(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, payload: &[u8]) {
        let len = NLMSG_HDRLEN + payload.len();
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&4242u32.to_ne_bytes());
        out.extend_from_slice(payload);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    /// A record as the kernel sends it for an IPv4 ESTABLISHED TCP socket
    /// 127.0.0.1:40000 -> 127.0.0.1:5000, followed by the two attributes
    /// every unprivileged dump carries (captured on Linux 6.18, host order
    /// little-endian; header built by `push_msg`).
    pub(crate) fn captured_record(state: u8) -> Vec<u8> {
        let mut p = vec![
            2, state, 0, 0, // family AF_INET, state, timer, retrans
            0x9c, 0x40, 0x13, 0x88, // sport 40000, dport 5000 (big-endian)
            127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // src 127.0.0.1
            127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // dst 127.0.0.1
            0, 0, 0, 0, // idiag_if
            0x2a, 0x10, 0, 0, 0, 0, 0, 0, // cookie
            0, 0, 0, 0, // expires
            0, 0, 0, 0, // rqueue
            0, 0, 0, 0, // wqueue
            0xe8, 0x03, 0, 0, // uid 1000
            0x39, 0x30, 0, 0, // inode 12345
        ];
        // rtattr INET_DIAG_SHUTDOWN (8): len 5, one byte, padded.
        p.extend_from_slice(&[5, 0, 8, 0, 0, 0, 0, 0]);
        // rtattr INET_DIAG_SOCKOPT (22): len 6, two bytes, padded.
        p.extend_from_slice(&[6, 0, 22, 0, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn parses_one_record() {
        let mut buf = Vec::new();
        push_msg(
            &mut buf,
            SOCK_DIAG_BY_FAMILY,
            NLM_F_MULTI,
            7,
            &captured_record(1),
        );
        let mut it = Messages::new(&buf);
        let msg = it.next().unwrap().unwrap();
        assert_eq!(msg.kind(), SOCK_DIAG_BY_FAMILY);
        assert_eq!(msg.seq(), 7);
        assert_eq!(msg.flags(), NLM_F_MULTI);
        let rec = InetDiagMsg::new(&msg).unwrap();
        assert_eq!(rec.family(), AF_INET);
        assert_eq!(rec.state(), 1);
        assert_eq!((rec.sport(), rec.dport()), (40000, 5000));
        assert_eq!(rec.inode(), 12345);
        assert!(it.next().is_none());
    }

    #[test]
    fn iterates_a_multipart_batch() {
        let mut buf = Vec::new();
        for state in [1u8, 10, 6, 3] {
            push_msg(
                &mut buf,
                TCPDIAG_GETSOCK,
                NLM_F_MULTI,
                9,
                &captured_record(state),
            );
        }
        push_msg(&mut buf, NLMSG_DONE, NLM_F_MULTI, 9, &0i32.to_ne_bytes());
        let msgs: Vec<_> = Messages::new(&buf).map(Result::unwrap).collect();
        assert_eq!(msgs.len(), 5);
        let states: Vec<u8> = msgs[..4]
            .iter()
            .map(|m| InetDiagMsg::new(m).unwrap().state())
            .collect();
        assert_eq!(states, [1, 10, 6, 3]);
        assert_eq!(msgs[4].kind(), NLMSG_DONE);
        assert_eq!(msgs[4].errno().unwrap(), 0);
    }

    #[test]
    fn reads_error_and_done_codes() {
        let mut buf = Vec::new();
        // struct nlmsgerr: error -2 (ENOENT), then the 16-byte header we sent.
        let mut err = (-2i32).to_ne_bytes().to_vec();
        err.extend_from_slice(&family_request(3, AF_INET, IPPROTO_UDP, STATES_REAL, 0)[..16]);
        push_msg(&mut buf, NLMSG_ERROR, 0, 3, &err);
        // A dump that failed half way ends with DONE carrying -EPERM.
        push_msg(&mut buf, NLMSG_DONE, NLM_F_MULTI, 3, &(-1i32).to_ne_bytes());
        let msgs: Vec<_> = Messages::new(&buf).map(Result::unwrap).collect();
        assert_eq!(msgs[0].kind(), NLMSG_ERROR);
        assert_eq!(msgs[0].errno().unwrap(), 2);
        assert_eq!(msgs[1].errno().unwrap(), 1);
    }

    #[test]
    fn rejects_truncated_input() {
        let mut buf = Vec::new();
        push_msg(
            &mut buf,
            TCPDIAG_GETSOCK,
            NLM_F_MULTI,
            1,
            &captured_record(1),
        );
        // Cut inside the header.
        let err = Messages::new(&buf[..10]).next().unwrap().unwrap_err();
        assert_eq!(
            err,
            WireError::ShortHeader {
                offset: 0,
                available: 10
            }
        );
        // Cut inside the payload: nlmsg_len promises more than arrived.
        let err = Messages::new(&buf[..50]).next().unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                WireError::BadLength {
                    len: 104,
                    available: 50,
                    ..
                }
            ),
            "{err:?}"
        );
        // A header claiming less than itself.
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&8u32.to_ne_bytes());
        let err = Messages::new(&bad).next().unwrap().unwrap_err();
        assert!(matches!(err, WireError::BadLength { len: 8, .. }));
        // A record shorter than inet_diag_msg.
        let mut short = Vec::new();
        push_msg(
            &mut short,
            TCPDIAG_GETSOCK,
            NLM_F_MULTI,
            1,
            &captured_record(1)[..40],
        );
        let msg = Messages::new(&short).next().unwrap().unwrap();
        assert_eq!(
            InetDiagMsg::new(&msg).unwrap_err(),
            WireError::ShortPayload {
                kind: TCPDIAG_GETSOCK,
                len: 40,
                need: 72
            }
        );
        // DONE without its error code.
        let mut done = Vec::new();
        push_msg(&mut done, NLMSG_DONE, 0, 1, &[]);
        let msg = Messages::new(&done).next().unwrap().unwrap();
        assert!(msg.errno().is_err());
    }

    #[test]
    fn encodes_requests() {
        let req = tcp_request(0x01020304, STATES_REAL, 0);
        assert_eq!(req.len(), 76);
        assert_eq!(u32_at(&req, 0), 76); // nlmsg_len
        assert_eq!(u16_at(&req, 4), TCPDIAG_GETSOCK);
        assert_eq!(u16_at(&req, 6), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(u32_at(&req, 8), 0x01020304);
        assert_eq!(req[16], AF_UNSPEC);
        assert_eq!(req[19], 0); // idiag_ext
        assert_eq!(u32_at(&req, 16 + 52), STATES_REAL);
        assert_eq!(u32_at(&req, 16 + 56), 0); // idiag_dbs

        let req = family_request(5, AF_INET6, IPPROTO_UDP, STATES_REAL, EXT_SKMEMINFO);
        assert_eq!(req.len(), 72);
        assert_eq!(u32_at(&req, 0), 72);
        assert_eq!(u16_at(&req, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(req[16], AF_INET6);
        assert_eq!(req[17], IPPROTO_UDP);
        assert_eq!(req[18], 1 << 6); // idiag_ext: INET_DIAG_SKMEMINFO
        assert_eq!(u32_at(&req, 20), STATES_REAL);
        assert!(req[24..].iter().all(|&b| b == 0)); // no socket id filter

        let req = unix_request(6, UNIX_STATES_ALL);
        assert_eq!(req.len(), 40);
        assert_eq!(u32_at(&req, 0), 40);
        assert_eq!(u16_at(&req, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16_at(&req, 6), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(req[16], AF_UNIX);
        assert_eq!(req[17], 0); // sdiag_protocol
        assert_eq!(u32_at(&req, 20), u32::MAX); // udiag_states
        assert!(req[24..].iter().all(|&b| b == 0)); // no inode filter, show nothing
    }

    /// A unix record as the kernel sent it for one end of a stream
    /// socketpair (Linux 6.18, little-endian; header built by `push_msg`).
    pub(crate) fn captured_unix_record(sock_type: u8) -> Vec<u8> {
        vec![
            1, sock_type, 1, 0, // family AF_UNIX, type, state ESTABLISHED, pad
            0x80, 0xe2, 0x14, 0x00, // udiag_ino 1368704
            0xf7, 0xe8, 0x09, 0x00, 0, 0, 0, 0, // udiag_cookie
            5, 0, 6, 0, 0, 0, 0, 0, // rtattr UNIX_DIAG_SHUTDOWN (len 5) = 0, padded
        ]
    }

    #[test]
    fn parses_one_unix_record() {
        let mut b = Vec::new();
        push_msg(
            &mut b,
            SOCK_DIAG_BY_FAMILY,
            NLM_F_MULTI,
            1,
            &captured_unix_record(5),
        );
        let msg = Messages::new(&b).next().unwrap().unwrap();
        let rec = UnixDiagMsg::new(&msg).unwrap();
        assert_eq!(rec.sock_type(), 5);
        assert_eq!(rec.state(), 1);
        let mut short = Vec::new();
        push_msg(
            &mut short,
            SOCK_DIAG_BY_FAMILY,
            0,
            1,
            &captured_unix_record(1)[..15],
        );
        let msg = Messages::new(&short).next().unwrap().unwrap();
        assert_eq!(
            UnixDiagMsg::new(&msg).unwrap_err(),
            WireError::ShortPayload {
                kind: SOCK_DIAG_BY_FAMILY,
                len: 15,
                need: 16
            }
        );
    }
}
