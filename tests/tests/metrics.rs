//! The Prometheus exporter (`macdrop watch --metrics`), tested for real:
//! the scraped text passes `promtool check metrics` and carries the exact
//! counts of the frames sent; a real Prometheus server scrapes macdrop in a
//! lab and answers PromQL with those counts (and loads the alert rules,
//! and evaluates every dashboard query); the HTTP endpoint's routes and
//! limits; bind errors; and the shipped alert rules and Grafana dashboard
//! (`deploy/`), which must use only metric names macdrop exports.
//!
//! Everything listens on the loopback of a throwaway lab namespace, so the
//! default port (9815) is free in each test and nothing is reachable from
//! outside. Needs `promtool` and `prometheus` (Debian's `prometheus`
//! package, installed by `cargo xtask setup`).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use common::SETTLE;
use macdrop_tests::{
    btf::KernelBtf,
    frames::{BROADCAST, ipv4_udp, mac_to_string},
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE,
        peer_ipv4, peer_mac, port_mac,
    },
    macdrop::{self, FrameCounts, Macdrop},
    netns::NetNs,
    prometheus::Server,
    sender::RawSender,
    wait::poll_until,
};

/// Where `--metrics` without a value listens.
const METRICS_ADDR: &str = "127.0.0.1:9815";

/// How long a Prometheus server may take to start and to scrape.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

/// The frames peer 1 sends into p1: own, foreign MAC to the host's IP,
/// foreign MAC to a foreign IP, broadcast.
const OWN: u64 = 3;
const HOST_IP_WRONG_MAC: u64 = 5;
const FOREIGN_ELSEWHERE: u64 = 2;
const BCAST: u64 = 4;

fn send_frames(lab: &BridgeLab) {
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    let (src, sip) = (peer_mac(1), peer_ipv4(1));
    let n = |c: u64| c as usize;
    tx.send(&ipv4_udp(BRIDGE_MAC, src, sip, BRIDGE_IPV4), n(OWN))
        .unwrap();
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, BRIDGE_IPV4),
        n(HOST_IP_WRONG_MAC),
    )
    .unwrap();
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4),
        n(FOREIGN_ELSEWHERE),
    )
    .unwrap();
    tx.send(&ipv4_udp(BROADCAST, src, sip, BRIDGE_IPV4), n(BCAST))
        .unwrap();
}

fn want_p1() -> FrameCounts {
    FrameCounts {
        own: OWN,
        broadcast: BCAST,
        foreign_unicast: HOST_IP_WRONG_MAC + FOREIGN_ELSEWHERE,
        host_ip_wrong_mac: HOST_IP_WRONG_MAC,
        ..FrameCounts::default()
    }
    .with_total()
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

// ---- HTTP, by hand ---------------------------------------------------------

/// An HTTP response as read off the wire.
#[derive(Debug)]
struct HttpResponse {
    status: u16,
    /// Lower-cased names.
    headers: BTreeMap<String, String>,
    body: String,
}

/// A TCP connection made from inside `ns` (the socket belongs to `ns`).
fn connect(ns: &NetNs, addr: &str) -> Result<TcpStream> {
    let addr: SocketAddr = addr.parse()?;
    let stream = ns
        .enter_thread(|| TcpStream::connect(addr))?
        .with_context(|| format!("connect to {addr} in {}", ns.name()))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(stream)
}

/// Sends `request` (raw bytes) and reads the response until the server
/// closes the connection (HTTP/1.0, so neither side keeps it alive).
fn exchange(ns: &NetNs, addr: &str, request: &str) -> Result<HttpResponse> {
    let mut stream = connect(ns, addr)?;
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {request:?}"))?;
    let raw = String::from_utf8(raw).context("response is not UTF-8")?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {raw:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

fn request(ns: &NetNs, addr: &str, method: &str, path: &str) -> Result<HttpResponse> {
    exchange(
        ns,
        addr,
        &format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
    )
}

fn get(ns: &NetNs, addr: &str, path: &str) -> Result<HttpResponse> {
    request(ns, addr, "GET", path)
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- The Prometheus text format --------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .with_context(|| format!("no value in {rest:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("dangling escape in {s:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => bail!("unterminated value in {s:?}"),
            }
        };
        out.insert(key.to_owned(), value);
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    Ok(out)
}

fn parse_samples(text: &str) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("no value: {line:?}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (
                name,
                parse_labels(labels.strip_suffix('}').context("no closing brace")?)?,
            ),
            None => (series, BTreeMap::new()),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value: value
                .parse()
                .with_context(|| format!("value of {line:?}"))?,
        });
    }
    Ok(out)
}

/// A scrape of /metrics, parsed.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn take(ns: &NetNs) -> Result<Self> {
        let response = get(ns, METRICS_ADDR, "/metrics")?;
        ensure!(response.status == 200, "GET /metrics: {response:?}");
        let samples = parse_samples(&response.body)?;
        Ok(Self {
            text: response.body,
            samples,
        })
    }

    /// The value of the one sample named `name` whose labels include
    /// `labels`; None if there is none, an error if several.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<Option<f64>> {
        let matching: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        match matching.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.value)),
            many => bail!(
                "{} samples of {name} match {labels:?}: {many:?}",
                many.len()
            ),
        }
    }

    /// Metric names that have samples.
    fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }
}

