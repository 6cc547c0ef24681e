//! Registering and running the tests (libtest-mimic): ignored when they cannot run, failed under CI.

use super::*;

/// The test functions named as they are spelled: `tests![a, b]` is
/// `vec![("a", a as fn()), ("b", b as fn())]`, for [`named`].
#[macro_export]
macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        vec![$((stringify!($f), $f as fn())),*]
    };
}

/// A namespace test: a name and its body.
pub type NamedTest = (String, Box<dyn FnOnce() + Send>);

/// Names plain test functions `<group>::<name>`.
pub fn named(group: &str, tests: &[(&str, fn())]) -> Vec<NamedTest> {
    tests
        .iter()
        .map(|&(name, f)| -> NamedTest { (format!("{group}::{name}"), Box::new(f)) })
        .collect()
}

/// `Ok` when this process runs as root; otherwise why the tests need it.
pub fn needs_root(for_what: &str) -> Result<(), String> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(format!("needs root ({for_what})"))
    }
}

/// `Ok` when this build, kernel and process can walk with BPF: a one-shot
/// `--source bpf` succeeds; otherwise what it said is missing.
pub fn bpf_available() -> Result<(), String> {
    let out = std::process::Command::new(BIN)
        .args(["--source", "bpf"])
        .output()
        .map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
    }
}

/// Runs `tests` with libtest-mimic when `setup` (namespaces, tools) holds.
/// Otherwise they are reported as ignored, with the reason on stderr; under
/// CI they fail instead, so a machine that cannot run them is never green.
pub fn run_trials(args: Arguments, setup: Result<(), String>, tests: Vec<NamedTest>) -> ! {
    run_trials_needing(args, setup, tests, &[])
}

/// `run_trials`, where the tests whose names end in one of `needs`' names
/// also need that requirement to hold: a test that cannot run is ignored
/// (failed under CI), never reported as passed.
pub fn run_trials_needing(
    args: Arguments,
    setup: Result<(), String>,
    tests: Vec<NamedTest>,
    needs: &[(&str, Result<(), String>)],
) -> ! {
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let need = needs
                .iter()
                .find(|(n, _)| name.ends_with(n))
                .map_or(Ok(()), |(_, r)| r.clone());
            match setup.clone().and(need) {
                Ok(()) => Trial::test(name, move || {
                    f();
                    Ok(())
                }),
                Err(why) if in_ci() => Trial::test(name, move || {
                    Err(Failed::from(format!("cannot run in CI: {why}")))
                }),
                Err(why) => {
                    eprintln!("SKIP {name}: {why}; ignored");
                    Trial::test(name, || Ok(())).with_ignored_flag(true)
                }
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}
