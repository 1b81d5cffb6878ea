//! A real Prometheus server (Debian's `prometheus` package) in a lab
//! namespace, for the tests that scrape macdrop with it.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Stdio},
};

use anyhow::{Context as _, Result};

use crate::netns::NetNs;

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