/// The counters of one interface in a scrape, in JSON's shape.
fn scraped_frames(scrape: &Scrape, netns: &str, iface: &str) -> Result<FrameCounts> {
    let get = |name: &str, class: Option<&str>| -> Result<u64> {
        let mut labels = vec![("netns", netns), ("interface", iface)];
        labels.extend(class.map(|c| ("class", c)));
        Ok(scrape
            .value(name, &labels)?
            .with_context(|| format!("no {name} {labels:?}"))? as u64)
    };
    let class = |c| get("macdrop_frames_total", Some(c));
    Ok(FrameCounts {
        own: class("own")?,
        broadcast: class("broadcast")?,
        multicast: class("multicast")?,
        foreign_unicast: class("foreign_unicast")?,
        runt: class("runt")?,
        host_ip_wrong_mac: get("macdrop_host_ip_wrong_mac_frames_total", None)?,
        stale_mac: get("macdrop_stale_mac_frames_total", None)?,
        total: 0,
    }
    .with_total())
}

/// Polls /metrics until `done` holds for a scrape; returns the last one.
fn scrape_until(ns: &NetNs, mut done: impl FnMut(&Scrape) -> bool) -> Result<Scrape> {
    poll_until(SETTLE, || Scrape::take(ns), |s| done(s))
}

fn run_promtool(args: &[&str], stdin: Option<&str>) -> Result<(bool, String)> {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run promtool: install Debian's prometheus package (cargo xtask setup)")?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// Spawns macdrop with the metrics endpoint on its default address in the
/// lab's host namespace.
fn spawn_with_metrics(lab: &BridgeLab) -> Macdrop {
    let macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE, "--metrics"]).unwrap();
    assert!(
        macdrop.stderr().contains(&format!(
            "macdrop: serving metrics on http://{METRICS_ADDR}/metrics\n"
        )),
        "{}",
        macdrop.stderr()
    );
    macdrop
}

// ---- The scraped text ------------------------------------------------------

