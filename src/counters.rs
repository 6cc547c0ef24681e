//! The kernel's own TCP/UDP counters of one network namespace: the SNMP MIB
//! counters of `/proc/net/snmp`, `/proc/net/netstat` and `/proc/net/snmp6`
//! (`--counters`, measurement `netstat_counters`), named as `nstat` and
//! Telegraf's `inputs.nstat` name them: the line's prefix without its colon
//! and the column's name (`TcpAttemptFails`, `TcpExtListenOverflows`), or
//! snmp6's own name (`Udp6RcvbufErrors`).
//!
//! The three files are per namespace: `snmp_seq_show()`,
//! `netstat_seq_show()` (net/ipv4/proc.c) and `snmp6_seq_show()`
//! (net/ipv6/proc.c) print `seq_file_net(seq)->mib`, the MIB of the
//! namespace the file was opened in. They are opened inside the namespace
//! once and kept (`kept`). TCP has one MIB for IPv4 and IPv6
//! (`tcp_v6_*` count into `net->mib.tcp_statistics` too), so `Tcp*` and
//! `TcpExt*` cover both families; UDP has `Udp*` and `Udp6*`.
//!
//! Left out as `nstat` leaves them out (its `useless_numbers`, misc/nstat.c
//! in iproute2): the seven columns that are settings or gauges, not
//! counters (`TcpMaxConn` prints -1). A counter this kernel does not print
//! is missing from the row, not zero.

use std::sync::Mutex;

use crate::error::{Error, Malformed};
use crate::kept::KeptFile;

/// A counter of the default set: its `nstat` name, its native Prometheus
/// family (and the `family` label it carries there, for UDP), and what it
/// counts (its native HELP).
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub name: &'static str,
    pub native: &'static str,
    pub family: Option<&'static str>,
    pub help: &'static str,
}

const fn known(name: &'static str, native: &'static str, help: &'static str) -> Known {
    Known {
        name,
        native,
        family: None,
        help,
    }
}

const fn udp(name: &'static str, native: &'static str, v6: bool, help: &'static str) -> Known {
    Known {
        name,
        native,
        family: Some(if v6 { "ipv6" } else { "ipv4" }),
        help,
    }
}

/// The default set (`--counters`), sorted by name: whether connections fail
/// to open, are reset, time out or retransmit, whether listeners overflow,
/// and whether UDP datagrams are dropped. README.md says why each.
pub const DEFAULT: [Known; 22] = [
    known(
        "TcpActiveOpens",
        "netstat_tcp_active_opens_total",
        "TCP connections opened by connect() (CLOSED to SYN_SENT).",
    ),
    known(
        "TcpAttemptFails",
        "netstat_tcp_attempt_fails_total",
        "Failed TCP connection attempts: SYN_SENT or SYN_RECV to CLOSED (refused, reset or timed out), or SYN_RECV back to LISTEN.",
    ),
    known(
        "TcpEstabResets",
        "netstat_tcp_established_resets_total",
        "TCP connections reset in state ESTABLISHED or CLOSE_WAIT.",
    ),
    known(
        "TcpExtListenDrops",
        "netstat_tcp_listen_drops_total",
        "Connection requests TCP listeners dropped for any reason (accept queue overflows included).",
    ),
    known(
        "TcpExtListenOverflows",
        "netstat_tcp_listen_overflows_total",
        "Connections TCP listeners dropped because the accept queue was full.",
    ),
    known(
        "TcpExtTCPAbortOnTimeout",
        "netstat_tcp_timeout_aborts_total",
        "TCP connections aborted because retransmissions or probes went unanswered too long.",
    ),
    known(
        "TcpExtTCPSynRetrans",
        "netstat_tcp_syn_retransmits_total",
        "SYN and SYN-ACK retransmissions.",
    ),
    known(
        "TcpExtTCPTimeouts",
        "netstat_tcp_timeouts_total",
        "TCP retransmission timer expiries (RTO).",
    ),
    known(
        "TcpInErrs",
        "netstat_tcp_receive_errors_total",
        "TCP segments received in error (bad checksums among others).",
    ),
    known(
        "TcpInSegs",
        "netstat_tcp_received_segments_total",
        "TCP segments received, those in error included.",
    ),
    known(
        "TcpOutRsts",
        "netstat_tcp_sent_resets_total",
        "TCP segments sent with the RST flag.",
    ),
    known(
        "TcpOutSegs",
        "netstat_tcp_sent_segments_total",
        "TCP segments sent, retransmissions left out.",
    ),
    known(
        "TcpPassiveOpens",
        "netstat_tcp_passive_opens_total",
        "TCP connections opened by a listener (LISTEN to SYN_RECV).",
    ),
    known(
        "TcpRetransSegs",
        "netstat_tcp_retransmitted_segments_total",
        "TCP segments retransmitted.",
    ),
    udp(
        "Udp6InErrors",
        "netstat_udp_receive_errors_total",
        true,
        "UDP datagrams received and not delivered for a reason other than no port (receive buffer errors included).",
    ),
    udp(
        "Udp6NoPorts",
        "netstat_udp_no_port_datagrams_total",
        true,
        "UDP datagrams received for a port without a socket.",
    ),
    udp(
        "Udp6RcvbufErrors",
        "netstat_udp_receive_buffer_errors_total",
        true,
        "UDP datagrams dropped because the socket's receive buffer was full.",
    ),
    udp(
        "Udp6SndbufErrors",
        "netstat_udp_send_buffer_errors_total",
        true,
        "UDP sends that failed for lack of send buffer.",
    ),
    udp(
        "UdpInErrors",
        "netstat_udp_receive_errors_total",
        false,
        "UDP datagrams received and not delivered for a reason other than no port (receive buffer errors included).",
    ),
    udp(
        "UdpNoPorts",
        "netstat_udp_no_port_datagrams_total",
        false,
        "UDP datagrams received for a port without a socket.",
    ),
    udp(
        "UdpRcvbufErrors",
        "netstat_udp_receive_buffer_errors_total",
        false,
        "UDP datagrams dropped because the socket's receive buffer was full.",
    ),
    udp(
        "UdpSndbufErrors",
        "netstat_udp_send_buffer_errors_total",
        false,
        "UDP sends that failed for lack of send buffer.",
    ),
];

