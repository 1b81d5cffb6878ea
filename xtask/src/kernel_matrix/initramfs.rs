//! The guest's initramfs: a `newc` cpio archive, gzip-compressed, written
//! here byte by byte (no cpio tool, no staging tree, no root-owned files to
//! fake): every entry is owned by root, dated 0, in a fixed order, so the
//! same inputs give the same image.
//!
//! Contents: busybox and its applets in /bin, iproute2's `ip`, `bridge` and
//! `tc` in /usr/sbin (busybox's own `ip` cannot create veth pairs, so its
//! namesakes get no link), `macdrop` and `matrix-guest` in /usr/bin (stripped), the shared
//! libraries of every dynamically linked binary at the paths `ldd` names,
//! the kernel's modules in /modules, and `/init`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::cmd::probe;

/// One archive member.
#[derive(Clone, Debug)]
enum Body {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A character device (major, minor).
    CharDev(u32, u32),
}

/// An archive being assembled: absolute paths (without the leading `/`)
/// to members. Parents are added as directories automatically.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    members: BTreeMap<String, (u32, Body)>,
}

impl Archive {
    fn insert(&mut self, path: &str, mode: u32, body: Body) {
        let path = path.trim_start_matches('/').to_owned();
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.members
                .entry(dir.to_string_lossy().into_owned())
                .or_insert((0o755, Body::Dir));
            parent = dir.parent();
        }
        self.members.insert(path, (mode, body));
    }

    pub fn dir(&mut self, path: &str) {
        self.insert(path, 0o755, Body::Dir);
    }

    pub fn file(&mut self, path: &str, mode: u32, bytes: Vec<u8>) {
        self.insert(path, mode, Body::File(bytes));
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(path, 0o777, Body::Symlink(target.to_owned()));
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.insert(path, mode, Body::CharDev(major, minor));
    }

    /// Total size of the file contents, for the log.
    pub fn payload_bytes(&self) -> usize {
        self.members
            .values()
            .map(|(_, body)| match body {
                Body::File(bytes) => bytes.len(),
                _ => 0,
            })
            .sum()
    }

    /// The archive in `newc` format. Members come in path order, so every
    /// directory precedes what it holds.
    pub fn write_newc(&self, out: &mut impl Write) -> io::Result<()> {
        for (ino, (path, (mode, body))) in (1..).zip(&self.members) {
            let (kind, data, rdev): (u32, &[u8], (u32, u32)) = match body {
                Body::Dir => (0o040000, &[], (0, 0)),
                Body::File(bytes) => (0o100000, bytes, (0, 0)),
                Body::Symlink(target) => (0o120000, target.as_bytes(), (0, 0)),
                Body::CharDev(major, minor) => (0o020000, &[], (*major, *minor)),
            };
            let nlink = if matches!(body, Body::Dir) { 2 } else { 1 };
            write_entry(out, ino, kind | mode, nlink, rdev, path, data)?;
        }
        write_entry(out, 0, 0, 1, (0, 0), "TRAILER!!!", &[])
    }

    /// Writes the archive gzip-compressed (`gzip -n`: no name or time in
    /// the header) to `path`.
    pub fn write_gz(&self, path: &Path) -> Result<()> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut gzip = Command::new("gzip")
            .args(["-n", "-6", "-c"])
            .stdin(Stdio::piped())
            .stdout(file)
            .spawn()
            .context("cannot start gzip")?;
        let mut stdin = io::BufWriter::new(gzip.stdin.take().expect("piped"));
        self.write_newc(&mut stdin)
            .and_then(|()| stdin.flush())
            .context("writing the archive to gzip")?;
        drop(stdin);
        let status = gzip.wait().context("waiting for gzip")?;
        ensure!(status.success(), "gzip failed ({status})");
        Ok(())
    }
}

