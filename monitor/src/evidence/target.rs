//! Where `--pcap` writes, opened as a root process must open a file in a
//! directory others may write to (`/tmp`): created exclusively
//! (O_CREAT|O_EXCL), never through a symbolic link (O_NOFOLLOW), readable
//! by its owner only (0600: the file holds frame headers of every tenant).
//! `--pcap-overwrite` replaces an existing file, but only a regular file
//! of macdrop's own user without other hard links, never through a link;
//! `-` is stdout, like `tcpdump -w -`.
//!
//! `check` says early what can be known without creating anything (before
//! anything is attached); `open` creates the file only once every argument
//! and namespace is validated, so a run that fails leaves no file behind
//! and truncates nothing. The two share one verdict on what is at the path
//! (`refusal`), and `open` is the authority: what changed in between is
//! seen by the open itself.

use std::{
    fs::{File, Metadata, OpenOptions, Permissions},
    io::{self, IsTerminal as _},
    os::{
        fd::AsFd as _,
        unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    },
    path::{Path, PathBuf},
};

use crate::error::Failure;

/// The mode of a capture file.
pub const MODE: u32 = 0o600;

/// `--pcap` and `--pcap-overwrite`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub overwrite: bool,
}

/// Why a path is refused, from what is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Exists,
    Symlink,
    Directory,
    NotRegular,
    HardLinked,
    OtherOwner(u32),
}

impl Target {
    /// `--pcap -`: the capture goes to stdout.
    pub fn is_stdout(&self) -> bool {
        self.path.as_os_str() == "-"
    }

    /// The path as messages and reports name it: "stdout" for `-`.
    pub fn name(&self) -> String {
        name(&self.path)
    }

