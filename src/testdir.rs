//! A scratch directory for the library's unit tests, removed when dropped
//! (also when a test fails).

use std::path::PathBuf;

pub(crate) struct TestDir(pub(crate) PathBuf);

impl TestDir {
    /// A fresh `telegraf-netstat-unit-WHAT-PID` under the temp directory.
    pub(crate) fn new(what: &str) -> TestDir {
        let d = std::env::temp_dir().join(format!(
            "telegraf-netstat-unit-{what}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TestDir(d)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