/// Columns that are settings or gauges, not counters: left out, as `nstat`
/// leaves them out.
const NOT_COUNTERS: [&str; 7] = [
    "IpDefaultTTL",
    "IpForwarding",
    "TcpCurrEstab",
    "TcpMaxConn",
    "TcpRtoAlgorithm",
    "TcpRtoMax",
    "TcpRtoMin",
];

/// The most distinct counter names outside the default set this process
/// keeps (Linux 6.18 prints about 390 in all); a name beyond them is left
/// out and said ([`Counters::capped`]).
pub const MAX_NAMES: usize = 2048;

/// The longest counter name taken (the kernel's longest is about 35).
const NAME_MAX: usize = 64;

/// The longest counter file read (Linux 6.18: snmp 1.2 KiB, netstat 4 KiB,
/// snmp6 3 KiB).
const FILE_MAX: usize = 256 * 1024;

/// Which counters are printed (`--counters`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The default set.
    pub default: bool,
    /// Every counter.
    pub all: bool,
    /// Glob patterns (`*`, `?`), matched without regard to case, as `nstat`
    /// matches its arguments.
    pub patterns: Vec<String>,
}

impl Selection {
    /// Parses `--counters` values: comma-separated `default`, `all` or
    /// patterns of letters, digits, `*` and `?`.
    pub fn parse(list: &str) -> Result<Selection, String> {
        let mut s = Selection::default();
        for item in list.split(',').map(str::trim) {
            match item {
                "default" => s.default = true,
                "all" => s.all = true,
                p if !p.is_empty()
                    && p.len() <= NAME_MAX
                    && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?') =>
                {
                    s.patterns.push(p.to_string())
                }
                _ => {
                    return Err(format!(
                        "invalid counter selection {item:?}: give default, all, or a name or pattern of letters, digits, * and ?, such as TcpExt*"
                    ))
                }
            }
        }
        Ok(s)
    }

    /// Whether a name starting with `prefix` (a line's `Tcp`, `TcpExt`)
    /// may be printed: the default set alone reads three of the dozen
    /// lines.
    fn may_want(&self, prefix: &str) -> bool {
        self.all
            || !self.patterns.is_empty()
            || DEFAULT.iter().any(|k| {
                k.name.len() > prefix.len()
                    && k.name.starts_with(prefix)
                    && k.name.as_bytes()[prefix.len()].is_ascii_uppercase()
            })
    }

