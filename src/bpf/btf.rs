//! The kernel's BTF, read only to name the field the BPF program reads and
//! the kernel lacks, once a load failed: a missing field loads as a
//! poisoned instruction, which the verifier refuses with a message naming
//! no field (aya-obj 0.3 `poison_insn`). A load that works never reads it
//! here (aya parses it once). The format is the kernel's
//! (Documentation/bpf/btf.rst): a header, the types, the strings.

use super::error::Malformed;

/// The (struct, field) pairs `bpf/tcpwalk.bpf.c` and `tcpwalk.h` read.
/// A field inside an anonymous struct or union counts as its parent's.
pub const FIELDS: &[(&str, &str)] = &[
    ("task_struct", "nsproxy"),
    ("nsproxy", "net_ns"),
    ("net", "ns"),
    ("net", "ipv4"),
    ("ns_common", "inum"),
    ("netns_ipv4", "tcp_death_row"),
    ("inet_timewait_death_row", "hashinfo"),
    ("inet_hashinfo", "ehash"),
    ("inet_hashinfo", "ehash_mask"),
    ("inet_hashinfo", "lhash2"),
    ("inet_hashinfo", "lhash2_mask"),
    ("inet_hashinfo", "pernet"),
    ("inet_ehash_bucket", "chain"),
    ("inet_listen_hashbucket", "nulls_head"),
    ("hlist_nulls_head", "first"),
    ("hlist_nulls_node", "next"),
    ("sock_common", "skc_family"),
    ("sock_common", "skc_state"),
    ("sock_common", "skc_net"),
    ("sock_common", "skc_nulls_node"),
    ("bpf_iter_meta", "seq"),
    ("bpf_iter_meta", "session_id"),
    ("bpf_iter__task", "meta"),
    ("bpf_iter__task", "task"),
];

/// The fields the program reads only when it sums the bytes queued.
pub const QUEUE_FIELDS: &[(&str, &str)] = &[
    ("tcp_sock", "rcv_nxt"),
    ("tcp_sock", "copied_seq"),
    ("tcp_sock", "snd_una"),
    ("tcp_sock", "write_seq"),
];

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

/// One type: its kind, name offset, and where its members start.
#[derive(Clone, Copy)]
struct Type {
    kind: u32,
    name: u32,
    vlen: usize,
    /// Offset of the type's extra data (members) in the type section.
    extra: usize,
}

/// The first (struct, field) of `FIELDS` (and `QUEUE_FIELDS` if `queues`)
/// the BTF in `data` lacks, or why it cannot be read.
pub fn missing_field(
    data: &[u8],
    queues: bool,
) -> Result<Option<(&'static str, &'static str)>, Malformed> {
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    if data.get(..2) != Some(&0xeb9f_u16.to_le_bytes()[..]) {
        return Err(Malformed::Magic);
    }
    let field = |i: usize| u32_at(8 + 4 * i).map(|v| v as usize);
    let (Some(hdr), Some(type_off), Some(type_len), Some(str_off), Some(str_len)) = (
        u32_at(4).map(|v| v as usize),
        field(0),
        field(1),
        field(2),
        field(3),
    ) else {
        return Err(Malformed::Header);
    };
    let types = data
        .get(hdr + type_off..hdr + type_off + type_len)
        .ok_or(Malformed::Section("type"))?;
    let strings = data
        .get(hdr + str_off..hdr + str_off + str_len)
        .ok_or(Malformed::Section("string"))?;
    let index = index(types)?;
    let name = |off: u32| {
        let s = strings.get(off as usize..).unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    };
    let queue_fields = if queues { QUEUE_FIELDS } else { &[] };
    for &(st, f) in FIELDS.iter().chain(queue_fields) {
        let found = index.iter().skip(1).any(|t| {
            t.kind == KIND_STRUCT
                && name(t.name) == st.as_bytes()
                && has(types, &index, t, f, &name, 0)
        });
        if !found {
            return Ok(Some((st, f)));
        }
    }
    Ok(None)
}

/// Whether `t` has a member `field`, directly or in an anonymous struct or
/// union member (at most 4 deep).
fn has<'a>(
    types: &[u8],
    index: &[Type],
    t: &Type,
    field: &str,
    name: &impl Fn(u32) -> &'a [u8],
    depth: u32,
) -> bool {
    (0..t.vlen).any(|m| {
        let at = t.extra + 12 * m;
        let word = |i: usize| {
            types
                .get(at + 4 * i..at + 4 * i + 4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let (member, ty) = (word(0), word(1) as usize);
        if member != 0 {
            return name(member) == field.as_bytes();
        }
        match index.get(ty) {
            Some(inner) if depth < 4 && matches!(inner.kind, KIND_STRUCT | KIND_UNION) => {
                has(types, index, inner, field, name, depth + 1)
            }
            _ => false,
        }
    })
}

/// Every type, by id (id 0 is void: a placeholder).
fn index(types: &[u8]) -> Result<Vec<Type>, Malformed> {
    let mut index = vec![Type {
        kind: 0,
        name: 0,
        vlen: 0,
        extra: 0,
    }];
    let mut at = 0;
    while at < types.len() {
        let word = |i: usize| {
            types
                .get(at + 4 * i..at + 4 * i + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                .ok_or(Malformed::CutType(index.len()))
        };
        let (name, info) = (word(0)?, word(1)?);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let extra = match kind {
            1 | 14 | 17 => 4,             // int, var, decl_tag
            3 => 12,                      // array
            4 | 5 | 15 | 19 => 12 * vlen, // struct, union, datasec, enum64
            6 | 13 => 8 * vlen,           // enum, func_proto
            2 | 7..=12 | 16 | 18 => 0,    // ptr, fwd, typedef, qualifiers, func, float, type_tag
            k => {
                return Err(Malformed::Kind {
                    index: index.len(),
                    kind: k,
                })
            }
        };
        index.push(Type {
            kind,
            name,
            vlen,
            extra: at + 12,
        });
        at += 12 + extra;
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_every_field_or_says_which_it_lacks() {
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return; // no BTF here: load() refuses before reading fields
        };
        // Whatever the kernel, the answer is an answer, not a parse error.
        let r = missing_field(&data, true).unwrap();
        if let Some((s, f)) = r {
            assert!(FIELDS.contains(&(s, f)) || QUEUE_FIELDS.contains(&(s, f)));
        }
    }

    #[test]
    fn a_field_no_struct_has_is_named() {
        // A minimal BTF: struct task_struct { int nsproxy; } and nothing else.
        let mut strings = b"\0task_struct\0nsproxy\0int\0".to_vec();
        strings.push(0);
        let mut types = Vec::new();
        let mut push = |w: u32| types.extend_from_slice(&w.to_le_bytes());
        // 1: int
        push(21);
        push(1 << 24);
        push(4);
        push(32);
        // 2: struct task_struct { int nsproxy; }
        push(1);
        push((4 << 24) | 1);
        push(4);
        push(13);
        push(1);
        push(0);
        let mut data = Vec::new();
        for w in [0x0001_eb9f_u32, 24, 0, types.len() as u32] {
            data.extend_from_slice(&w.to_le_bytes());
        }
        data.extend_from_slice(&(types.len() as u32).to_le_bytes());
        data.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        data.extend_from_slice(&types);
        data.extend_from_slice(&strings);
        assert_eq!(missing_field(&data, false), Ok(Some(("nsproxy", "net_ns"))));
        assert_eq!(missing_field(&data[..10], false), Err(Malformed::Header));
        assert_eq!(missing_field(b"\0\0\0\0", true), Err(Malformed::Magic));
    }
}
