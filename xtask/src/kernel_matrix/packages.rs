//! The Debian packages the kernel matrix boots and packs, pinned, and how
//! they are fetched: with apt, through a private configuration under
//! `target/kernel-matrix/apt/` that knows bullseye, bookworm and trixie and
//! leaves the system's own sources, lists and cache alone. apt checks each
//! download against the archive's signed indices; the pin's SHA-256 checks
//! it again, and checks the cache on later runs (which then need no network
//! at all).
//!
//! Pins are exact versions, resolved once with `cargo xtask kernel-matrix
//! --resolve` (the newest of each family in the archive at that moment) and
//! recorded in [`KERNELS`] and [`BUSYBOX`]. When Debian drops a pinned
//! version from its archive, the download fails with that hint.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::cmd::probe;

/// One exact package version.
#[derive(Clone, Copy, Debug)]
pub struct Pin {
    pub package: &'static str,
    pub version: &'static str,
    pub sha256: &'static str,
}

/// A kernel of the matrix.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// What `--kernels` calls it.
    pub label: &'static str,
    /// The Debian release it comes from.
    pub suite: &'static str,
    pub pin: Pin,
}

/// The kernels, oldest first. Resolved 2026-11-28 with `--resolve`.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        label: "5.10",
        suite: "bullseye",
        pin: Pin {
            package: "linux-image-5.10.0-46-cloud-amd64",
            version: "5.10.262-1",
            sha256: "18d94781d1b3052e21967ac2262239e5f14fbf511d6c3e110629d7aa35340760",
        },
    },
    Kernel {
        label: "6.1",
        suite: "bookworm",
        pin: Pin {
            package: "linux-image-6.1.0-56-cloud-amd64",
            version: "6.1.192-2",
            sha256: "e7d02b943971edcb8790e256c02cfab3bca6c3d37c1bf25392a57c71300615ee",
        },
    },
    Kernel {
        label: "6.12",
        suite: "trixie",
        pin: Pin {
            package: "linux-image-6.12.118+deb13-cloud-amd64",
            version: "6.12.118-1",
            sha256: "07f23ba1de88377d700e1e2f5b2ee495ff89b0d0bb73fdbd3eac8f6b27609b9a",
        },
    },
];

/// The initramfs's shell and tools: Debian 12's static busybox. Fetched
/// like the kernels rather than installed, because `busybox-static`
/// conflicts with the `busybox` package many systems have (initramfs-tools
/// recommends it).
pub const BUSYBOX: Pin = Pin {
    package: "busybox-static",
    version: "1:1.35.0-4+deb12u1+b1",
    sha256: "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744",
};
const BUSYBOX_SUITE: &str = "bookworm";

