//! Where a gather's bytes go ([`Sink`]): stdout without ever blocking a
//! loop that must hear SIGTERM, or the `--output` file, replaced atomically
//! without trusting anything in its directory.
//!
//! ## stdout
//!
//! A reader that stops reading (a stuck Telegraf, a paused pipeline) must
//! not keep the loops from hearing SIGTERM or stdin EOF, and an inherited
//! non-blocking stdout must not fail a gather with EAGAIN. So stdout is
//! written without blocking and, when the reader is behind, the caller
//! waits for it in `poll(2)` together with its signal pipe and stdin:
//!
//! - a pipe or FIFO is reopened through `/proc/self/fd/1` with
//!   `O_NONBLOCK`: a new open file description of the same pipe, so the
//!   flag does not leak to the description shared with other processes;
//! - a socket (systemd's journal stream) is written with
//!   `send(MSG_DONTWAIT)`;
//! - anything else (terminal, regular file, `/dev/null`) is written as it
//!   is; EAGAIN, if its description is non-blocking, still waits in poll.
//!
//! ## `--output`
//!
//! The directory of an output file is often writable by another user (a
//! node_exporter textfile directory owned by the exporter's account) while
//! this program runs as root. Whatever that user plants there is never
//! followed, opened or reused:
//!
//! - the directory is opened once, at startup, and every later step is an
//!   `*at()` call relative to that descriptor;
//! - each gather writes a new temporary file created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` under a name with 64 random bits: an
//!   existing entry of that name (symlink, FIFO, someone else's file) makes
//!   the create fail instead of being opened, and another name is drawn;
//! - the temporary file is then renamed over the target, which replaces the
//!   directory entry itself (a planted symlink is replaced, not followed);
//! - a target that exists and is not a regular file (`/dev/null`,
//!   `/dev/stdout`, a FIFO, a directory) is refused at startup.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

/// Where each gather goes: stdout, or the `--output` file.
#[derive(Debug)]
pub enum Sink {
    Stdout(Stdout),
    File(OutputFile),
}

impl Sink {
    /// Delivers one gather's bytes. `wait` blocks until a stdout reader
    /// that is behind takes more (`true`) or the caller must stop (`false`).
    pub fn deliver(
        &self,
        bytes: &[u8],
        wait: &mut dyn FnMut(BorrowedFd<'_>) -> std::io::Result<bool>,
    ) -> Result<(), Delivery> {
        match self {
            Sink::Stdout(stdout) => stdout.write_all(bytes, wait),
            Sink::File(file) => file.replace(bytes).map_err(|e| {
                Delivery::Failed(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", file.path().display()),
                ))
            }),
        }
    }

    pub fn is_file(&self) -> bool {
        matches!(self, Sink::File(_))
    }
}

/// Why bytes could not be delivered.
#[derive(Debug)]
pub enum Delivery {
    /// The reader went away (EPIPE): stop quietly.
    Closed,
    /// The caller asked to stop while waiting for the reader.
    Stopped,
    Failed(std::io::Error),
}

/// How stdout is written.
#[derive(Debug)]
enum StdoutKind {
    /// Our own non-blocking description of the pipe on fd 1.
    Pipe(OwnedFd),
    Socket,
    Other,
}

/// The process's stdout, written without blocking (see the module doc).
#[derive(Debug)]
pub struct Stdout {
    kind: StdoutKind,
}

impl Stdout {
    /// Looks at what fd 1 is; never fails (an odd stdout is written as is).
    pub fn new() -> Stdout {
        let fd = rustix::stdio::stdout();
        let kind = match rustix::fs::fstat(fd).map(|st| FileType::from_raw_mode(st.st_mode)) {
            Ok(FileType::Fifo) => match rustix::fs::open(
                "/proc/self/fd/1",
                OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::empty(),
            ) {
                // Only if it is still the same pipe.
                Ok(own) if same_file(own.as_fd(), fd) => StdoutKind::Pipe(own),
                _ => StdoutKind::Other,
            },
            Ok(FileType::Socket) => StdoutKind::Socket,
            _ => StdoutKind::Other,
        };
        Stdout { kind }
    }