/// The scrape passes `promtool check metrics` (format and lint), and every
/// counter equals what macdrop's JSON says, down to the frame.
#[test]
fn the_scrape_passes_promtool_and_counts_exactly() {
    let lab = BridgeLab::new(2).unwrap();
    let mut macdrop = spawn_with_metrics(&lab);
    send_frames(&lab);
    let report = macdrop.settle(|r| r.frames("p1") == Some(want_p1()), SETTLE);
    assert_eq!(report.frames("p1"), Some(want_p1()));

    let ns = lab.host();
    let netns = ns.inode().to_string();
    // Right after the load, the server may still be closing wrk's
    // connections and turn a scrape away (the cap): poll until it answers.
    let scrape = poll_until(
        SETTLE,
        || Ok::<_, anyhow::Error>(Scrape::take(ns).ok()),
        |s| {
            s.as_ref()
                .is_some_and(|s| scraped_frames(s, &netns, "p1").is_ok_and(|f| f == want_p1()))
        },
    )
    .unwrap()
    .expect("/metrics answers again after the load");
    assert_eq!(scraped_frames(&scrape, &netns, "p1").unwrap(), want_p1());

    let (ok, output) = run_promtool(&["check", "metrics"], Some(&scrape.text)).unwrap();
    assert!(
        ok && output.trim().is_empty(),
        "promtool check metrics: {output}\n{}",
        scrape.text
    );

    // Every interface of the JSON report, every counter.
    let kernel = KernelBtf::read().unwrap();
    for iface in &report.interfaces {
        let name = iface.name.as_str();
        let id = [("netns", netns.as_str()), ("interface", name)];
        assert_eq!(
            scraped_frames(&scrape, &netns, name).unwrap(),
            iface.frames,
            "{name}"
        );
        // Confirmed drops where the kernel's BTF has drop reasons.
        assert_eq!(iface.kernel_drops.is_some(), kernel.drop_reasons, "{name}");
        for (reason, n) in iface.kernel_drops.iter().flatten() {
            let mut labels = id.to_vec();
            labels.push(("reason", reason));
            assert_eq!(
                scrape.value("macdrop_kernel_drops_total", &labels).unwrap(),
                Some(*n as f64),
                "{name} {reason}"
            );
        }
        assert_eq!(
            scrape
                .value("macdrop_kernel_rx_otherhost_dropped_total", &id)
                .unwrap(),
            iface.rx_otherhost_dropped_since_attach.map(|n| n as f64),
            "{name}"
        );
        assert_eq!(
            scrape.value("macdrop_promiscuity", &id).unwrap(),
            Some(f64::from(iface.promiscuity)),
            "{name}"
        );
        assert_eq!(
            scrape.value("macdrop_interface_gone", &id).unwrap(),
            Some(0.0)
        );
        let mut info = id.to_vec();
        let hook = iface.hook.clone().unwrap_or_default();
        let master = iface.master.clone().unwrap_or_default();
        info.extend([
            ("role", if name == BRIDGE { "bridge" } else { "port" }),
            ("mac", iface.mac.as_str()),
            ("hook", hook.as_str()),
            ("master", master.as_str()),
            // The lab's bridge has a MAC set at creation; ports get none.
            ("addr_assign_type", if name == BRIDGE { "set" } else { "" }),
        ]);
        assert_eq!(
            scrape.value("macdrop_interface_info", &info).unwrap(),
            Some(1.0),
            "{name}: {info:?}"
        );
    }
    assert_eq!(
        report.interface("p1").unwrap().mac,
        mac_to_string(&port_mac(1))
    );
    // A MAC is a label of the info metric only, never of a counter.
    for s in &scrape.samples {
        if s.labels.contains_key("mac") {
            assert_eq!(s.name, "macdrop_interface_info", "{s:?}");
        }
    }
    assert_eq!(
        scrape
            .value(
                "macdrop_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            )
            .unwrap(),
        Some(1.0)
    );
    // This machine has no DMI tables: no hypervisor.
    let dmi = std::path::Path::new("/sys/class/dmi/id/sys_vendor").exists();
    if !dmi {
        assert_eq!(
            scrape
                .value("macdrop_host_info", &[("hypervisor", "")])
                .unwrap(),
            Some(1.0)
        );
    }
    macdrop.stop().unwrap();
}

/// A port that disappears keeps its final counters, marked gone.
#[test]
fn a_gone_port_keeps_its_final_counters() {
    let lab = BridgeLab::new(2).unwrap();
    let mut macdrop = spawn_with_metrics(&lab);
    send_frames(&lab);
    macdrop.settle(|r| r.frames("p1") == Some(want_p1()), SETTLE);
    lab.remove_port(1).unwrap();
    macdrop
        .wait_for_event(|e| e.kind == "gone" && e.interface == "p1", SETTLE)
        .unwrap();
    let ns = lab.host();
    let netns = ns.inode().to_string();
    let id = [("netns", netns.as_str()), ("interface", "p1")];
    let scrape = scrape_until(ns, |s| {
        s.value("macdrop_interface_gone", &id).ok() == Some(Some(1.0))
    })
    .unwrap();
    assert_eq!(
        scrape.value("macdrop_interface_gone", &id).unwrap(),
        Some(1.0)
    );
    assert_eq!(scraped_frames(&scrape, &netns, "p1").unwrap(), want_p1());
    assert_eq!(
        scrape.value("macdrop_promiscuity", &id).unwrap(),
        None,
        "no state for a device that is gone"
    );
    macdrop.stop().unwrap();
}

// ---- A real Prometheus -----------------------------------------------------

/// A Prometheus server in a namespace, on its loopback, with a temporary
/// configuration and TSDB; killed and removed on drop.
struct Prometheus<'a> {
    ns: &'a NetNs,
    server: Server,
}

impl<'a> Prometheus<'a> {
    /// Scrapes `target` every second, loads `rules`, and waits until ready.
    fn start(ns: &'a NetNs, target: &str, rules: &Path) -> Result<Self> {
        Self::start_with(ns, &format!("      - targets: ['{target}']\n"), rules)
    }

    /// Like `start`, with the job's `static_configs` entries as given
    /// (several targets, each with its labels).
    fn start_with(ns: &'a NetNs, static_configs: &str, rules: &Path) -> Result<Self> {
        let mut server = Server::start(
            ns,
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: macdrop\n    static_configs:\n{static_configs}",
                rules = rules.display()
            ),
        )?;
        let ready = poll_until(
            PROMETHEUS_TIMEOUT,
            || Ok(get(ns, server.addr(), "/-/ready").map(|r| r.status).ok()),
            |status| *status == Some(200),
        )?;
        if ready != Some(200) {
            bail!("prometheus not ready: {}", server.log());
        }
        if let Some(status) = server.exited()? {
            bail!("prometheus exited ({status}): {}", server.log());
        }
        Ok(Self { ns, server })
    }

    fn log(&self) -> String {
        self.server.log()
    }

    /// GET an API path; the JSON `data`, or an error with Prometheus's.
    fn api(&self, path: &str) -> Result<serde_json::Value> {
        let response = get(self.ns, self.server.addr(), path)?;
        let json: serde_json::Value = serde_json::from_str(&response.body)
            .with_context(|| format!("{path}: {}", response.body))?;
        ensure!(
            response.status == 200 && json["status"] == "success",
            "{path}: {} {}",
            response.status,
            response.body
        );
        Ok(json["data"].clone())
    }

    /// An instant query: (labels, value) per series.
    fn query(&self, promql: &str) -> Result<Vec<(serde_json::Value, String)>> {
        let data = self.api(&format!("/api/v1/query?query={}", urlencode(promql)))?;
        let result = data["result"].as_array().cloned().unwrap_or_default();
        Ok(result
            .into_iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap_or_default().to_owned();
                (r["metric"].clone(), value)
            })
            .collect())
    }

    /// The single value of an instant query, or None while it has no result.
    fn value(&self, promql: &str) -> Result<Option<String>> {
        let result = self.query(promql)?;
        ensure!(result.len() <= 1, "{promql}: several series: {result:?}");
        Ok(result.into_iter().next().map(|(_, v)| v))
    }

    /// Polls `promql` until it is `want`; returns the last value.
    fn wait_for_value(&self, promql: &str, want: &str) -> Option<String> {
        poll_until(
            PROMETHEUS_TIMEOUT,
            || self.value(promql),
            |v| v.as_deref() == Some(want),
        )
        .unwrap_or_else(|e| panic!("{promql}: {e:#}\n{}", self.log()))
    }
}