/// The suites the private configuration knows, each with its `-security`.
const SUITES: &[&str] = &["bullseye", "bookworm", "trixie"];
const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Whether `name` is a cloud kernel image of the family `label` (the ABI
/// part varies: `linux-image-5.10.0-46-cloud-amd64`,
/// `linux-image-6.12.118+deb13-cloud-amd64`). Backports such as
/// `linux-image-6.1.0-0.deb11.50-cloud-amd64` are not the family.
fn in_family(label: &str, name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(abi) = name
        .strip_prefix("linux-image-")
        .and_then(|rest| rest.strip_suffix("-cloud-amd64"))
    else {
        return false;
    };
    match label {
        "5.10" => abi.strip_prefix("5.10.0-").is_some_and(digits),
        "6.1" => abi.strip_prefix("6.1.0-").is_some_and(digits),
        "6.12" => abi
            .strip_prefix("6.12.")
            .and_then(|rest| rest.split_once("+deb13"))
            .is_some_and(|(patch, respin)| {
                digits(patch) && (respin.is_empty() || respin.strip_prefix('.').is_some_and(digits))
            }),
        _ => false,
    }
}

/// apt with a configuration of its own in `dir`.
pub struct PrivateApt {
    dir: PathBuf,
    updated: bool,
}

impl PrivateApt {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            updated: false,
        }
    }

    /// The `-o` options that point apt at `dir` for everything that is not
    /// configuration (proxies and the like in /etc/apt/apt.conf.d still
    /// apply).
    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        let mut options = vec![
            format!("Dir::Etc::SourceList={d}/sources.list"),
            format!("Dir::Etc::SourceParts={d}/empty"),
            format!("Dir::Etc::PreferencesParts={d}/empty"),
            format!("Dir::Etc::Preferences={d}/empty/none"),
            format!("Dir::State={d}/state"),
            format!("Dir::State::Status={d}/state/status"),
            format!("Dir::Cache={d}/cache"),
            "APT::Architecture=amd64".to_owned(),
            "APT::Architectures::=amd64".to_owned(),
            // The files are root's, in a directory _apt may not enter.
            "APT::Sandbox::User=root".to_owned(),
        ];
        // Only the Packages indices: no AppStream metadata or icons.
        for target in [
            "DEP-11",
            "DEP-11-icons",
            "DEP-11-icons-small",
            "DEP-11-icons-hidpi",
            "DEP-11-icons-large",
            "DEP-11-icons-large-hidpi",
        ] {
            options.push(format!(
                "Acquire::IndexTargets::deb::{target}::DefaultEnabled=false"
            ));
        }
        options
            .into_iter()
            .flat_map(|o| ["-o".to_owned(), o])
            .collect()
    }

    fn prepare(&self) -> Result<()> {
        for sub in ["empty", "state/lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(self.dir.join(sub))
                .with_context(|| format!("creating {}", self.dir.join(sub).display()))?;
        }
        let status = self.dir.join("state/status");
        if !status.exists() {
            fs::write(&status, "").with_context(|| format!("creating {}", status.display()))?;
        }
        let mut sources = String::new();
        for suite in SUITES {
            sources.push_str(&format!(
                "deb [signed-by={KEYRING}] {MIRROR} {suite} main\n\
                 deb [signed-by={KEYRING}] {SECURITY_MIRROR} {suite}-security main\n"
            ));
        }
        let path = self.dir.join("sources.list");
        if fs::read_to_string(&path).ok().as_deref() != Some(sources.as_str()) {
            fs::write(&path, sources).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// `apt-get update` in the private configuration, once per run.
    pub fn update(&mut self) -> Result<()> {
        if self.updated {
            return Ok(());
        }
        self.prepare()?;
        println!("xtask: running {}", self.display("-q update"));
        let status = Command::new("apt-get")
            .args(self.options())
            .args(["-q", "update"])
            .stdin(Stdio::null())
            .status()
            .context("cannot start apt-get")?;
        ensure!(
            status.success(),
            "apt-get update in the private configuration for bullseye/bookworm/trixie failed ({status})"
        );
        self.updated = true;
        Ok(())
    }

    /// `apt-get ARGS` as printed: the `-o` options, which only point into
    /// the private directory, are summarised.
    fn display(&self, args: &str) -> String {
        format!("apt-get -o Dir::...={}/... {args}", self.dir.display())
    }

    fn cache(&self, args: &[&str]) -> Result<String> {
        let mut argv: Vec<String> = self.options();
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        probe("apt-cache", &argv).with_context(|| format!("apt-cache {} failed", args.join(" ")))
    }

    /// Downloads `pin` into `dir` (an empty directory) and returns the file.
    fn download(&mut self, pin: &Pin, dir: &Path) -> Result<PathBuf> {
        self.update()?;
        let spec = format!("{}={}", pin.package, pin.version);
        println!(
            "xtask: running (cd {} && {})",
            dir.display(),
            self.display(&format!("-q download {spec}"))
        );
        let mut argv = self.options();
        argv.extend(["-q", "download", &spec].map(str::to_owned));
        let status = Command::new("apt-get")
            .args(&argv)
            .current_dir(dir)
            .stdin(Stdio::null())
            .status()
            .context("cannot start apt-get")?;
        if !status.success() {
            bail!(
                "`apt-get download {spec}` failed ({status}). If Debian no longer has this version, \
                 run `cargo xtask kernel-matrix --resolve` and update the pins in \
                 xtask/src/kernel_matrix/packages.rs"
            );
        }
        let mut debs = fs::read_dir(dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "deb"));
        let deb = debs
            .next()
            .with_context(|| format!("apt-get download {spec} left no .deb"))?;
        Ok(deb)
    }

    /// The newest version of each family, as pins to paste into this file.
    pub fn resolve(&mut self) -> Result<String> {
        self.update()?;
        let names = self.cache(&["pkgnames", "linux-image-"])?;
        let mut out = String::new();
        for kernel in KERNELS {
            let candidates: Vec<&str> = names
                .lines()
                .map(str::trim)
                .filter(|name| in_family(kernel.label, name))
                .collect();
            let pin = self
                .newest(&candidates, kernel.suite)?
                .with_context(|| format!("no {} cloud kernel in {}", kernel.label, kernel.suite))?;
            out.push_str(&format!("{} ({}): {}\n", kernel.label, kernel.suite, pin));
        }
        let busybox = self
            .newest(&[BUSYBOX.package], BUSYBOX_SUITE)?
            .context("no busybox-static in bookworm")?;
        out.push_str(&format!("busybox ({BUSYBOX_SUITE}): {busybox}\n"));
        Ok(out)
    }

    /// The newest version among `packages` in `suite` (or its -security),
    /// as `package version sha256`.
    fn newest(&self, packages: &[&str], suite: &str) -> Result<Option<String>> {
        if packages.is_empty() {
            return Ok(None);
        }
        let mut args = vec!["madison"];
        args.extend(packages);
        let madison = self.cache(&args)?;
        let mut best: Option<(String, String)> = None;
        for line in madison.lines() {
            // `pkg | version | http://... bullseye-security/main amd64 Packages`
            let fields: Vec<&str> = line.split('|').map(str::trim).collect();
            let [package, version, source] = fields[..] else {
                continue;
            };
            let in_suite = source.split_whitespace().nth(1).is_some_and(|dist| {
                let dist = dist.split('/').next().unwrap_or(dist);
                dist == suite || dist == format!("{suite}-security")
            });
            if !in_suite {
                continue;
            }
            let newer = match &best {
                None => true,
                Some((_, best_version)) => {
                    probe("dpkg", &["--compare-versions", version, "gt", best_version]).is_some()
                }
            };
            if newer {
                best = Some((package.to_owned(), version.to_owned()));
            }
        }
        let Some((package, version)) = best else {
            return Ok(None);
        };
        let record = self.cache(&["show", &format!("{package}={version}")])?;
        let sha256 = record
            .lines()
            .find_map(|line| line.strip_prefix("SHA256: "))
            .with_context(|| format!("no SHA256 for {package}={version}"))?;
        Ok(Some(format!(
            "{package} {version} sha256 {}",
            sha256.trim()
        )))
    }
}

