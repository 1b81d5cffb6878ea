//! `macdrop diagnose` and `macdrop status` run in a lab namespace, for the
//! tests that check their findings: diagnose started with its window open
//! and finished with its output, status run once.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use macdrop_tests::{
    macdrop::{self, READY_TIMEOUT, macdrop_bin},
    netns::NetNs,
};
use serde_json::Value;

use super::SETTLE;

/// What diagnose prints on stderr once attached, when the window opens.
const WINDOW_OPEN: &str = "macdrop: diagnosing for ";

/// A running `macdrop diagnose`, whose window is open.
pub struct Diagnosis {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished diagnosis printed.
pub struct Done {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Done {
    pub fn json(&self) -> Value {
        macdrop_tests::schema::parse(macdrop_tests::schema::Output::Diagnose, &self.stdout)
            .unwrap_or_else(|e| {
                panic!(
                    "diagnose printed no JSON ({e}): {}\nstderr: {}",
                    self.stdout, self.stderr
                )
            })
    }
}

impl Diagnosis {
    /// Starts `macdrop diagnose ARGS` in `ns`; returns once the window is
    /// open (everything attached), so frames sent from now on count.
    pub fn start(ns: &NetNs, args: &[&str]) -> Self {
        let bin = macdrop_bin();
        let mut argv = vec![bin.to_str().unwrap(), "diagnose"];
        argv.extend(args);
        let mut child = ns
            .command(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start macdrop diagnose");
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let (ready_tx, ready): (_, Receiver<()>) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.starts_with(WINDOW_OPEN) {
                    let _ = ready_tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut d = Self {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        if ready.recv_timeout(READY_TIMEOUT).is_err() {
            let _ = d.child.kill();
            let done = d.finish();
            panic!(
                "diagnose never opened its window ({}); stderr:\n{}",
                done.status, done.stderr
            );
        }
        d
    }

    /// Waits for the window to close and the findings to be printed.
    pub fn finish(mut self) -> Done {
        let deadline = Instant::now() + SETTLE + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("diagnose did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Done {
            status,
            stdout: self.stdout.take().unwrap().join().unwrap(),
            stderr: self.stderr.take().unwrap().join().unwrap(),
        }
    }
}

impl Drop for Diagnosis {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn ids(report: &Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect()
}

pub fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {report:#}"))
}

pub fn interface<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name && i["gone"] == false)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

/// How long `macdrop status` may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// `macdrop status --format json` in `ns`: exit 0 and the schema's shape.
pub fn status_json(ns: &NetNs) -> Value {
    let out = macdrop::run(ns, &["status", "--format", "json"], STATUS_TIMEOUT).unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    macdrop_tests::schema::parse(macdrop_tests::schema::Output::Status, &out.stdout)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// `status`'s findings as (id, interface), in its order.
pub fn status_ids(status: &Value) -> Vec<(String, String)> {
    status["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                f["interface"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
