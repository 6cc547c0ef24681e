//! Property tests: the netlink and /proc parsers return errors, never panic,
//! on arbitrary bytes; and well-formed batches are read exactly.

use proptest::prelude::*;
use telegraf_netstat::netlink::{read_batch, Batch};
use telegraf_netstat::record::Kind;
use telegraf_netstat::{procfs, wire, Dump};

fn msg(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(payload);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn read_batch_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), seq in 0u32..3) {
        for dump in [Dump::Tcp, Dump::Udp4, Dump::Unix] {
            let _ = read_batch(&bytes, dump, seq, true, true, &mut |_: &telegraf_netstat::record::Record| {});
        }
    }

    #[test]
    fn read_batch_never_panics_on_mutated_records(
        states in proptest::collection::vec(any::<u8>(), 1..20),
        flip_at in any::<prop::sample::Index>(),
        flip_to in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = Vec::new();
        for &s in &states {
            let mut rec = vec![0u8; 72];
            rec[0] = wire::AF_INET6;
            rec[1] = s;
            b.extend(msg(wire::TCPDIAG_GETSOCK, wire::NLM_F_MULTI, 1, &rec));
        }
        // Unmodified, every state comes out in order.
        let mut seen = Vec::new();
        prop_assert_eq!(read_batch(&b, Dump::Tcp, 1, true, true, &mut |r: &telegraf_netstat::record::Record| seen.push((r.family, r.state))).unwrap(), Batch::More);
        let want: Vec<(u8, u8)> = states.iter().map(|&s| (wire::AF_INET6, s)).collect();
        prop_assert_eq!(&seen, &want);
        // Flipped and cut, it still returns.
        let i = flip_at.index(b.len());
        b[i] = flip_to;
        let n = cut.index(b.len() + 1);
        let _ = read_batch(&b[..n], Dump::Tcp, 1, true, true, &mut |_: &telegraf_netstat::record::Record| {});
    }

    #[test]
    fn proc_parser_never_panics(text in proptest::collection::vec(any::<u8>(), 0..600)) {
        for table in [procfs::Table::Inet(Kind::Tcp, wire::AF_INET), procfs::Table::Unix] {
            let _ = procfs::parse(std::path::Path::new("/proc/net/x"), table, &text, &mut |_| {});
        }
    }

    #[test]
    fn proc_parser_reads_generated_lines(states in proptest::collection::vec(0u8..=255, 0..50)) {
        let mut text = String::from("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n");
        for (i, s) in states.iter().enumerate() {
            text.push_str(&format!("{i:4}: 0100007F:1388 00000000:0000 {s:02X} 00000000:00000000 00:00000000 00000000 0 0 1 1\n"));
        }
        let mut seen = Vec::new();
        procfs::parse(std::path::Path::new("/proc/net/tcp"), procfs::Table::Inet(Kind::Udp, wire::AF_INET), text.as_bytes(), &mut |r| seen.push((r.state, r.local_port, r.remote_port))).unwrap();
        let want: Vec<(u8, u16, u16)> = states.iter().map(|&s| (s, 5000, 0)).collect();
        prop_assert_eq!(seen, want);
    }
}
