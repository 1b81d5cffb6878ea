//! The metrics endpoint behind `--web-config` (TLS and basic auth), tested
//! for real: a `macdrop watch --metrics --web-config` in a lab, a
//! certificate authority made at test time (rcgen; no private key is
//! committed), and a real HTTPS client (hyper over rustls) in the lab's
//! namespace. Right credentials over TLS get the metrics with the exact
//! frame counts; a wrong password, an unknown user and no credentials get
//! 401 with `WWW-Authenticate`; plain HTTP to the TLS port and a client
//! that does not trust the certificate get no answer; `/healthz` needs TLS
//! but no password; every kind of bad web config exits 2 with one line;
//! and a real Prometheus server scrapes the endpoint over TLS with basic
//! auth.
//!
//! Everything listens on the loopback of a throwaway lab namespace.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use common::SETTLE;
use headers::{Authorization, HeaderMapExt as _};
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, body::Bytes, header};
use hyper_util::rt::TokioIo;
use macdrop_tests::{
    frames::ipv4_udp,
    lab::{BRIDGE, BRIDGE_IPV4, BridgeLab, FOREIGN_MAC, PEER_IFACE, peer_ipv4, peer_mac},
    macdrop::{self, Macdrop},
    netns::NetNs,
    prometheus::Server,
    sender::RawSender,
    wait::poll_until,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject as _},
};
use tokio_rustls::TlsConnector;

/// Where `--metrics` without a value listens.
const METRICS_ADDR: &str = "127.0.0.1:9815";
const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse battery staple";
/// Frames to the bridge's IP with a foreign MAC that peer 1 sends.
const WRONG_MAC: usize = 7;

// ---- Certificates and the web config, made per test ------------------------

/// A directory of the test's files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "macdrop-metrics-auth-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.0.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, and a server certificate it signed for 127.0.0.1, in PEM.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn make_pki(name: &str) -> Result<Pki> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &ca)?;
    Ok(Pki {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The web config with TLS from `pki` and one user, its password hashed as
/// `htpasswd -B` would (bcrypt; cost 8 keeps the test quick).
fn web_config(dir: &Dir, pki: &Pki) -> Result<PathBuf> {
    dir.write("server.crt", &pki.cert)?;
    dir.write("server.key", &pki.key)?;
    let hash = bcrypt::hash(PASSWORD, 8)?;
    dir.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  {USER}: {hash}\n"
        ),
    )
}

// ---- A real HTTPS client ----------------------------------------------------

/// A client trusting only `ca`.
fn client(ca: &str) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert?)?;
    }
    // ring, as macdrop itself uses (no aws-lc build).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[derive(Debug)]
struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    body: String,
}

fn connect(ns: &NetNs) -> Result<TcpStream> {
    let stream = ns
        .enter_thread(|| TcpStream::connect(METRICS_ADDR))?
        .with_context(|| format!("connect to {METRICS_ADDR} in {}", ns.name()))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(stream)
}

/// `GET https://127.0.0.1:9815{path}` from inside `ns`, as `user:password`.
fn https_get(
    ns: &NetNs,
    config: &Arc<ClientConfig>,
    credentials: Option<(&str, &str)>,
    path: &str,
) -> Result<Answer> {
    let tcp = connect(ns)?;
    tcp.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::from_std(tcp)?;
        let server = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let tls = tokio::time::timeout(
            SETTLE,
            TlsConnector::from(Arc::clone(config)).connect(server, tcp),
        )
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        let mut request = Request::get(path)
            .header(header::HOST, METRICS_ADDR)
            .body(Empty::<Bytes>::new())?;
        if let Some((user, password)) = credentials {
            request
                .headers_mut()
                .typed_insert(Authorization::basic(user, password));
        }
        let response = tokio::time::timeout(SETTLE, sender.send_request(request))
            .await
            .context("no answer")??;
        let status = response.status().as_u16();
        let www_authenticate = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned());
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            www_authenticate,
            body: String::from_utf8(body.to_vec())?,
        })
    })
}

/// The value of the first sample of `name` whose labels include `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn spawn(lab: &BridgeLab, web: &Path) -> Result<Macdrop> {
    let web = web.to_str().context("path is not UTF-8")?;
    let macdrop = Macdrop::spawn(
        lab.host(),
        &["--bridge", BRIDGE, "--metrics", "--web-config", web],
    )?;
    let want = format!("macdrop: serving metrics on https://{METRICS_ADDR}/metrics\n");
    if !macdrop.stderr().contains(&want) {
        bail!("no {want:?} in {}", macdrop.stderr());
    }
    Ok(macdrop)
}

