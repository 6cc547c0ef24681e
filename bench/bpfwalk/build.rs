//! Compiles ../../bpf/tcpwalk.bpf.c with clang into OUT_DIR.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let src = PathBuf::from("../../bpf/tcpwalk.bpf.c");
    println!("cargo:rerun-if-changed=../../bpf/tcpwalk.bpf.c");
    println!("cargo:rerun-if-changed=../../bpf/tcpwalk.h");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("tcpwalk.bpf.o");
    let status = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("clang (-target bpf) is needed to build the BPF program");
    assert!(status.success(), "clang failed on {}", src.display());
}
