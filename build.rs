//! Tells the program which target it was built for, for `--version`
//! (`x86_64-unknown-linux-musl` is the static release binary), and compiles
//! `--source bpf`'s program (bpf/tcpwalk.bpf.c) with clang when it can.
//! Without clang (or its BPF target) the build still succeeds: the binary
//! then has no BPF program and `--source bpf` says so.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let target = env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=TELEGRAF_NETSTAT_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=bpf/tcpwalk.bpf.c");
    println!("cargo:rerun-if-changed=bpf/tcpwalk.h");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rustc-check-cfg=cfg(tcpwalk)");
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("tcpwalk.bpf.o");
    let clang = env::var_os("CLANG").unwrap_or_else(|| "clang".into());
    let built = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-c",
            "bpf/tcpwalk.bpf.c",
            "-o",
        ])
        .arg(&out)
        .status();
    match built {
        Ok(s) if s.success() => println!("cargo:rustc-cfg=tcpwalk"),
        Ok(s) => println!(
            "cargo:warning=clang failed ({s}) on bpf/tcpwalk.bpf.c: this build has no BPF program (--source bpf)"
        ),
        Err(e) => println!(
            "cargo:warning=clang not found ({e}): this build has no BPF program (--source bpf)"
        ),
    }
}