fn send_wrong_mac_frames(lab: &BridgeLab) {
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    let frame = ipv4_udp(FOREIGN_MAC, peer_mac(1), peer_ipv4(1), BRIDGE_IPV4);
    tx.send(&frame, WRONG_MAC).unwrap();
}

// ---- The tests --------------------------------------------------------------

/// Right credentials over TLS: 200 and the exact counts. Anything less:
/// 401 with a challenge, or no HTTP at all. The monitor keeps counting
/// through every refused attempt.
#[test]
fn only_authenticated_clients_over_tls_get_the_metrics() {
    let lab = BridgeLab::new(2).unwrap();
    let dir = Dir::new().unwrap();
    let pki = make_pki("macdrop").unwrap();
    let web = web_config(&dir, &pki).unwrap();
    let mut macdrop = spawn(&lab, &web).unwrap();
    let ns = lab.host();
    let trusting = client(&pki.ca).unwrap();
    send_wrong_mac_frames(&lab);

    let p1 = [r#"interface="p1""#];
    let metric = "macdrop_host_ip_wrong_mac_frames_total";
    let scraped = poll_until(
        SETTLE,
        || Ok(https_get(ns, &trusting, Some((USER, PASSWORD)), "/metrics").ok()),
        |a| {
            a.as_ref()
                .is_some_and(|a| sample(&a.body, metric, &p1).is_some_and(|v| v > 0.0))
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(scraped.status, 200, "{scraped:?}");
    assert_eq!(
        sample(&scraped.body, metric, &p1),
        Some(WRONG_MAC as f64),
        "{}",
        scraped.body
    );

    for (credentials, what) in [
        (Some((USER, "wrong password")), "wrong password"),
        (Some(("nobody", PASSWORD)), "unknown user"),
        (Some((USER, "")), "empty password"),
        (None, "no credentials"),
    ] {
        let answer = https_get(ns, &trusting, credentials, "/metrics").unwrap();
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        assert_eq!(
            answer.www_authenticate.as_deref(),
            Some(r#"Basic realm="macdrop""#),
            "{what}"
        );
        assert!(!answer.body.contains(metric), "{what}: {answer:?}");
    }
    // Every path but /healthz needs credentials, so a 404 tells nothing.
    let other = https_get(ns, &trusting, None, "/elsewhere").unwrap();
    assert_eq!(other.status, 401, "{other:?}");
    // /healthz: TLS, no password (probes carry none).
    let health = https_get(ns, &trusting, None, "/healthz").unwrap();
    assert_eq!(health.status, 200, "{health:?}");
    assert!(health.body.starts_with("ok: "), "{health:?}");

    // Plain HTTP to the TLS port: no HTTP answer, and the connection is
    // closed (not left to time out).
    let mut plain = connect(ns).unwrap();
    plain
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {METRICS_ADDR}\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    match plain.read_to_end(&mut raw) {
        Ok(_) => assert!(
            !raw.starts_with(b"HTTP/"),
            "plain HTTP answered: {:?}",
            String::from_utf8_lossy(&raw)
        ),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "closed, not timed out: {e}"
        ),
    }

    // A client trusting another CA: the handshake fails on its side.
    let stranger = client(&make_pki("stranger").unwrap().ca).unwrap();
    let refused = https_get(ns, &stranger, Some((USER, PASSWORD)), "/metrics")
        .expect_err("a client that does not trust the certificate got an answer");
    assert!(
        format!("{refused:#}").contains("UnknownIssuer"),
        "{refused:#}"
    );

    // Nothing lost: the monitor counted on, and still serves.
    send_wrong_mac_frames(&lab);
    let want = (2 * WRONG_MAC) as f64;
    let again = poll_until(
        SETTLE,
        || Ok(https_get(ns, &trusting, Some((USER, PASSWORD)), "/metrics").ok()),
        |a| {
            a.as_ref()
                .is_some_and(|a| sample(&a.body, metric, &p1) == Some(want))
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(sample(&again.body, metric, &p1), Some(want));
    let report = macdrop.settle(
        |r| {
            r.frames("p1")
                .is_some_and(|f| f.host_ip_wrong_mac == 2 * WRONG_MAC as u64)
        },
        SETTLE,
    );
    assert_eq!(
        report.frames("p1").map(|f| f.host_ip_wrong_mac),
        Some(2 * WRONG_MAC as u64)
    );
    macdrop.stop().unwrap();
}

/// Each kind of bad web config: exit 2 before anything is bound or
/// attached, one line naming the file and the problem, nothing on stdout.
#[test]
fn bad_web_configs_exit_2_with_one_line() {
    let ns = NetNs::new().unwrap();
    let dir = Dir::new().unwrap();
    let pki = make_pki("macdrop").unwrap();
    let good = web_config(&dir, &pki).unwrap();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    dir.write("other.key", &KeyPair::generate().unwrap().serialize_pem())
        .unwrap();
    dir.write("garbage.crt", "not a certificate\n").unwrap();
    dir.write("cut.crt", &pki.cert[..pki.cert.len() / 2])
        .unwrap();
    let tls = |cert: &str, key: &str| {
        format!("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    };
    let cases = [
        ("missing.yml", None, "cannot read it"),
        (
            "yaml.yml",
            Some("basic_auth_users: [\n".to_owned()),
            "line ",
        ),
        (
            "unknown.yml",
            Some("http_server_config:\n  http2: false\n".to_owned()),
            "unknown field `http_server_config`",
        ),
        (
            "plain.yml",
            Some(format!("basic_auth_users:\n  {USER}: {PASSWORD}\n")),
            "is not a bcrypt hash",
        ),
        (
            "nocert.yml",
            Some(tls("absent.crt", "server.key")),
            "cannot read cert_file",
        ),
        (
            "garbage.yml",
            Some(tls("garbage.crt", "server.key")),
            "holds no certificate",
        ),
        (
            "cut.yml",
            Some(tls("cut.crt", "server.key")),
            "is not PEM (a BEGIN line has no matching END line)",
        ),
        (
            "mismatch.yml",
            Some(tls("server.crt", "other.key")),
            "do not go together",
        ),
        (
            "nokey.yml",
            Some(tls("server.crt", "server.crt") + &format!("basic_auth_users:\n  a: {hash}\n")),
            "holds no PEM private key",
        ),
    ];
    for (name, text, what) in cases {
        let path = match text {
            Some(text) => dir.write(name, &text).unwrap(),
            None => dir.0.join(name),
        };
        let path = path.to_str().unwrap();
        let out = macdrop::run(&ns, &["watch", "--metrics", "--web-config", path], SETTLE).unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: {out:?}");
        assert!(
            lines[0].starts_with(&format!("macdrop: --web-config {path}: ")),
            "{name}: {lines:?}"
        );
        assert!(lines[0].contains(what), "{name}: want {what:?}: {lines:?}");
        assert!(out.stdout.is_empty(), "{name}: {out:?}");
    }
    // Without --metrics there is nothing to protect: a usage error.
    let good = good.to_str().unwrap();
    let out = macdrop::run(&ns, &["watch", "--web-config", good], SETTLE).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("--metrics"), "{out:?}");
}

// ---- A real Prometheus, over TLS with basic auth ----------------------------

/// A Prometheus server in `ns` scraping the endpoint with the CA and the
/// credentials in `dir`.
fn prometheus(ns: &NetNs, dir: &Dir, ca: &str) -> Result<Server> {
    let ca = dir.write("ca.crt", ca)?;
    let password = dir.write("password", PASSWORD)?;
    Server::start(
        ns,
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: macdrop\n    scheme: https\n\
             \x20   tls_config:\n      ca_file: {ca}\n\
             \x20   basic_auth:\n      username: {USER}\n      password_file: {password}\n\
             \x20   static_configs:\n      - targets: ['{METRICS_ADDR}']\n",
            ca = ca.display(),
            password = password.display(),
        ),
    )
}

/// The Prometheus server the suite already uses scrapes the protected
/// endpoint (`scheme: https`, `tls_config.ca_file`, `basic_auth`) and
/// reads the exact count.
#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let lab = BridgeLab::new(2).unwrap();
    let dir = Dir::new().unwrap();
    let pki = make_pki("macdrop").unwrap();
    let web = web_config(&dir, &pki).unwrap();
    let macdrop = spawn(&lab, &web).unwrap();
    send_wrong_mac_frames(&lab);
    let prometheus = prometheus(lab.host(), &dir, &pki.ca).unwrap();
    let query = r#"macdrop_host_ip_wrong_mac_frames_total{job="macdrop",interface="p1"}"#;
    let want = WRONG_MAC.to_string();
    let got = poll_until(
        Duration::from_secs(30),
        || Ok(prometheus.value(lab.host(), query)),
        |v| v.as_deref() == Some(want.as_str()),
    )
    .unwrap();
    assert_eq!(
        got.as_deref(),
        Some(want.as_str()),
        "up: {:?}",
        prometheus.value(lab.host(), r#"up{job="macdrop"}"#)
    );
    drop(prometheus);
    macdrop.stop().unwrap();
}