    /// Whether `name` is printed.
    pub fn wants(&self, name: &str) -> bool {
        self.all
            || (self.default && default_known(name).is_some())
            || self
                .patterns
                .iter()
                .any(|p| glob(p.as_bytes(), name.as_bytes()))
    }
}

/// `pattern` (`*`, `?`) matches `name`, ignoring case.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it stood for.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p].eq_ignore_ascii_case(&name[n])) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The default set's entry for `name`: a scan whose comparisons mostly stop
/// at the length (cheaper here than a binary search's 5 full comparisons,
/// for the ~390 names of every read).
fn default_known(name: &str) -> Option<&'static Known> {
    DEFAULT
        .iter()
        .find(|k| k.name.len() == name.len() && k.name == name)
}

/// Names outside the default set, each with its native Prometheus name
/// (`netstat_counters_<name in snake case>_total`), sorted by name: made once per process
/// and kept, so rows and encoders take them as `&'static str`. At most
/// [`MAX_NAMES`].
static NAMES: Mutex<Vec<(&'static str, &'static str)>> = Mutex::new(Vec::new());

/// `name` as a `&'static str` (the default set's own, or kept in
/// [`NAMES`]); `None` once [`MAX_NAMES`] are kept.
fn intern(name: &str) -> Option<&'static str> {
    if let Some(k) = default_known(name) {
        return Some(k.name);
    }
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    match names.binary_search_by(|e| e.0.cmp(name)) {
        Ok(i) => Some(names[i].0),
        Err(_) if names.len() >= MAX_NAMES => None,
        Err(i) => {
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            let native = leak(format!("netstat_counters_{}_total", snake_case(name)));
            let name = leak(name.to_string());
            names.insert(i, (name, native));
            Some(name)
        }
    }
}

/// `TcpExtTCPSynRetrans` as `tcp_ext_tcp_syn_retrans`: a `_` before a
/// capital that follows a small letter or a digit, or that starts a word
/// after a run of two or more capitals (`TCPSyn`, not `HMac`, whose `h`
/// promtool would take for hours), then all in small letters.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    // Capitals just before this character.
    let mut capitals = 0;
    let mut prev: Option<u8> = None;
    for (i, &c) in name.as_bytes().iter().enumerate() {
        let next = name.as_bytes().get(i + 1);
        if c.is_ascii_uppercase() {
            let after_word = prev.is_some_and(|p| !p.is_ascii_uppercase());
            let ends_run = capitals >= 2 && next.is_some_and(|n| n.is_ascii_lowercase());
            if after_word || ends_run {
                out.push('_');
            }
            capitals += 1;
        } else {
            capitals = 0;
        }
        out.push(c.to_ascii_lowercase() as char);
        prev = Some(c);
    }
    out
}

/// The native Prometheus family of a counter: its name, HELP, and the label
/// it carries (`family` for UDP). `None` for a name no gather produced.
pub fn native(name: &str) -> Option<(&'static str, &'static str, Option<&'static str>)> {
    if let Some(k) = default_known(name) {
        return Some((k.native, k.help, k.family));
    }
    let names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    let i = names.binary_search_by(|e| e.0.cmp(name)).ok()?;
    Some((names[i].1, OTHER_HELP, None))
}

/// The HELP of a counter outside the default set, in native names.
const OTHER_HELP: &str = "A kernel SNMP MIB counter of this network namespace, named as nstat names it (/proc/net/snmp, netstat or snmp6).";

/// What a counter counts, for HELP: the default set's sentence, or where
/// the name comes from.
pub fn help(name: &str) -> String {
    match default_known(name) {
        Some(k) => {
            let family = match k.family {
                Some("ipv6") => ", IPv6",
                Some(_) => ", IPv4",
                None => "",
            };
            let what = k.help.trim_end_matches('.');
            format!("{what}{family}, in this network namespace (nstat's {name}).")
        }
        None => format!(
            "The kernel's SNMP MIB counter {name} of this network namespace, as nstat names it."
        ),
    }
}