    /// What can be refused before anything is created or attached: an
    /// existing file (without `--pcap-overwrite`), a symbolic link, a
    /// directory, a missing directory, stdout on a terminal.
    pub fn check(&self) -> Result<(), Failure> {
        if self.is_stdout() {
            return stdout_is_not_a_terminal();
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => match refusal(&meta, self.overwrite) {
                Some(r) => Err(self.refused(r)),
                None => Ok(()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = match self.path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                match std::fs::metadata(dir) {
                    Ok(m) if m.is_dir() => Ok(()),
                    Ok(_) => Err(self.cannot(&io::Error::from(io::ErrorKind::NotADirectory))),
                    Err(e) => Err(self.cannot(&e)),
                }
            }
            Err(e) => Err(self.cannot(&e)),
        }
    }

    /// Opens the destination: stdout, a new file (mode 0600), or with
    /// `--pcap-overwrite` an existing regular file, emptied and set to
    /// 0600 only after it is known to be one.
    pub fn open(&self) -> Result<File, Failure> {
        if self.is_stdout() {
            stdout_is_not_a_terminal()?;
            return io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map(File::from)
                .map_err(|e| self.cannot(&e));
        }
        let mut options = OpenOptions::new();
        options
            .write(true)
            .mode(MODE)
            // O_NONBLOCK: a FIFO put there does not block the open (and
            // is refused below); O_NOCTTY: a terminal does not become
            // macdrop's.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
        if self.overwrite {
            options.create(true);
        } else {
            options.create_new(true);
        }
        let file = match options.open(&self.path) {
            Ok(file) => file,
            Err(e) => return Err(self.open_error(&e)),
        };
        let meta = file.metadata().map_err(|e| self.cannot(&e))?;
        // Only an existing file can be refused here; a new one is ours.
        if let Some(r) = refusal(&meta, true) {
            return Err(self.refused(r));
        }
        if self.overwrite {
            file.set_len(0).map_err(|e| self.cannot(&e))?;
            file.set_permissions(Permissions::from_mode(MODE))
                .map_err(|e| self.cannot(&e))?;
        }
        Ok(file)
    }

    /// An open that failed: what is at the path, where that explains it.
    fn open_error(&self, e: &io::Error) -> Failure {
        match e.raw_os_error() {
            // O_NOFOLLOW on a symbolic link.
            Some(libc::ELOOP) => self.refused(Refusal::Symlink),
            Some(libc::EISDIR) => self.refused(Refusal::Directory),
            // A FIFO without a reader (O_NONBLOCK), a device without one.
            Some(libc::ENXIO | libc::ENODEV) => self.refused(Refusal::NotRegular),
            // O_EXCL: something is there, a link included.
            Some(libc::EEXIST) => match std::fs::symlink_metadata(&self.path) {
                Ok(meta) => self.refused(refusal(&meta, false).unwrap_or(Refusal::Exists)),
                Err(_) => self.refused(Refusal::Exists),
            },
            _ => self.cannot(e),
        }
    }

    fn refused(&self, r: Refusal) -> Failure {
        let (what, fix) = match r {
            Refusal::Exists => (
                "it already exists".to_owned(),
                "name a new file, or add --pcap-overwrite to replace it",
            ),
            Refusal::Symlink => (
                "it is a symbolic link, which macdrop never writes through".to_owned(),
                "name the file itself",
            ),
            Refusal::Directory => ("it is a directory".to_owned(), "name a file in it"),
            Refusal::NotRegular => (
                "it is not a regular file (a FIFO, socket or device)".to_owned(),
                "name a regular file, or use --pcap - for stdout",
            ),
            Refusal::HardLinked => (
                "it has other hard links, which replacing it would change too".to_owned(),
                "remove it or name a new file",
            ),
            Refusal::OtherOwner(uid) => (
                format!("it belongs to uid {uid}, not to macdrop's user"),
                "remove it or name a new file",
            ),
        };
        self.failure(&what, fix)
    }

    fn cannot(&self, e: &io::Error) -> Failure {
        let fix = match e.kind() {
            io::ErrorKind::NotFound => "create the directory first, or choose another path",
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                "choose a path macdrop may write (e.g. under /tmp or /var/tmp)"
            }
            io::ErrorKind::StorageFull => "free some space, or choose another filesystem",
            _ => "choose another path",
        };
        self.failure(&crate::output::reason(e), fix)
    }

    /// "cannot write the pcap evidence to PATH: WHAT; FIX", one line,
    /// exit 3.
    fn failure(&self, what: &str, fix: &str) -> Failure {
        Failure::environment(format!(
            "cannot write the pcap evidence to {}: {what}; {fix}",
            self.name()
        ))
    }
}

/// A capture path as messages name it: "stdout" for `-`.
pub fn name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "stdout".to_owned()
    } else {
        path.display().to_string()
    }
}

/// What is at the path, refused or not: anything but a regular file; a
/// regular file unless `overwrite`, and then only macdrop's own, with no
/// other hard link.
fn refusal(meta: &Metadata, overwrite: bool) -> Option<Refusal> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Some(Refusal::Symlink);
    }
    if kind.is_dir() {
        return Some(Refusal::Directory);
    }
    if !kind.is_file() {
        return Some(Refusal::NotRegular);
    }
    if !overwrite {
        return Some(Refusal::Exists);
    }
    if meta.nlink() > 1 {
        return Some(Refusal::HardLinked);
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    (meta.uid() != me).then_some(Refusal::OtherOwner(meta.uid()))
}

