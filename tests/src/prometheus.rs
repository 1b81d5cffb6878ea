//! A real Prometheus server (Debian's `prometheus` package) in a lab
//! namespace, for the tests that scrape macdrop with it.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{netns::NetNs, wait::poll_until};

/// Starts `prometheus` in `ns` with `config`, its data and log
/// (`prometheus.log`) in `dir`, its web API on a free loopback port of
/// `ns`. Returns the process and the API's `ADDR:PORT`; the caller waits
/// for readiness and kills it.
pub fn spawn(ns: &NetNs, config: &Path, dir: &Path) -> Result<(Child, String)> {
    // A port free in the namespace (a fresh one: any port is).
    let port = ns
        .enter_thread(|| TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()))??
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let child = ns
        .command(&[
            "prometheus".to_owned(),
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={addr}"),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context(
            "cannot start prometheus: install Debian's prometheus package (cargo xtask setup)",
        )?;
    Ok((child, addr))
}

/// A running server with its files in a temporary directory: killed and
/// the directory removed on drop. Queried with `promtool query instant`
/// from the namespace.
pub struct Server {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Server {
    /// `prometheus` in `ns` with `config` (YAML), which may name files the
    /// caller keeps.
    pub fn start(ns: &NetNs, config: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "macdrop-prometheus-server-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("data"))?;
        let path = dir.join("prometheus.yml");
        std::fs::write(&path, config)?;
        match spawn(ns, &path, &dir) {
            Ok((child, addr)) => Ok(Self { child, addr, dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Scrapes `target` (`ADDR:PORT`, plain HTTP) every second as job
    /// `macdrop`, the job of the recording rules.
    pub fn scraping(ns: &NetNs, target: &str) -> Result<Self> {
        Self::start(
            ns,
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: macdrop\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
    }

    /// The value of `query`, if it has one now.
    pub fn value(&self, ns: &NetNs, query: &str) -> Option<String> {
        let url = format!("http://{}", self.addr);
        let out = ns
            .command(&["promtool", "query", "instant", "-o", "json", &url, query])
            .output()
            .ok()?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        json[0]["value"][1].as_str().map(str::to_owned)
    }

    /// Polls `query` until it is `want` or `timeout` passes; the last value.
    pub fn wait_for_value(
        &self,
        ns: &NetNs,
        query: &str,
        want: &str,
        timeout: Duration,
    ) -> Option<String> {
        poll_until(
            timeout,
            || Ok(self.value(ns, query)),
            |v| v.as_deref() == Some(want),
        )
        .unwrap_or(None)
    }

    /// Its web API's `ADDR:PORT`, on the namespace's loopback.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Its log, to show when a query does not come out.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