/// One namespace's counters as the last read found them, sorted by name.
#[derive(Debug, Default)]
pub struct Counters {
    values: Vec<(&'static str, u64)>,
    /// A name was left out: [`MAX_NAMES`] were already kept.
    capped: bool,
}

impl Counters {
    pub fn values(&self) -> &[(&'static str, u64)] {
        &self.values
    }

    pub fn capped(&self) -> bool {
        self.capped
    }

    /// Counters from the text of a `snmp` file, for tests.
    #[cfg(test)]
    pub(crate) fn parsed(selection: &Selection, snmp: &str) -> Counters {
        let mut c = Counters::default();
        c.parse_tables(selection, &mut Layout::default(), snmp)
            .unwrap();
        c.finish();
        c
    }

    /// The `snmp` and `netstat` layout: pairs of lines, `Prefix: Name ...`
    /// then `Prefix: value ...`. A pair whose line of names is the one
    /// `layout` holds for its place takes its values by column; any other
    /// is read name by name and remembered there.
    fn parse_tables(
        &mut self,
        selection: &Selection,
        layout: &mut Layout,
        text: &str,
    ) -> Result<(), Malformed> {
        let mut lines = text.lines();
        let mut at = 0;
        while let Some(names) = lines.next() {
            let values = lines.next().ok_or(Malformed::NoValues)?;
            if layout.pairs.len() == at {
                layout.pairs.push(Pair::default());
            }
            let pair = &mut layout.pairs[at];
            if !pair.known || pair.names != names {
                pair.learn(selection, names, values)?;
            }
            self.take_columns(pair, values)?;
            at += 1;
        }
        layout.pairs.truncate(at);
        Ok(())
    }

    /// The values of `pair`'s taken columns from its line of values.
    fn take_columns(&mut self, pair: &Pair, values: &str) -> Result<(), Malformed> {
        if !pair.wanted {
            return Ok(());
        }
        let prefix = pair.prefix.as_str();
        let mut v = values.split_ascii_whitespace();
        if v.next() != Some(prefix) {
            return Err(Malformed::Unpaired {
                names: pair.names.clone(),
                values: values.into(),
            });
        }
        let mut taken = pair.taken.iter().peekable();
        let mut count = 0;
        for (column, value) in v.enumerate() {
            count += 1;
            let Some(&&(_, name)) = taken.peek().filter(|t| t.0 == column) else {
                continue;
            };
            taken.next();
            let Ok(value) = value.parse::<u64>() else {
                return Err(Malformed::NotANumber {
                    name: name.map_or_else(|| format!("column {column}"), str::to_string),
                    value: value.into(),
                });
            };
            match name {
                Some(name) => self.values.push((name, value)),
                None => self.capped = true,
            }
        }
        if count != pair.columns {
            return Err(Malformed::Unequal(prefix.trim_end_matches(':').into()));
        }
        Ok(())
    }

    /// The `snmp6` layout: `Name value` per line, grouped by protocol (the
    /// name up to its `6`: `Ip6`, `Udp6`); the lines of a protocol nothing
    /// is taken from are not read further than their name.
    fn parse_pairs(&mut self, selection: &Selection, text: &str) -> Result<(), Malformed> {
        let mut protocol: (&str, bool) = ("", false);
        for line in text.lines() {
            let name = line
                .split(|c: char| c.is_ascii_whitespace())
                .next()
                .unwrap_or(line);
            if protocol.0.is_empty() || !name.starts_with(protocol.0) {
                let p = name.find('6').map_or(name, |i| &name[..=i]);
                protocol = (p, p.ends_with('6') && selection.may_want(p));
            }
            if !protocol.1 && !name.is_empty() {
                continue;
            }
            let mut it = line.split_ascii_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some(name), Some(value), None) => {
                    check_name(name)?;
                    self.take(selection, name, value)?;
                }
                (None, ..) => {}
                _ => return Err(Malformed::Pair(line.into())),
            }
        }
        Ok(())
    }

    /// Takes one counter if `selection` wants it and it is a counter.
    fn take(&mut self, selection: &Selection, name: &str, value: &str) -> Result<(), Malformed> {
        if !taken(selection, name) {
            return Ok(());
        }
        let value = value.parse::<u64>().map_err(|_| Malformed::NotANumber {
            name: name.into(),
            value: value.into(),
        })?;
        match intern(name) {
            Some(name) => self.values.push((name, value)),
            None => self.capped = true,
        }
        Ok(())
    }

    /// Sorted by name; a name printed twice is kept once (the first).
    fn finish(&mut self) {
        self.values.sort_by_key(|v| v.0);
        self.values.dedup_by_key(|v| v.0);
    }
}

/// Whether counter `name` is printed: `selection` wants it and it is a
/// counter.
fn taken(selection: &Selection, name: &str) -> bool {
    selection.wants(name) && !NOT_COUNTERS.contains(&name)
}

