//! Tells the program which target it was built for, for `--version`
//! (`x86_64-unknown-linux-musl` is the static release binary).
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=TELEGRAF_NETSTAT_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