/// One `newc` header, name and data, each padded to 4 bytes.
fn write_entry(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let size = u32::try_from(data.len())
        .map_err(|_| io::Error::other(format!("{name} is too large for newc")))?;
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        size,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        u32::try_from(name.len() + 1).expect("short name"),
        0, // check
    ];
    let mut header = String::with_capacity(110);
    header.push_str("070701");
    for field in fields {
        header.push_str(&format!("{field:08X}"));
    }
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    out.write_all(&[0; 3][..pad4(110 + name.len() + 1)])?;
    out.write_all(data)?;
    out.write_all(&[0; 3][..pad4(data.len())])
}

/// Bytes needed to pad `len` to a multiple of 4.
fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// What goes into every guest's initramfs.
pub struct Payload<'a> {
    pub busybox: &'a Path,
    pub ip: &'a Path,
    pub bridge: &'a Path,
    pub tc: &'a Path,
    pub macdrop: &'a Path,
    pub guest: &'a Path,
}

/// Paths inside the initramfs.
pub const GUEST_BIN: &str = "/usr/bin/matrix-guest";
pub const MACDROP_BIN: &str = "/usr/bin/macdrop";

/// busybox applets that must not shadow the real tools.
const NO_APPLET_LINK: &[&str] = &["ip", "bridge", "tc"];

/// The part of the archive that is the same for every kernel. `work` is a
/// scratch directory for stripped copies.
pub fn common(payload: &Payload, work: &Path) -> Result<Archive> {
    let mut archive = Archive::default();
    for dir in ["dev", "proc", "sys", "run", "tmp", "etc", "modules", "sbin"] {
        archive.dir(dir);
    }
    // The console the kernel opens for /init before devtmpfs is mounted.
    archive.char_dev("dev/console", 0o600, 5, 1);

    archive.file("bin/busybox", 0o755, read(payload.busybox)?);
    let applets = probe(
        payload.busybox.to_str().context("non-UTF-8 path")?,
        &["--list"],
    )
    .context("`busybox --list` failed")?;
    for applet in applets.lines().map(str::trim) {
        if !applet.is_empty() && applet != "busybox" && !NO_APPLET_LINK.contains(&applet) {
            archive.symlink(&format!("bin/{applet}"), "busybox");
        }
    }

    let mut elves: Vec<(&str, PathBuf)> = vec![
        ("/usr/sbin/ip", payload.ip.to_owned()),
        ("/usr/sbin/bridge", payload.bridge.to_owned()),
        ("/usr/sbin/tc", payload.tc.to_owned()),
    ];
    fs::create_dir_all(work)?;
    for (inside, binary) in [(MACDROP_BIN, payload.macdrop), (GUEST_BIN, payload.guest)] {
        let stripped = work.join(Path::new(inside).file_name().expect("has a name"));
        strip(binary, &stripped)?;
        elves.push((inside, stripped));
    }
    let mut libraries = BTreeSet::new();
    for (inside, binary) in &elves {
        archive.file(inside, 0o755, read(binary)?);
        libraries.extend(shared_libraries(binary)?);
    }
    for library in &libraries {
        // The file itself, under the name the loader looks for.
        let bytes = read(library)?;
        archive.file(&library.to_string_lossy(), 0o755, bytes);
    }
    Ok(archive)
}

/// Adds the kernel's modules and `/init` to a copy of `common`.
pub fn for_kernel(
    common: &Archive,
    release: &str,
    modules: &[(String, PathBuf)],
) -> Result<Archive> {
    let mut archive = common.clone();
    for (name, path) in modules {
        archive.file(&format!("modules/{name}.ko"), 0o644, read(path)?);
    }
    let names: Vec<&str> = modules.iter().map(|(name, _)| name.as_str()).collect();
    archive.file("init", 0o755, init_script(release, &names).into_bytes());
    Ok(archive)
}