/// What the last read of a `snmp` or `netstat` file found, pair of lines by
/// pair, so that names are looked at only when their line changes: the
/// kernel prints the same names in the same order at every read
/// (`snmp_seq_show()` and `netstat_seq_show()`, net/ipv4/proc.c, print
/// fixed tables of names; `IcmpMsg` lists only the types seen so far, so
/// its line changes now and then, and is read again when it does).
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pairs: Vec<Pair>,
}

/// One pair of lines as last read.
#[derive(Debug, Default)]
struct Pair {
    /// Whether `names` was read whole (a pair that failed is read again).
    known: bool,
    /// The line of names, as printed.
    names: String,
    /// Its first word, `Tcp:`, which starts the line of values too.
    prefix: String,
    /// Whether anything may be taken from it: else its values are not read.
    wanted: bool,
    /// How many names follow the prefix.
    columns: usize,
    /// The columns taken (0: the first after the prefix), in order, and
    /// their names (`None`: left out, [`MAX_NAMES`] were kept).
    taken: Vec<(usize, Option<&'static str>)>,
}

impl Pair {
    /// Reads `names` name by name: which columns `selection` takes.
    fn learn(&mut self, selection: &Selection, names: &str, values: &str) -> Result<(), Malformed> {
        self.known = false;
        self.taken.clear();
        self.columns = 0;
        let mut n = names.split_ascii_whitespace();
        let first = n.next().filter(|p| p.ends_with(':'));
        let same = first.is_some() && values.split_ascii_whitespace().next() == first;
        let Some(first) = first.filter(|_| same) else {
            return Err(Malformed::Unpaired {
                names: names.into(),
                values: values.into(),
            });
        };
        let prefix = &first[..first.len() - 1];
        self.wanted = selection.may_want(prefix);
        if self.wanted {
            let mut name = String::with_capacity(NAME_MAX);
            for (column, c) in n.enumerate() {
                name.clear();
                name.push_str(prefix);
                name.push_str(c);
                check_name(&name)?;
                if taken(selection, &name) {
                    self.taken.push((column, intern(&name)));
                }
                self.columns += 1;
            }
        }
        self.prefix.clear();
        self.prefix.push_str(first);
        self.names.clear();
        self.names.push_str(names);
        self.known = true;
        Ok(())
    }
}

/// Counter names are letters and digits, as the kernel prints them.
fn check_name(name: &str) -> Result<(), Malformed> {
    if name.len() <= NAME_MAX && name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(Malformed::CounterName(name.into()))
    }
}

/// The three files of one namespace, open, and the buffer they are read
/// into.
#[derive(Debug)]
pub struct CounterFiles {
    snmp: KeptFile,
    netstat: KeptFile,
    /// `None` where IPv6 is off (`ipv6.disable=1`: no file).
    snmp6: Option<KeptFile>,
    buf: Vec<u8>,
    /// What `snmp` and `netstat` printed last.
    layouts: [Layout; 2],
}