/// pcapng on a terminal is noise (tcpdump refuses it too).
fn stdout_is_not_a_terminal() -> Result<(), Failure> {
    if io::stdout().is_terminal() {
        return Err(Failure::usage(
            "--pcap - writes the capture to stdout, which is a terminal: pipe it (| tshark -r -) \
             or name a file",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, os::unix::fs::symlink};

    use super::*;
    use crate::error::ExitKind;

    /// A fresh directory of its own under the temp dir, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("macdrop-target-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            Self(dir)
        }
        fn target(&self, name: &str, overwrite: bool) -> Target {
            Target {
                path: self.0.join(name),
                overwrite,
            }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn victim(dir: &Dir) -> PathBuf {
        let victim = dir.0.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::set_permissions(&victim, Permissions::from_mode(0o600)).unwrap();
        victim
    }

    fn message(r: Result<impl std::fmt::Debug, Failure>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind, ExitKind::Environment, "{e}");
        assert!(!e.message.contains('\n'), "{e}");
        e.message
    }

    #[test]
    fn a_new_file_is_created_0600() {
        let dir = Dir::new("new");
        let t = dir.target("e.pcapng", false);
        t.check().unwrap();
        assert!(!t.path.exists(), "check creates nothing");
        let mut f = t.open().unwrap();
        f.write_all(b"x").unwrap();
        let mode = std::fs::metadata(&t.path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_existing_file_is_kept_without_overwrite() {
        let dir = Dir::new("exists");
        let victim = victim(&dir);
        let t = Target {
            path: victim.clone(),
            overwrite: false,
        };
        for m in [message(t.check()), message(t.open())] {
            assert!(m.contains("already exists"), "{m}");
            assert!(m.contains("--pcap-overwrite"), "{m}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_symlink_is_never_followed_even_with_overwrite() {
        let dir = Dir::new("symlink");
        let victim = victim(&dir);
        let link = dir.0.join("link");
        symlink(&victim, &link).unwrap();
        for overwrite in [false, true] {
            let t = Target {
                path: link.clone(),
                overwrite,
            };
            for m in [message(t.check()), message(t.open())] {
                assert!(m.contains("symbolic link"), "{m}");
            }
        }
        // A dangling link: O_EXCL would not create through it either.
        let dangling = dir.0.join("dangling");
        symlink(dir.0.join("nowhere"), &dangling).unwrap();
        let t = Target {
            path: dangling,
            overwrite: true,
        };
        assert!(message(t.open()).contains("symbolic link"));
        assert!(!dir.0.join("nowhere").exists());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn overwrite_replaces_a_regular_file_and_makes_it_0600() {
        let dir = Dir::new("overwrite");
        let path = dir.0.join("old.pcapng");
        std::fs::write(&path, b"an older capture").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let t = Target {
            path: path.clone(),
            overwrite: true,
        };
        t.check().unwrap();
        let mut f = t.open().unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // Overwrite of a file that is not there creates it.
        let fresh = dir.target("fresh", true);
        fresh.open().unwrap();
        assert!(fresh.path.is_file());
    }

    #[test]
    fn overwrite_refuses_what_is_not_a_plain_file_of_its_own() {
        let dir = Dir::new("refuse");
        let victim = victim(&dir);
        let hard = dir.0.join("hard");
        std::fs::hard_link(&victim, &hard).unwrap();
        let t = Target {
            path: hard,
            overwrite: true,
        };
        for m in [message(t.check()), message(t.open())] {
            assert!(m.contains("hard links"), "{m}");
        }
        let fifo = dir.0.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = Target {
            path: fifo,
            overwrite: true,
        };
        // Without a reader: refused, not blocked.
        for m in [message(t.check()), message(t.open())] {
            assert!(m.contains("not a regular file"), "{m}");
        }
        let t = Target {
            path: dir.0.clone(),
            overwrite: true,
        };
        for m in [message(t.check()), message(t.open())] {
            assert!(m.contains("is a directory"), "{m}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_missing_directory_names_path_reason_and_fix() {
        let t = Target {
            path: "/nonexistent-macdrop-dir/x.pcapng".into(),
            overwrite: false,
        };
        for m in [message(t.check()), message(t.open())] {
            assert!(m.contains("/nonexistent-macdrop-dir/x.pcapng"), "{m}");
            assert!(m.contains("no such file or directory"), "{m}");
            assert!(m.contains("create the directory"), "{m}");
        }
    }
}
