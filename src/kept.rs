//! A /proc file opened once, inside the network namespace it describes,
//! and read again at every gather: the port range sysctls ([`portrange`])
//! and the SNMP MIB counters ([`counters`]) of each namespace.
//!
//! An open file keeps the namespace it was opened in: /proc/sys/net
//! resolves names in the namespace of the thread that looks them up
//! (`net_ctl_header_lookup()` takes `current->nsproxy->net_ns`), and
//! `/proc/thread-self/net/` in the namespace of that thread
//! (`get_proc_task_net()`, fs/proc/proc_net.c, takes the task the
//! directory names; `/proc/self/net` names the thread group leader, which
//! never changes namespace here). So the collector opens them on a thread
//! that has joined the namespace (`netns::inside`) and keeps them; each
//! read shows the values of that moment (measured on Linux 6.18: a file
//! opened inside a namespace reads that namespace's values from any thread).
//!
//! [`portrange`]: crate::portrange
//! [`counters`]: crate::counters

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// One open /proc file and its path, for error messages.
#[derive(Debug)]
pub struct KeptFile {
    path: PathBuf,
    file: File,
}

impl KeptFile {
    /// Opens `<proc root>/<name>` in the namespace of the calling thread.
    pub fn open(proc_root: &Path, name: &str) -> Result<KeptFile, Error> {
        let path = proc_root.join(name);
        match File::open(&path) {
            Ok(file) => Ok(KeptFile { path, file }),
            Err(source) => Err(Error::ProcRead { path, source }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One read at offset 0 (a sysctl prints its whole value in one read).
    pub fn read_start(&self, buf: &mut [u8]) -> Result<usize, Error> {
        self.file
            .read_at(buf, 0)
            .map_err(|source| self.error(source))
    }

    /// The whole file into `buf` (grown as needed, and kept for the next
    /// read), shorter than `max` bytes: a longer one is an error, so a file
    /// cannot make us hold more memory than that. Returns its length.
    ///
    /// A seq_file read at offset 0 starts the text afresh
    /// (`seq_read_iter()`, fs/seq_file.c); the files read this way
    /// (`single_open()`) print their text whole into the kernel's buffer and
    /// hand it out from there, so the reads that follow continue that text.
    pub fn read_all(&self, buf: &mut Vec<u8>, max: usize) -> Result<usize, Error> {
        if buf.is_empty() {
            buf.resize(4096.min(max), 0);
        }
        let mut len = 0;
        loop {
            let cap = buf.len().min(max);
            if len == cap {
                if cap == max {
                    let e = std::io::Error::other(format!("{max} bytes or longer"));
                    return Err(self.error(e));
                }
                buf.resize((buf.len() * 2).min(max), 0);
                continue;
            }
            let n = self
                .file
                .read_at(&mut buf[len..cap], len as u64)
                .map_err(|source| self.error(source))?;
            if n == 0 {
                return Ok(len);
            }
            len += n;
        }
    }

    fn error(&self, source: std::io::Error) -> Error {
        Error::ProcRead {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir as Dir;

    #[test]
    fn reads_the_whole_file_again_and_bounds_it() {
        let d = Dir::new("kept");
        std::fs::write(d.0.join("f"), vec![b'x'; 10_000]).unwrap();
        let f = KeptFile::open(&d.0, "f").unwrap();
        let mut buf = Vec::new();
        assert_eq!(f.read_all(&mut buf, 1 << 20).unwrap(), 10_000);
        std::fs::write(d.0.join("f"), b"short").unwrap();
        assert_eq!(f.read_all(&mut buf, 1 << 20).unwrap(), 5);
        assert_eq!(&buf[..5], b"short");
        std::fs::write(d.0.join("f"), vec![b'x'; 10_000]).unwrap();
        let e = f.read_all(&mut buf, 8192).unwrap_err();
        assert!(e.to_string().contains("8192 bytes or longer"), "{e}");
        assert_eq!(f.read_all(&mut buf, 10_001).unwrap(), 10_000);
        let e = KeptFile::open(&d.0, "missing").unwrap_err();
        assert!(matches!(e, Error::ProcRead { .. }), "{e}");
    }
}