/// The SHA-256 of `path`, hex.
fn sha256(path: &Path) -> Result<String> {
    let path_str = path.to_str().context("non-UTF-8 path")?;
    let out = probe("sha256sum", &["--", path_str])
        .with_context(|| format!("sha256sum {} failed", path.display()))?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .context("sha256sum printed nothing")
}

/// `debs/<package>_<version>_amd64.deb`, downloaded unless already there
/// with the pinned checksum.
pub fn fetch(apt: &mut PrivateApt, pin: &Pin, debs: &Path) -> Result<PathBuf> {
    let file = debs.join(format!(
        "{}_{}_amd64.deb",
        pin.package,
        pin.version.replace(':', "%3a")
    ));
    if file.is_file() && sha256(&file)? == pin.sha256 {
        println!(
            "xtask: kernel-matrix: {} {}: ok (cached)",
            pin.package, pin.version
        );
        return Ok(file);
    }
    let partial = debs.join(".partial");
    if partial.exists() {
        fs::remove_dir_all(&partial)?;
    }
    fs::create_dir_all(&partial)?;
    let downloaded = apt.download(pin, &partial)?;
    let actual = sha256(&downloaded)?;
    ensure!(
        actual == pin.sha256,
        "{} {}: SHA-256 {actual}, pinned {}",
        pin.package,
        pin.version,
        pin.sha256
    );
    fs::rename(&downloaded, &file)?;
    fs::remove_dir_all(&partial)?;
    Ok(file)
}

/// Extracts the members of `deb` that match the tar `patterns` into
/// `dest` (`dpkg-deb --fsys-tarfile | tar -x --wildcards`). Every pattern
/// must match something, or tar fails.
pub fn extract(deb: &Path, dest: &Path, patterns: &[&str]) -> Result<()> {
    fs::create_dir_all(dest)?;
    println!(
        "xtask: running dpkg-deb --fsys-tarfile {} | tar -x -C {} --wildcards {}",
        deb.display(),
        dest.display(),
        patterns.join(" ")
    );
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start dpkg-deb")?;
    let tar_status = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .arg("--wildcards")
        .args(patterns)
        .stdin(dpkg.stdout.take().expect("piped"))
        .status()
        .context("cannot start tar")?;
    let dpkg_status = dpkg.wait().context("waiting for dpkg-deb")?;
    ensure!(
        dpkg_status.success() && tar_status.success(),
        "extracting {} failed (dpkg-deb {dpkg_status}, tar {tar_status})",
        deb.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert!(in_family("5.10", "linux-image-5.10.0-46-cloud-amd64"));
        assert!(!in_family("5.10", "linux-image-5.10.0-46-amd64"));
        assert!(in_family("6.1", "linux-image-6.1.0-56-cloud-amd64"));
        assert!(!in_family(
            "6.1",
            "linux-image-6.1.0-0.deb11.50-cloud-amd64"
        ));
        assert!(!in_family("6.1", "linux-image-6.1-cloud-amd64"));
        assert!(in_family("6.12", "linux-image-6.12.118+deb13-cloud-amd64"));
        assert!(in_family(
            "6.12",
            "linux-image-6.12.115+deb13.1-cloud-amd64"
        ));
        assert!(!in_family("6.12", "linux-image-6.12.117+deb12-cloud-amd64"));
        assert!(!in_family("6.12", "linux-image-6.12-cloud-amd64"));
        assert!(!in_family(
            "6.12",
            "linux-image-6.12.118+deb13-cloud-amd64-dbg"
        ));
    }

    #[test]
    fn pins_are_in_their_family() {
        for kernel in KERNELS {
            assert!(in_family(kernel.label, kernel.pin.package), "{kernel:?}");
            assert_eq!(kernel.pin.sha256.len(), 64, "{kernel:?}");
        }
        assert_eq!(BUSYBOX.sha256.len(), 64);
    }
}