    /// Writes all of `bytes`, normally with one write, so a reader never
    /// sees part of a line unless it is slower than us. Whenever the reader
    /// is behind, `wait(fd)` is called to wait until `fd` is writable; it
    /// returns `false` to give up (`Delivery::Stopped`).
    pub fn write_all(
        &self,
        bytes: &[u8],
        wait: &mut dyn FnMut(BorrowedFd<'_>) -> std::io::Result<bool>,
    ) -> Result<(), Delivery> {
        let fd = match &self.kind {
            StdoutKind::Pipe(own) => own.as_fd(),
            _ => rustix::stdio::stdout(),
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            let r = match self.kind {
                StdoutKind::Socket => rustix::net::send(
                    fd,
                    rest,
                    rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
                ),
                _ => rustix::io::write(fd, rest),
            };
            match r {
                Ok(n) => rest = &rest[n..],
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => match wait(fd) {
                    Ok(true) => {}
                    Ok(false) => return Err(Delivery::Stopped),
                    Err(e) => return Err(Delivery::Failed(e)),
                },
                Err(Errno::PIPE) => return Err(Delivery::Closed),
                Err(e) => return Err(Delivery::Failed(e.into())),
            }
        }
        Ok(())
    }
}

impl Default for Stdout {
    fn default() -> Self {
        Stdout::new()
    }
}

fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}

/// How many random names are tried before giving up: each collision is
/// either a planted file or a 2^-64 coincidence.
const NAME_ATTEMPTS: usize = 8;

/// Why the `--output` file cannot be used: what was found there, or the
/// step that failed with the OS error.
#[derive(Debug)]
pub enum OutputError {
    NotAFileName,
    Directory,
    Symlink,
    NotRegular,
    /// Opening its directory failed.
    OpenDir(std::io::Error),
    /// `stat` of the file failed.
    Stat(std::io::Error),
    /// A temporary file in its directory could not be created.
    CreateTemp(std::io::Error),
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputError::NotAFileName => f.write_str("not a file name"),
            OutputError::Directory => f.write_str("it is a directory"),
            OutputError::Symlink => {
                f.write_str("it is a symbolic link; name the file it points to")
            }
            OutputError::NotRegular => f.write_str("it exists and is not a regular file"),
            OutputError::OpenDir(e) => write!(f, "cannot open its directory: {e}"),
            OutputError::Stat(e) => write!(f, "cannot look at it: {e}"),
            OutputError::CreateTemp(e) => write!(f, "cannot create files in its directory: {e}"),
        }
    }
}

/// Why [`OutputFile::read_own`] did not read the file.
#[derive(Debug)]
pub enum ReadBackError {
    /// Not a file this user wrote: what it is.
    NotOurs(&'static str),
    /// Longer than the cap, in bytes.
    TooLarge(usize),
    Io(std::io::Error),
}

impl std::fmt::Display for ReadBackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadBackError::NotOurs(what) => write!(f, "it is {what}"),
            ReadBackError::TooLarge(cap) => write!(f, "it is longer than {cap} bytes"),
            ReadBackError::Io(e) => write!(f, "cannot read it: {e}"),
        }
    }
}

/// The `--output` file: a directory descriptor and a name in it.
#[derive(Debug)]
pub struct OutputFile {
    dir: OwnedFd,
    name: OsString,
    path: PathBuf,
    /// The file's mode (0644 for `--output`, 0600 for `--state-file`).
    mode: u32,
}

