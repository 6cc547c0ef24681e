//! Tag values from names other users choose (cgroup directories, namespace
//! names and paths, hostnames), written so that two different names never
//! print as one tag in any format.
//!
//! Names are bytes, not text: a cgroup may be called `nonutf\xff`, a
//! namespace `a\`. Replacing bad bytes (`to_string_lossy`) makes
//! `nonutf\xff` and `nonutf\xfe` one series, and influx line protocol
//! cannot end a tag value with a backslash, so `a\` would print as `a`.
//! [`escaped`] is injective instead: every backslash in its output starts an
//! escape (`\x5c` for a backslash itself, `\xNN` for a control character or
//! a byte that is not part of valid UTF-8), so a name without such bytes
//! prints as itself and no escaped name can meet an unescaped one, and no
//! value ends in a backslash.

use std::fmt::Write;

/// `name` as a tag value: itself where it is UTF-8 without backslashes or
/// control characters, else with those bytes written `\xNN`.
pub fn escaped(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' || c.is_control() && c.is_ascii() {
                let _ = write!(out, "\\x{:02x}", c as u32);
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_themselves_and_no_two_names_meet() {
        assert_eq!(
            escaped(b"/system.slice/nginx.service"),
            "/system.slice/nginx.service"
        );
        assert_eq!(
            escaped("caf\u{e9} ,= \"x\"".as_bytes()),
            "caf\u{e9} ,= \"x\""
        );
        let names: [&[u8]; 9] = [
            b"nonutf\xff",
            b"nonutf\xfe",
            "nonutf\u{fffd}".as_bytes(),
            b"nonutf\\xff",
            b"trail\\",
            b"trail",
            b"trail\\x5c",
            b"a\nb",
            b"a\\nb",
        ];
        let out: Vec<String> = names.iter().map(|n| escaped(n)).collect();
        for (i, a) in out.iter().enumerate() {
            assert!(!a.ends_with('\\'), "{a}");
            for b in &out[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(out[0], "nonutf\\xff");
        assert_eq!(out[3], "nonutf\\x5cxff");
        assert_eq!(out[4], "trail\\x5c");
        assert_eq!(out[7], "a\\x0ab");
    }
}