/// `/init`: mount the pseudo filesystems, load the modules in order, lift
/// RLIMIT_MEMLOCK (5.10 charges BPF maps to it), run the guest program
/// (and show the end of the kernel log if it failed), power off. Any step that fails prints a FAIL marker itself, so the host
/// never waits for a verdict that cannot come.
pub fn init_script(release: &str, modules: &[&str]) -> String {
    format!(
        r#"#!/bin/busybox sh
# Generated by `cargo xtask kernel-matrix` for {release}.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
bb=/bin/busybox
fail() {{
    echo "MACDROP-MATRIX: FAIL $*"
    $bb dmesg | $bb tail -n 40
    $bb poweroff -f
}}
$bb mount -t proc proc /proc || fail "mount /proc"
$bb mount -t sysfs sysfs /sys || fail "mount /sys"
$bb mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
$bb mount -t tmpfs tmpfs /run || fail "mount /run"
$bb mount -t tmpfs tmpfs /tmp || fail "mount /tmp"
echo "MACDROP-MATRIX-BOOT: $($bb uname -r) up $($bb cut -d' ' -f1 /proc/uptime)s"
for m in {modules}; do
    $bb insmod /modules/$m.ko || fail "insmod $m.ko failed on $($bb uname -r)"
done
ulimit -l unlimited || fail "cannot raise RLIMIT_MEMLOCK"
{GUEST_BIN} --macdrop {MACDROP_BIN}
rc=$?
case $rc in
    0) ;;
    1) $bb dmesg | $bb tail -n 40 ;;
    *) echo "MACDROP-MATRIX: FAIL matrix-guest exited with status $rc without a verdict"
       $bb dmesg | $bb tail -n 40 ;;
esac
$bb poweroff -f
"#,
        modules = modules.join(" ")
    )
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// `strip --strip-all -o dest src`: the debug build of macdrop is ~80 MB,
/// stripped ~10 MB, and every byte is decompressed under emulation.
fn strip(src: &Path, dest: &Path) -> Result<()> {
    let status = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(dest)
        .arg(src)
        .status()
        .context("cannot start strip (binutils)")?;
    ensure!(
        status.success(),
        "strip {} failed ({status})",
        src.display()
    );
    Ok(())
}

/// The shared libraries (and the loader) `ldd` lists for `binary`, as
/// absolute paths; none for a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot start ldd")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // "not a dynamic executable" (static): nothing to copy.
        if String::from_utf8_lossy(&output.stderr).contains("not a dynamic executable")
            || stdout.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_ldd(&stdout).with_context(|| format!("ldd {}", binary.display()))
}

/// The paths in `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6
/// (0x...)` and `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has none.
fn parse_ldd(output: &str) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for line in output.lines().map(str::trim) {
        if line.contains("not found") {
            bail!("missing library: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut archive = Archive::default();
        archive.file("usr/bin/x", 0o755, b"hello".to_vec());
        archive.symlink("/bin/sh", "busybox");
        let mut out = Vec::new();
        archive.write_newc(&mut out).unwrap();
        // Parents first, in path order: bin, bin/sh, usr, usr/bin, usr/bin/x.
        let text = String::from_utf8_lossy(&out);
        let order: Vec<usize> = [
            "bin\0",
            "bin/sh\0",
            "usr\0",
            "usr/bin\0",
            "usr/bin/x\0",
            "TRAILER!!!\0",
        ]
        .iter()
        .map(|name| text.find(name).unwrap_or_else(|| panic!("{name} missing")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        // The first header: magic, inode 1, a directory 0755, root, 2 links.
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000001");
        assert_eq!(&out[14..22], b"000041ED");
        assert_eq!(&out[22..38], b"0000000000000000");
        // Every member starts on a 4-byte boundary and the total is aligned.
        assert_eq!(out.len() % 4, 0);
        let x = text.find("usr/bin/x\0").unwrap();
        let data = x + "usr/bin/x\0".len();
        let data = data + pad4(data);
        assert_eq!(&out[data..data + 5], b"hello");
        assert_eq!(&out[x - 110 + 54..x - 110 + 62], b"00000005"); // filesize
    }

    #[test]
    fn ldd_paths() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn init_loads_modules_in_order() {
        let init = init_script("6.1.0-56-cloud-amd64", &["llc", "stp", "bridge"]);
        assert!(init.starts_with("#!/bin/busybox sh\n"));
        assert!(init.contains("for m in llc stp bridge; do"));
        assert!(init.contains("/usr/bin/matrix-guest --macdrop /usr/bin/macdrop"));
    }
}