impl CounterFiles {
    /// Opens the files of the calling thread's namespace: under
    /// `<proc root>/net/` for the process's own namespace, else under
    /// `<proc root>/thread-self/net/` (the calling thread's).
    pub fn open(proc_root: &std::path::Path, own: bool) -> Result<CounterFiles, Error> {
        let dir = if own { "net" } else { "thread-self/net" };
        let open = |name: &str| KeptFile::open(proc_root, &format!("{dir}/{name}"));
        Ok(CounterFiles {
            snmp: open("snmp")?,
            netstat: open("netstat")?,
            snmp6: match open("snmp6") {
                Ok(f) => Some(f),
                Err(Error::ProcRead { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    None
                }
                Err(e) => return Err(e),
            },
            buf: Vec::new(),
            layouts: Default::default(),
        })
    }

    /// Reads the files afresh into `into`, keeping what `selection` wants.
    pub fn read(&mut self, selection: &Selection, into: &mut Counters) -> Result<(), Error> {
        into.values.clear();
        into.capped = false;
        let [snmp, netstat] = &mut self.layouts;
        let files = [(&self.snmp, Some(snmp)), (&self.netstat, Some(netstat))]
            .into_iter()
            .chain(self.snmp6.as_ref().map(|f| (f, None)));
        for (file, layout) in files {
            let n = file.read_all(&mut self.buf, FILE_MAX)?;
            let malformed = |detail: Malformed| Error::SysctlParse {
                path: file.path().to_owned(),
                detail,
            };
            let text = std::str::from_utf8(&self.buf[..n])
                .map_err(|_| malformed(Malformed::NotText(None)))?;
            match layout {
                Some(layout) => into.parse_tables(selection, layout, text),
                None => into.parse_pairs(selection, text),
            }
            .map_err(malformed)?;
        }
        into.finish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives\nIp: 2 64 7\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens AttemptFails CurrEstab OutRsts\nTcp: 1 200 120000 -1 5 3 1 4\nUdp: InDatagrams NoPorts\nUdp: 1 2\n";
    const SNMP6: &str = "Ip6InReceives                   \t9\nUdp6NoPorts                     \t1\nUdp6RcvbufErrors                \t0\n";

    fn sel(s: &str) -> Selection {
        Selection::parse(s).unwrap()
    }

    #[test]
    fn default_set_is_sorted_and_every_native_name_is_a_counter() {
        assert!(DEFAULT.windows(2).all(|w| w[0].name < w[1].name));
        for k in DEFAULT {
            assert!(k.native.starts_with("netstat_") && k.native.ends_with("_total"));
            assert_eq!(k.family.is_some(), k.name.starts_with("Udp"), "{}", k.name);
            assert!(!NOT_COUNTERS.contains(&k.name));
        }
    }

    #[test]
    fn names_as_nstat_prints_them_and_only_counters() {
        let mut c = Counters::default();
        c.parse_tables(&sel("all"), &mut Layout::default(), SNMP)
            .unwrap();
        c.parse_pairs(&sel("all"), SNMP6).unwrap();
        c.finish();
        assert_eq!(
            c.values(),
            [
                ("Ip6InReceives", 9),
                ("IpInReceives", 7),
                ("TcpActiveOpens", 5),
                ("TcpAttemptFails", 3),
                ("TcpOutRsts", 4),
                ("Udp6NoPorts", 1),
                ("Udp6RcvbufErrors", 0),
                ("UdpInDatagrams", 1),
                ("UdpNoPorts", 2),
            ]
        );
        assert_eq!(
            native("IpInReceives"),
            Some(("netstat_counters_ip_in_receives_total", OTHER_HELP, None))
        );
        assert_eq!(
            native("Udp6NoPorts").map(|n| (n.0, n.2)),
            Some(("netstat_udp_no_port_datagrams_total", Some("ipv6")))
        );
    }

    #[test]
    fn native_names_in_snake_case() {
        for (name, snake) in [
            ("TcpExtTCPSynRetrans", "tcp_ext_tcp_syn_retrans"),
            ("Ip6InReceives", "ip6_in_receives"),
            ("IpExtInECT0Pkts", "ip_ext_in_ect0_pkts"),
            ("TcpExtTW", "tcp_ext_tw"),
            ("IcmpMsgOutType3", "icmp_msg_out_type3"),
            ("MPTcpExtMPCapableSYNRX", "mp_tcp_ext_mp_capable_synrx"),
            (
                "MPTcpExtMPJoinAckHMacFailure",
                "mp_tcp_ext_mp_join_ack_hmac_failure",
            ),
        ] {
            assert_eq!(snake_case(name), snake);
        }
    }

    #[test]
    fn selections() {
        let mut c = Counters::default();
        c.parse_tables(&sel("default"), &mut Layout::default(), SNMP)
            .unwrap();
        c.parse_pairs(&sel("default"), SNMP6).unwrap();
        c.finish();
        let names: Vec<&str> = c.values().iter().map(|v| v.0).collect();
        assert_eq!(
            names,
            [
                "TcpActiveOpens",
                "TcpAttemptFails",
                "TcpOutRsts",
                "Udp6NoPorts",
                "Udp6RcvbufErrors",
                "UdpNoPorts"
            ]
        );
        let d = sel("default");
        assert!(d.may_want("Tcp") && d.may_want("TcpExt") && d.may_want("Udp"));
        assert!(!d.may_want("Ip") && !d.may_want("IpExt") && !d.may_want("UdpLite"));
        assert!(sel("ip*").may_want("Tcp"));
        let s = sel("udp*noports, ip6*");
        assert!(s.wants("UdpNoPorts") && s.wants("Udp6NoPorts") && s.wants("Ip6InReceives"));
        assert!(!s.wants("TcpAttemptFails") && !s.wants("IpInReceives"));
        assert!(sel("Tcp?ctiveOpens").wants("TcpActiveOpens"));
        assert!(sel("*").wants("X") && !sel("T*x").wants("TcpExt"));
        assert!(sel("*Ext*Listen*").wants("TcpExtListenDrops"));
        for bad in ["", "Tcp[A]", "a,,b", "Tcp.*", &"x".repeat(65)] {
            assert!(Selection::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Arbitrary text is an error or counters, never a panic (with the
        /// default set, so nothing is added to the process's kept names).
        #[test]
        fn parsers_never_panic(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let text = String::from_utf8_lossy(&text);
            let default = sel("default");
            let _ = Counters::default().parse_tables(&default, &mut Layout::default(), &text);
            let _ = Counters::default().parse_pairs(&default, &text);
            let _ = Counters::default().parse_tables(&default, &mut Layout::default(), &format!("Tcp: {text}\nTcp: {text}\n"));
        }
    }

    /// Parses `text` with `layout`, then with a fresh one: the same values.
    fn twice(selection: &Selection, layout: &mut Layout, text: &str) -> Counters {
        let mut kept = Counters::default();
        kept.parse_tables(selection, layout, text).unwrap();
        kept.finish();
        let mut fresh = Counters::default();
        fresh
            .parse_tables(selection, &mut Layout::default(), text)
            .unwrap();
        fresh.finish();
        assert_eq!(kept.values(), fresh.values(), "{text}");
        kept
    }

    #[test]
    fn a_kept_layout_reads_what_a_fresh_one_reads() {
        let (all, default) = (sel("all"), sel("default"));
        let mut layout = Layout::default();
        twice(&all, &mut layout, SNMP);
        let changed = SNMP.replace(
            "Tcp: 1 200 120000 -1 5 3 1 4",
            "Tcp: 1 200 120000 -1 6 9 1 4",
        );
        let c = twice(&all, &mut layout, &changed);
        assert!(c.values().contains(&("TcpAttemptFails", 9)));
        // A line of names that changes (IcmpMsg lists the types seen so
        // far), one more pair, one fewer.
        let grown = changed
            .replace("Tcp: RtoAlgorithm", "Tcp: Extra RtoAlgorithm")
            .replace("Tcp: 1 200", "Tcp: 8 1 200");
        let c = twice(&all, &mut layout, &format!("{grown}Ext: A B\nExt: 1 2\n"));
        assert!(c.values().contains(&("TcpExtra", 8)) && c.values().contains(&("ExtB", 2)));
        assert_eq!(layout.pairs.len(), 4);
        twice(&all, &mut layout, "Udp: InDatagrams NoPorts\nUdp: 1 2\n");
        assert_eq!(layout.pairs.len(), 1);
        // The kernel's own files, read twice into one layout.
        let mut layout = Layout::default();
        for name in ["snmp", "netstat", "snmp", "netstat"] {
            let text = std::fs::read_to_string(format!("/proc/self/net/{name}")).unwrap();
            twice(&default, &mut layout, &text);
        }
        // What a kept layout reads is checked as a fresh read is.
        let mut layout = Layout::default();
        twice(&all, &mut layout, "Tcp: A B\nTcp: 1 2\n");
        for bad in [
            "Tcp: A B\nTcp: 1\n",
            "Tcp: A B\nTcp: 1 x\n",
            "Tcp: A B\nUdp: 1 2\n",
            "Tcp: A B\nTcp: 1 2 3\n",
        ] {
            let e = Counters::default().parse_tables(&all, &mut layout, bad);
            assert!(e.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_files_are_said() {
        for bad in [
            "Tcp: A B\n",
            "Tcp: A B\nTcp: 1\n",
            "Tcp: A\nUdp: 1\n",
            "Tcp: A\nTcp: x\n",
            "Tcp: A-b\nTcp: 1\n",
        ] {
            let e = Counters::default().parse_tables(&sel("all"), &mut Layout::default(), bad);
            assert!(e.is_err(), "{bad:?}");
        }
        let e = Counters::default().parse_pairs(&sel("all"), "Udp6NoPorts 1 2\n");
        assert!(e.is_err());
        // An unwanted counter is not even parsed.
        assert!(Counters::default()
            .parse_tables(&sel("default"), &mut Layout::default(), "Tcp: A\nTcp: x\n")
            .is_ok());
    }
}