/// Grafana's variables, replaced so the dashboard's queries run as PromQL:
/// each by its "All" value. A variable left out would stay a regex that
/// matches nothing, and `the_dashboard_keys...` lists every one.
fn as_promql(expr: &str) -> String {
    let promql = expr
        .replace("$__rate_interval", "1m")
        .replace("$node", ".*")
        .replace("$instance", ".*")
        .replace("$netns", ".*")
        .replace("$interface", ".*");
    assert!(
        !promql.contains('$'),
        "a variable as_promql does not know: {expr}"
    );
    promql
}

/// A real Prometheus scrapes macdrop every second and answers PromQL with
/// the exact frame counts; the shipped alert rules load and evaluate, the
/// host_ip_wrong_mac alert goes pending on the port, and every query of the
/// Grafana dashboard runs.
#[test]
fn prometheus_scrapes_the_exact_counts() {
    let lab = BridgeLab::new(1).unwrap();
    let mut macdrop = spawn_with_metrics(&lab);
    let rules = repo_path("deploy/prometheus/macdrop.rules.yml");
    let prometheus = Prometheus::start(lab.host(), METRICS_ADDR, &rules).unwrap();

    let p1 = r#"job="macdrop",interface="p1""#;
    let wrong = format!("macdrop_host_ip_wrong_mac_frames_total{{{p1}}}");
    // Scraped before any frame: the alert needs an increase, not a start.
    assert_eq!(prometheus.wait_for_value(&wrong, "0").as_deref(), Some("0"));
    assert_eq!(
        prometheus.value(r#"up{job="macdrop"}"#).unwrap().as_deref(),
        Some("1")
    );

    send_frames(&lab);
    let report = macdrop.settle(|r| r.frames("p1") == Some(want_p1()), SETTLE);
    assert_eq!(report.frames("p1"), Some(want_p1()));

    let n = |v: u64| v.to_string();
    assert_eq!(
        prometheus
            .wait_for_value(&wrong, &n(HOST_IP_WRONG_MAC))
            .as_deref(),
        Some(n(HOST_IP_WRONG_MAC).as_str())
    );
    for (class, want) in [
        ("own", OWN),
        ("broadcast", BCAST),
        ("multicast", 0),
        ("foreign_unicast", HOST_IP_WRONG_MAC + FOREIGN_ELSEWHERE),
        ("runt", 0),
    ] {
        let q = format!(r#"macdrop_frames_total{{{p1},class="{class}"}}"#);
        assert_eq!(prometheus.value(&q).unwrap(), Some(n(want)), "{q}");
    }
    let total = format!("sum(macdrop_frames_total{{{p1}}})");
    assert_eq!(
        prometheus.value(&total).unwrap(),
        Some(n(want_p1().total)),
        "{total}"
    );
    // The kernel's confirmation, as macdrop's JSON has it.
    let drops = report.interface("p1").unwrap().kernel_drops.clone();
    if drops.is_none() {
        assert!(
            !KernelBtf::read().unwrap().drop_reasons,
            "no drops in {report:?}"
        );
        macdrop_tests::skip::part(
            "metrics: the kernel's confirmed drops through Prometheus",
            "this kernel's BTF has no enum skb_drop_reason",
        );
    }
    for (reason, count) in drops.into_iter().flatten() {
        let q = format!(r#"macdrop_kernel_drops_total{{{p1},reason="{reason}"}}"#);
        let want = Some(n(count));
        assert_eq!(prometheus.wait_for_value(&q, &n(count)), want, "{q}");
    }

    // The rules: all nine evaluate without error...
    let healthy = poll_until(
        PROMETHEUS_TIMEOUT,
        || {
            let data = prometheus.api("/api/v1/rules")?;
            let rules: Vec<(String, String)> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or_default().to_owned(),
                        r["health"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            Ok(rules)
        },
        |rules| rules.len() == 9 && rules.iter().all(|(_, h)| h == "ok"),
    )
    .unwrap();
    assert!(
        healthy.len() == 9 && healthy.iter().all(|(_, h)| h == "ok"),
        "{healthy:?}\n{}",
        prometheus.log()
    );
    // ...and the incident's alert is pending on p1 (it fires after 5 min).
    let alerts = poll_until(
        PROMETHEUS_TIMEOUT,
        || prometheus.api("/api/v1/alerts"),
        |data| {
            data["alerts"].as_array().into_iter().flatten().any(|a| {
                a["labels"]["alertname"] == "MacdropHostIpWrongMac"
                    && a["labels"]["interface"] == "p1"
                    && a["state"] == "pending"
            })
        },
    )
    .unwrap();
    let names: BTreeSet<&str> = alerts["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    assert!(names.contains("MacdropHostIpWrongMac"), "{alerts}");
    assert!(
        !names.contains("MacdropPromiscuousStuck") && !names.contains("MacdropDown"),
        "a bridge port held by its bridge is not stuck, macdrop is up: {alerts}"
    );

    // Every dashboard query is valid PromQL and has data here.
    let dashboard = dashboard();
    for expr in dashboard_exprs(&dashboard) {
        let promql = as_promql(&expr);
        let result = prometheus
            .query(&promql)
            .unwrap_or_else(|e| panic!("dashboard query {expr:?}: {e:#}"));
        assert!(!result.is_empty(), "dashboard query {expr:?} has no data");
    }
    macdrop.stop().unwrap();
}

// ---- The HTTP endpoint -----------------------------------------------------

/// /healthz, /metrics, 404 elsewhere, 405 for other methods, 431 for
/// oversized headers.
#[test]
fn routes_methods_and_header_limits() {
    let lab = BridgeLab::new(1).unwrap();
    let mut macdrop = spawn_with_metrics(&lab);
    let ns = lab.host();
    // 503 until the first report, then 200.
    let health = poll_until(
        SETTLE,
        || get(ns, METRICS_ADDR, "/healthz"),
        |r| r.status == 200,
    )
    .unwrap();
    assert_eq!(health.status, 200, "{health:?}");
    assert!(health.body.starts_with("ok: last report "), "{health:?}");

    let metrics = get(ns, METRICS_ADDR, "/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let head = request(ns, METRICS_ADDR, "HEAD", "/metrics").unwrap();
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    for path in ["/", "/metric", "/metrics/x", "/healthz/", "/api/v1/query"] {
        let r = get(ns, METRICS_ADDR, path).unwrap();
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = request(ns, METRICS_ADDR, method, "/metrics").unwrap();
        assert_eq!(r.status, 405, "{method}: {r:?}");
        assert_eq!(r.headers["allow"], "GET, HEAD");
    }
    // Headers over 8 KiB in all.
    let big = exchange(
        ns,
        METRICS_ADDR,
        &format!(
            "GET /metrics HTTP/1.0\r\nX-Padding: {}\r\n\r\n",
            "x".repeat(9000)
        ),
    )
    .unwrap();
    assert_eq!(big.status, 431, "{big:?}");
    // More than 32 header fields.
    let many: String = (0..40).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let many = exchange(
        ns,
        METRICS_ADDR,
        &format!("GET /metrics HTTP/1.0\r\n{many}\r\n"),
    )
    .unwrap();
    assert_eq!(many.status, 431, "{many:?}");
    // The monitor went on meanwhile.
    macdrop.wait_for(|_| true, SETTLE).unwrap();
    macdrop.stop().unwrap();
}

/// At most 16 connections: the 17th is closed at once; a client that sends
/// no complete request is dropped after the 5 s header timeout; once they
/// are gone, requests are served again.
#[test]
fn connections_are_capped_and_slow_clients_dropped() {
    let lab = BridgeLab::new(1).unwrap();
    let macdrop = spawn_with_metrics(&lab);
    let ns = lab.host();
    let start = Instant::now();
    let mut idle: Vec<TcpStream> = (0..16)
        .map(|_| connect(ns, METRICS_ADDR).unwrap())
        .collect();
    // A slow client: half a request line.
    idle[0].write_all(b"GET /metr").unwrap();

    let mut extra = connect(ns, METRICS_ADDR).unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut buf = Vec::new();
    let refused_at = Instant::now();
    // EOF or a reset, either way no response, and well before the timeout.
    let _ = extra.read_to_end(&mut buf);
    assert!(buf.is_empty(), "the 17th connection was served: {buf:?}");
    assert!(
        refused_at.elapsed() < Duration::from_secs(3),
        "the 17th connection was kept {:?}",
        refused_at.elapsed()
    );

    // The slow one is dropped by the header timeout, not before.
    let mut buf = Vec::new();
    let n = idle[0].read_to_end(&mut buf);
    let after = start.elapsed();
    assert!(
        n.is_err() || buf.is_empty() || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
        "a slow client got {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(12)).contains(&after),
        "slow client dropped after {after:?}"
    );
    drop(idle);
    let again = poll_until(
        SETTLE,
        || get(ns, METRICS_ADDR, "/metrics").map(|r| r.status),
        |s| *s == 200,
    )
    .unwrap();
    assert_eq!(again, 200);
    macdrop.stop().unwrap();
}

// ---- Errors ----------------------------------------------------------------

/// An address in use, or not on this host: exit 3 before anything is
/// attached, one line naming the problem and the fix.
#[test]
fn bind_errors_exit_3_with_one_line() {
    let ns = NetNs::new().unwrap();
    let _holder = ns
        .enter_thread(|| TcpListener::bind(METRICS_ADDR))
        .unwrap()
        .unwrap();
    for (args, what) in [
        (&["watch", "--metrics"][..], "the address is already in use"),
        (
            &["watch", "--metrics", "192.0.2.77:9815"],
            "192.0.2.77 is not an address of this host's network namespace",
        ),
    ] {
        let out = macdrop::run(&ns, args, SETTLE).unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {out:?}");
        assert!(
            lines[0].starts_with("macdrop: cannot serve metrics on "),
            "{lines:?}"
        );
        assert!(lines[0].contains(what), "{lines:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
}

/// A malformed address is a usage error (exit 2), one line.
#[test]
fn a_malformed_address_is_a_usage_error() {
    let ns = NetNs::new().unwrap();
    for value in [
        "localhost:9815",
        "127.0.0.1",
        "9815",
        "127.0.0.1:70000",
        "::1:9815",
    ] {
        let out = macdrop::run(&ns, &["watch", "--metrics", value], SETTLE).unwrap();
        assert_eq!(out.status.code(), Some(2), "{value}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{value}: {out:?}");
        assert!(lines[0].contains("is not ADDR:PORT"), "{lines:?}");
    }
}

// ---- deploy/: the alert rules and the dashboard ----------------------------

/// `promtool check rules` passes, and so do the rules' unit tests (each
/// alert fires on its case, after its `for:`, and not on the normal case).
#[test]
fn the_alert_rules_pass_promtool() {
    let rules = repo_path("deploy/prometheus/macdrop.rules.yml");
    let tests = repo_path("deploy/prometheus/macdrop.rules.test.yml");
    let (ok, out) = run_promtool(&["check", "rules", rules.to_str().unwrap()], None).unwrap();
    assert!(ok && out.contains("SUCCESS: 9 rules found"), "{out}");
    let (ok, out) = run_promtool(&["test", "rules", tests.to_str().unwrap()], None).unwrap();
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

/// Every alert has a runbook_url whose section exists in docs/runbook.md,
/// under the documented placeholder base.
#[test]
fn every_alert_links_its_runbook_section() {
    let rules = std::fs::read_to_string(repo_path("deploy/prometheus/macdrop.rules.yml")).unwrap();
    let runbook = std::fs::read_to_string(repo_path("docs/runbook.md")).unwrap();
    // GitHub's anchors: the heading, lower-cased.
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::to_lowercase)
        .collect();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    let urls: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .map(|u| u.trim_matches('"'))
        .collect();
    assert_eq!(alerts.len(), 9, "{alerts:?}");
    assert_eq!(
        urls.len(),
        alerts.len(),
        "one runbook_url per alert: {urls:?}"
    );
    for (alert, url) in alerts.iter().zip(&urls) {
        let section = url
            .strip_prefix("https://macdrop.example/docs/runbook.md#")
            .unwrap_or_else(|| panic!("{alert}: {url}"));
        assert_eq!(section, alert.to_lowercase(), "{alert}: {url}");
        assert!(
            sections.contains(section),
            "no section {section} in docs/runbook.md"
        );
    }
}

/// The dashboard tells nodes and namespaces apart: `node` and `netns`
/// variables, and every per-interface query keyed by both, so same-named
/// bridges in different namespaces or on different nodes are not merged.
#[test]
fn the_dashboard_keys_interfaces_by_node_and_namespace() {
    let dashboard = dashboard();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(
        variables,
        ["datasource", "node", "instance", "netns", "interface"]
    );
    for expr in dashboard_exprs(&dashboard) {
        if expr.contains("interface=~") {
            assert!(
                expr.contains("node=~\"$node\"") && expr.contains("netns=~\"$netns\""),
                "{expr}"
            );
        }
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("by (") {
            let keys = &rest[at + 4..];
            let keys = &keys[..keys.find(')').unwrap()];
            if keys.contains("interface") {
                assert!(keys.contains("netns") && keys.contains("node"), "{expr}");
            }
            rest = &rest[at + 4..];
        }
    }
}

fn dashboard() -> serde_json::Value {
    let path = repo_path("deploy/grafana/macdrop.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression of the dashboard's panels.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("every target has an expr")
                .to_owned()
        })
        .collect()
}

/// Names starting with `macdrop_` in `text`.
fn macdrop_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("macdrop_") {
        let boundary = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if boundary {
            out.insert(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
    out
}

/// The dashboard parses, every panel has a query, and the dashboard and the
/// alert rules use only metric names a real scrape has; docs/metrics.md
/// documents every metric the scrape has.
#[test]
fn the_dashboard_and_rules_use_only_exported_metrics() {
    let dashboard = dashboard();
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 10, "{exprs:?}");
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel without a query: {}",
            panel["title"]
        );
    }
    let variables: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["definition"].as_str().map(str::to_owned))
        .collect();

    let lab = BridgeLab::new(2).unwrap();
    let mut macdrop = spawn_with_metrics(&lab);
    send_frames(&lab);
    macdrop.settle(|r| r.frames("p1") == Some(want_p1()), SETTLE);
    let scrape =
        scrape_until(lab.host(), |s| s.names().contains("macdrop_interface_info")).unwrap();
    let exported = scrape.names();

    let mut used = BTreeSet::new();
    for text in exprs.iter().chain(&variables) {
        used.extend(macdrop_names(text));
    }
    let rules = std::fs::read_to_string(repo_path("deploy/prometheus/macdrop.rules.yml")).unwrap();
    used.extend(macdrop_names(&rules));
    assert!(used.len() >= 8, "{used:?}");
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "not exported: {unknown:?}; exported: {exported:?}"
    );

    let doc = std::fs::read_to_string(repo_path("docs/metrics.md")).unwrap();
    let undocumented: Vec<&String> = exported
        .iter()
        .filter(|n| !doc.contains(&format!("`{n}")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/metrics.md does not document {undocumented:?}"
    );
    macdrop.stop().unwrap();
}

/// Hostile load with a real tool (wrk, on the lab's loopback, bounded in
/// time): 200 concurrent connections hammering /metrics for 5 seconds.
/// macdrop keeps counting frames sent meanwhile exactly, keeps answering
/// /metrics afterwards, and its memory stays bounded.
#[test]
fn wrk_with_200_connections_does_not_stop_counting() {
    let lab = BridgeLab::new(1).unwrap();
    let mut macdrop = spawn_with_metrics(&lab);
    let ns = lab.host();
    macdrop.wait_for(|_| true, SETTLE).unwrap();
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let rss_before = rss(macdrop.pid());
    let wrk = ns
        .command(&[
            "wrk",
            "-t",
            "2",
            "-c",
            "200",
            "-d",
            "5s",
            "--timeout",
            "2s",
            &format!("http://{METRICS_ADDR}/metrics"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk (cargo xtask setup installs it)");
    send_frames(&lab);
    let out = wrk.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "wrk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The frames sent during the load are all counted, in JSON and metrics.
    let report = macdrop.settle(|r| r.frames("p1") == Some(want_p1()), SETTLE);
    assert_eq!(report.frames("p1"), Some(want_p1()));
    let netns = ns.inode().to_string();
    // Right after the load, the server may still be closing wrk's
    // connections and turn a scrape away (the cap): poll until it answers.
    let scrape = poll_until(
        SETTLE,
        || Ok::<_, anyhow::Error>(Scrape::take(ns).ok()),
        |s| {
            s.as_ref()
                .is_some_and(|s| scraped_frames(s, &netns, "p1").is_ok_and(|f| f == want_p1()))
        },
    )
    .unwrap()
    .expect("/metrics answers again after the load");
    assert_eq!(scraped_frames(&scrape, &netns, "p1").unwrap(), want_p1());
    let rss_after = rss(macdrop.pid());
    assert!(
        rss_after <= rss_before + 16 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB under load"
    );
    macdrop.stop().unwrap();
}

// ---- MAC identity across a fleet (issue 18) --------------------------------

/// Node `k`'s address on the fleet's segment, where its macdrop serves.
fn fleet_addr(k: usize) -> String {
    format!("198.51.100.{}:9815", 10 + k)
}

/// The alerts of `name` active now (pending or firing), by their labels.
fn active(prometheus: &Prometheus, name: &str) -> Result<Vec<serde_json::Value>> {
    let data = prometheus.api("/api/v1/alerts")?;
    Ok(data["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == name)
        .cloned()
        .collect())
}

/// When Prometheus last evaluated the alert `name`.
fn last_evaluation(prometheus: &Prometheus, name: &str) -> Result<Option<std::time::SystemTime>> {
    let data = prometheus.api("/api/v1/rules")?;
    Ok(data["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .find(|r| r["name"] == name)
        .and_then(|r| r["lastEvaluation"].as_str().map(common::time_of)))
}

/// Three nodes (a lab each, with its own `node` label) scraped by one real
/// Prometheus: with three different bridge MACs the fleet rules stay
/// silent; once two more nodes take node 1's bridge MAC,
/// MacdropBridgeMacOnSeveralNodes names that MAC on 3 nodes and
/// MacdropBridgeMacChanged names the two nodes whose MAC changed.
#[test]
fn the_fleet_rules_find_one_bridge_mac_on_several_nodes() {
    use macdrop_tests::lab::links::{End, add_bridge, add_ipv4, add_veth, up};
    const NODES: usize = 3;
    let node_mac = |k: usize| [0x02, 0, 0, 0, 0x0b, k as u8];
    assert_eq!(node_mac(1), BRIDGE_MAC);
    // The segment the nodes' metrics are scraped over.
    let hub = NetNs::new().unwrap();
    add_bridge(&hub, "hub0", None).unwrap();
    add_ipv4(&hub, "hub0", "198.51.100.1".parse().unwrap()).unwrap();
    up(&hub, "hub0").unwrap();
    let labs: Vec<BridgeLab> = (0..NODES).map(|_| BridgeLab::new(1).unwrap()).collect();
    let mut static_configs = String::new();
    for (i, lab) in labs.iter().enumerate() {
        let k = i + 1;
        let host = lab.host();
        host.exec(&[
            "ip",
            "link",
            "set",
            BRIDGE,
            "address",
            &mac_to_string(&node_mac(k)),
        ])
        .unwrap();
        let hub_end = format!("n{k}");
        add_veth(
            End {
                ns: &hub,
                name: &hub_end,
                mac: None,
            },
            End {
                ns: host,
                name: "up0",
                mac: None,
            },
        )
        .unwrap();
        hub.exec(&["ip", "link", "set", &hub_end, "master", "hub0"])
            .unwrap();
        up(&hub, &hub_end).unwrap();
        add_ipv4(
            host,
            "up0",
            format!("198.51.100.{}", 10 + k).parse().unwrap(),
        )
        .unwrap();
        up(host, "up0").unwrap();
        static_configs.push_str(&format!(
            "      - targets: ['{}']\n        labels:\n          node: node{k}\n",
            fleet_addr(k)
        ));
    }
    let macdrops: Vec<Macdrop> = labs
        .iter()
        .enumerate()
        .map(|(i, lab)| {
            Macdrop::spawn(
                lab.host(),
                &["--bridge", BRIDGE, "--metrics", &fleet_addr(i + 1)],
            )
            .unwrap()
        })
        .collect();
    let rules = repo_path("deploy/prometheus/macdrop.rules.yml");
    let prometheus = Prometheus::start_with(&hub, &static_configs, &rules).unwrap();

    // Every node's bridge scraped, each with its own MAC...
    let bridges =
        r#"count(macdrop_interface_info{job="macdrop",role="bridge",addr_assign_type="set"})"#;
    assert_eq!(
        prometheus.wait_for_value(bridges, "3").as_deref(),
        Some("3")
    );
    let macs = r#"count(count by (mac) (macdrop_interface_info{job="macdrop",role="bridge"}))"#;
    assert_eq!(prometheus.value(macs).unwrap().as_deref(), Some("3"));
    let nodes = r#"count(count by (node) (macdrop_interface_info{job="macdrop",role="bridge"}))"#;
    assert_eq!(prometheus.value(nodes).unwrap().as_deref(), Some("3"));
    // ...and the rules evaluated on all of it: nothing active.
    let seen = std::time::SystemTime::now();
    for name in ["MacdropBridgeMacOnSeveralNodes", "MacdropBridgeMacChanged"] {
        let evaluated = poll_until(
            PROMETHEUS_TIMEOUT,
            || last_evaluation(&prometheus, name),
            |t| t.is_some_and(|t| t > seen),
        )
        .unwrap();
        assert!(
            evaluated.is_some_and(|t| t > seen),
            "{name} never evaluated"
        );
        assert_eq!(
            active(&prometheus, name).unwrap(),
            Vec::<serde_json::Value>::new(),
            "{name}"
        );
    }

    // Nodes 2 and 3 take node 1's MAC (a cloned image, a copied config).
    for lab in &labs[1..] {
        lab.host()
            .exec(&[
                "ip",
                "link",
                "set",
                BRIDGE,
                "address",
                &mac_to_string(&BRIDGE_MAC),
            ])
            .unwrap();
    }
    let dup = poll_until(
        PROMETHEUS_TIMEOUT,
        || active(&prometheus, "MacdropBridgeMacOnSeveralNodes"),
        |a| a.len() == 1 && a[0]["value"].as_str().is_some_and(|v| v.starts_with("3")),
    )
    .unwrap();
    assert_eq!(dup.len(), 1, "{dup:?}\n{}", prometheus.log());
    assert_eq!(dup[0]["labels"]["mac"], mac_to_string(&BRIDGE_MAC).as_str());
    assert!(
        dup[0]["value"].as_str().unwrap().starts_with("3"),
        "{dup:?}"
    );
    let changed = poll_until(
        PROMETHEUS_TIMEOUT,
        || active(&prometheus, "MacdropBridgeMacChanged"),
        |a| a.len() == 2,
    )
    .unwrap();
    let changed_nodes: BTreeSet<&str> = changed
        .iter()
        .filter_map(|a| a["labels"]["node"].as_str())
        .collect();
    assert_eq!(
        changed_nodes,
        BTreeSet::from(["node2", "node3"]),
        "{changed:?}"
    );
    for m in macdrops {
        m.stop().unwrap();
    }
}