impl OutputFile {
    /// Checks `path` at startup: its directory opens, the target is absent
    /// or a regular file, and a temporary file can be created there (and is
    /// removed again). The error says why not, naming nothing but `path`.
    pub fn open(path: &Path) -> Result<OutputFile, OutputError> {
        let out = OutputFile::in_directory(path, 0o644)?;
        match out.look() {
            Ok(Some(st)) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => Ok(out),
                FileType::Directory => Err(OutputError::Directory),
                FileType::Symlink => Err(OutputError::Symlink),
                _ => Err(OutputError::NotRegular),
            },
            Ok(None) => Ok(out),
            Err(e) => Err(OutputError::Stat(e.into())),
        }
    }

    /// What is at the path, not following a symbolic link: `None` when
    /// nothing is.
    fn look(&self) -> rustix::io::Result<Option<rustix::fs::Stat>> {
        match rustix::fs::statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks `path`'s directory only: it opens and takes a temporary file
    /// (removed again); the file will be written with `mode`. What is at
    /// `path` itself is looked at by the caller (`--state-file` reads it
    /// back first, [`Self::read_own`]).
    pub fn in_directory(path: &Path, mode: u32) -> Result<OutputFile, OutputError> {
        let name = match path.file_name() {
            Some(n) if !path.as_os_str().as_bytes().ends_with(b"/") => n.to_owned(),
            _ => return Err(OutputError::NotAFileName),
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = rustix::fs::openat(
            CWD,
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| OutputError::OpenDir(e.into()))?;
        let out = OutputFile {
            dir,
            name,
            path: path.to_owned(),
            mode,
        };
        let (_, tmp) = out.create_temp().map_err(OutputError::CreateTemp)?;
        let _ = rustix::fs::unlinkat(&out.dir, &tmp, AtFlags::empty());
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `other` names the same entry: the same name in the same
    /// directory, however either path was spelt.
    pub fn same_target(&self, other: &OutputFile) -> bool {
        self.name == other.name && same_file(self.dir.as_fd(), other.dir.as_fd())
    }

    /// Replaces the file with `bytes`, with its mode: a reader sees the
    /// old content or the new, never part of it.
    pub fn replace(&self, bytes: &[u8]) -> std::io::Result<()> {
        let (fd, tmp) = self.create_temp()?;
        let r = (|| -> std::io::Result<()> {
            // The umask may have removed bits from the creation mode.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(self.mode))?;
            let mut rest = bytes;
            while !rest.is_empty() {
                match rustix::io::write(&fd, rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            drop(fd);
            rustix::fs::renameat(&self.dir, &tmp, &self.dir, &self.name)?;
            Ok(())
        })();
        if r.is_err() {
            let _ = rustix::fs::unlinkat(&self.dir, &tmp, AtFlags::empty());
        }
        r
    }

    /// The file's bytes if this process's user wrote it: a regular file
    /// owned by the effective user, not writable by group or others, of at
    /// most `cap` bytes. Looked at (`fstatat`, not following a symbolic
    /// link) before it is opened, so that nothing else is ever opened (no
    /// FIFO, device or terminal), then opened without following a link or
    /// blocking and checked to be what was looked at. `Ok(None)`: there is
    /// none.
    pub fn read_own(&self, cap: usize) -> Result<Option<Vec<u8>>, ReadBackError> {
        let st = match self.look() {
            Ok(Some(st)) => st,
            Ok(None) => return Ok(None),
            Err(e) => return Err(ReadBackError::Io(e.into())),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => return Err(ReadBackError::NotOurs("a symbolic link")),
            _ => return Err(ReadBackError::NotOurs("not a regular file")),
        }
        if st.st_uid != rustix::process::geteuid().as_raw() {
            return Err(ReadBackError::NotOurs("owned by another user"));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(ReadBackError::NotOurs("writable by group or others"));
        }
        if st.st_size > cap as i64 {
            return Err(ReadBackError::TooLarge(cap));
        }
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.dir, &self.name, flags, Mode::empty())
            .map_err(|e| ReadBackError::Io(e.into()))?;
        match rustix::fs::fstat(&fd) {
            Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {}
            Ok(_) => return Err(ReadBackError::NotOurs("replaced while it was read")),
            Err(e) => return Err(ReadBackError::Io(e.into())),
        }
        // Read to its end, which may have moved since the look.
        match read_at_most(fd, cap as u64) {
            Ok(Some(bytes)) => Ok(Some(bytes)),
            Ok(None) => Err(ReadBackError::TooLarge(cap)),
            Err(e) => Err(ReadBackError::Io(e)),
        }
    }

    /// Creates a new, empty temporary file beside the target under a random
    /// hidden name; never opens anything that already exists.
    fn create_temp(&self) -> std::io::Result<(OwnedFd, OsString)> {
        let mut last = Errno::EXIST;
        for _ in 0..NAME_ATTEMPTS {
            let tmp = self.temp_name(random_u64()?);
            match create_exclusive(&self.dir, &tmp, self.mode) {
                Ok(fd) => return Ok((fd, tmp)),
                Err(Errno::EXIST) => last = Errno::EXIST,
                Err(e) => return Err(e.into()),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{NAME_ATTEMPTS} random temporary names were all taken: {}",
                std::io::Error::from(last)
            ),
        ))
    }

    /// `.NAME.<16 hex digits>.tmp`: hidden from globs such as node_exporter's
    /// `*.prom`, and unpredictable.
    fn temp_name(&self, r: u64) -> OsString {
        let mut v = Vec::with_capacity(self.name.len() + 22);
        v.push(b'.');
        v.extend_from_slice(self.name.as_bytes());
        let mut hex = String::with_capacity(21);
        let _ = write!(hex, ".{r:016x}.tmp");
        v.extend_from_slice(hex.as_bytes());
        OsString::from_vec(v)
    }
}

/// Reads `fd` to its end if that is at most `cap` bytes (`None` if it is
/// longer), never reading more than one byte past the cap: the state file
/// here, the exporter's TLS files (`serve::web`).
pub fn read_at_most(fd: OwnedFd, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    let mut file = std::io::Read::take(std::fs::File::from(fd), cap + 1);
    std::io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok((bytes.len() as u64 <= cap).then_some(bytes))
}

/// `openat(dir, name, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, mode)`.
fn create_exclusive(dir: &OwnedFd, name: &OsStr, mode: u32) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
}

fn random_u64() -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < b.len() {
        match rustix::rand::getrandom(&mut b[got..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => got += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(u64::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use crate::testdir::TestDir as Dir;

    #[test]
    fn replaces_atomically_with_mode_0644_and_leaves_no_temporary_file() {
        let d = Dir::new("replace");
        let path = d.0.join("out.prom");
        let out = OutputFile::open(&path).unwrap();
        out.replace(b"one\n").unwrap();
        let first = std::fs::metadata(&path).unwrap();
        out.replace(b"two\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o644);
        assert_ne!(m.ino(), first.ino(), "a new file each time");
        let names: Vec<_> = std::fs::read_dir(&d.0).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn planted_entries_at_the_temporary_name_are_never_opened() {
        let d = Dir::new("planted");
        let victim = d.0.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let out = OutputFile::open(&d.0.join("out")).unwrap();
        // Whatever name is drawn, something is planted there first.
        let tmp = out.temp_name(7);
        std::os::unix::fs::symlink(&victim, d.0.join(&tmp)).unwrap();
        let e = create_exclusive(&out.dir, &tmp, 0o644).unwrap_err();
        assert_eq!(e, Errno::EXIST);
        let fifo = out.temp_name(8);
        rustix::fs::mknodat(
            &out.dir,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o666),
            0,
        )
        .unwrap();
        assert_eq!(
            create_exclusive(&out.dir, &fifo, 0o644).unwrap_err(),
            Errno::EXIST
        );
        out.replace(b"new\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(d.0.join("out")).unwrap(), b"new\n");
    }

    #[test]
    fn read_at_most_reads_up_to_the_cap_and_refuses_one_byte_more() {
        let d = Dir::new("capped");
        let path = d.0.join("f");
        std::fs::write(&path, b"12345").unwrap();
        let open = || OwnedFd::from(std::fs::File::open(&path).unwrap());
        assert_eq!(read_at_most(open(), 5).unwrap(), Some(b"12345".to_vec()));
        assert_eq!(read_at_most(open(), 4).unwrap(), None);
        assert_eq!(read_at_most(open(), 0).unwrap(), None);
    }

    #[test]
    fn temporary_names_are_hidden_and_random() {
        let d = Dir::new("names");
        let out = OutputFile::open(&d.0.join("netstat.prom")).unwrap();
        let n = out.temp_name(0xabc).into_string().unwrap();
        assert_eq!(n, ".netstat.prom.0000000000000abc.tmp");
        assert_ne!(random_u64().unwrap(), random_u64().unwrap());
    }

    #[test]
    fn targets_that_are_not_regular_files_are_refused() {
        let d = Dir::new("targets");
        let link = d.0.join("link");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        for (path, why) in [
            (Path::new("/dev/null"), "not a regular file"),
            (Path::new("/dev/stdout"), "symbolic link"),
            (&link, "symbolic link"),
            (&d.0, "directory"),
            (Path::new("/"), "not a file name"),
            (Path::new("/no/such/dir/x"), "cannot open its directory"),
        ] {
            let e = OutputFile::open(path).unwrap_err();
            assert!(e.to_string().contains(why), "{}: {e}", path.display());
        }
        let slash = format!("{}/", d.0.join("x").display());
        assert!(OutputFile::open(Path::new(&slash)).is_err());
    }
}
