//! `--web-config FILE`: TLS and basic authentication for the metrics
//! endpoint, from a YAML file in the format of the Prometheus exporters'
//! `--web.config.file` (exporter-toolkit), so one file can serve both:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt        # PEM chain, leaf first
//!   key_file: server.key         # PEM private key (PKCS#8, PKCS#1 or SEC1)
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: clients.crt  # with a client_auth_type that verifies
//! basic_auth_users:
//!   prometheus: $2y$10$...       # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! The file is read and checked whole when macdrop starts, before anything
//! is bound or attached: a missing or unreadable file, bad YAML, a key
//! macdrop does not know, a password that is not a bcrypt hash, an
//! unreadable or mismatched certificate and key are each a usage error
//! (exit 2) on one line naming the file, the problem and the fix. Relative
//! paths inside the file are relative to the file's directory, as in
//! exporter-toolkit.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    str::FromStr as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::{CryptoProvider, ring},
    server::WebPkiClientVerifier,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::{error::Failure, untrusted::escape_controls};

/// How long a verified user and password are remembered, so that a
/// Prometheus scraping every few seconds costs one bcrypt verification
/// (tens of milliseconds of CPU at cost 10, doubling per cost step) per
/// minute rather than one per scrape. A wrong password is never cached and
/// always costs a full verification.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth_type: ClientAuth,
    client_ca_file: Option<PathBuf>,
}

/// exporter-toolkit's names. `RequestClientCert` and
/// `RequireAnyClientCert` (a certificate asked for but not verified) are
/// not offered: an unverified certificate authenticates nobody.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
enum ClientAuth {
    #[default]
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// What the endpoint enforces.
pub struct WebConfig {
    /// Serve HTTPS only, with this configuration.
    pub tls: Option<Arc<ServerConfig>>,
    /// Every request but `/healthz` needs one of these users' credentials.
    pub auth: Option<BasicAuth>,
}

impl WebConfig {
    /// Plain HTTP, no authentication: `--metrics` without `--web-config`.
    pub fn open() -> Self {
        Self {
            tls: None,
            auth: None,
        }
    }

    /// Reads and checks `path`; every problem is one line, exit 2.
    pub fn load(path: &Path) -> Result<Self, Failure> {
        let fail = |problem: String| {
            Failure::usage(format!(
                "--web-config {}: {problem}",
                escape_controls(&path.display().to_string())
            ))
        };
        let source = read_regular(path)
            .and_then(|bytes| String::from_utf8(bytes).map_err(std::io::Error::other))
            .map_err(|e| {
                fail(format!(
                    "cannot read it ({e}); give the path of a readable YAML file \
                     (docs/metrics.md, \"TLS and authentication\")"
                ))
            })?;
        let file: File = if source.trim().is_empty() {
            File::default()
        } else {
            serde_norway::from_str(&source).map_err(|e| {
                fail(format!(
                    "{}; the keys are tls_server_config (cert_file, key_file, \
                     client_auth_type, client_ca_file) and basic_auth_users",
                    one_line(&e.to_string())
                ))
            })?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .as_ref()
            .map(|t| tls_config(dir, t).map(Arc::new))
            .transpose()
            .map_err(fail)?;
        let auth = (!file.basic_auth_users.is_empty())
            .then(|| BasicAuth::new(file.basic_auth_users))
            .transpose()
            .map_err(fail)?;
        Ok(Self { tls, auth })
    }
}

fn one_line(s: &str) -> String {
    escape_controls(&s.lines().map(str::trim).collect::<Vec<_>>().join(" "))
}

/// The contents of a regular file. Opened without blocking, so that a FIFO
/// or a device given by mistake is refused rather than waited on.
fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn read(dir: &Path, what: &str, file: &Path) -> Result<(PathBuf, Vec<u8>), String> {
    let path = dir.join(file);
    let shown = escape_controls(&path.display().to_string());
    match read_regular(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(e) => Err(format!(
            "cannot read {what} {shown} ({e}); fix the path (relative paths are \
             relative to the web config file)"
        )),
    }
}

fn certificates(
    dir: &Path,
    what: &str,
    file: &Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let (path, pem) = read(dir, what, file)?;
    let shown = escape_controls(&path.display().to_string());
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{what} {shown} is not PEM ({}); give PEM certificates",
                pem_problem(&e)
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {shown} holds no certificate (no BEGIN CERTIFICATE block); \
             give PEM certificates"
        ));
    }
    Ok(certs)
}

/// A PEM error in words (the library's Display shows a missing END line
/// as a list of bytes).
fn pem_problem(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::MissingSectionEnd { .. } => {
            "a BEGIN line has no matching END line".into()
        }
        other => escape_controls(&other.to_string()),
    }
}

fn tls_config(dir: &Path, t: &TlsFile) -> Result<ServerConfig, String> {
    // The policy first: it needs no file read.
    let verify_with = match (&t.client_ca_file, t.client_auth_type) {
        (None, ClientAuth::NoClientCert) => None,
        (Some(_), ClientAuth::NoClientCert) => {
            return Err(
                "client_ca_file is set but client_auth_type is NoClientCert; \
                 set client_auth_type: RequireAndVerifyClientCert (or remove client_ca_file)"
                    .into(),
            );
        }
        (None, auth) => {
            return Err(format!(
                "client_auth_type {auth:?} needs client_ca_file, the CA that signs the \
                 clients' certificates"
            ));
        }
        (Some(ca), auth) => Some((ca, auth)),
    };
    let certs = certificates(dir, "cert_file", &t.cert_file)?;
    let (key_path, key_pem) = read(dir, "key_file", &t.key_file)?;
    let key_shown = escape_controls(&key_path.display().to_string());
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "key_file {key_shown} holds no PEM private key ({}); give the certificate's \
             key in PEM (PKCS#8, PKCS#1 or SEC1)",
            pem_problem(&e)
        )
    })?;
    // ring, not rustls' default aws-lc-rs: it builds with the C compiler
    // alone and links into the static binary of deploy/Containerfile. The
    // deprecation says ring offers no post-quantum key exchange, which a
    // scrape of counters can do without.
    #[allow(deprecated)]
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let builder = match verify_with {
        None => builder.with_no_client_auth(),
        Some((ca, auth)) => {
            builder.with_client_cert_verifier(client_verifier(dir, ca, auth, &provider)?)
        }
    };
    let cert_shown = escape_controls(&dir.join(&t.cert_file).display().to_string());
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "cert_file {cert_shown} and key_file {key_shown} do not go together ({e}); \
             give the certificate's own key"
        )
    })?;
    // The endpoint speaks HTTP/1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn client_verifier(
    dir: &Path,
    ca: &Path,
    auth: ClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(dir, "client_ca_file", ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("client_ca_file: a certificate is unusable as a CA ({e})"))?;
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = match auth {
        ClientAuth::VerifyClientCertIfGiven => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder
        .build()
        .map_err(|e| format!("client_ca_file: cannot verify clients with it ({e})"))
}

/// Users and their bcrypt hashes, checked so that the time an answer takes
/// tells nothing about which user names exist.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Verified against for an unknown user, at the cost of the costliest
    /// real hash, so an unknown user takes as long as a wrong password.
    dummy: String,
    /// User -> the password last verified for it, and when.
    verified: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl BasicAuth {
    /// Checks that every password is a bcrypt hash, and makes the hash
    /// unknown users are verified against.
    pub(crate) fn new(users: BTreeMap<String, String>) -> Result<Self, String> {
        let mut cost = 0;
        for (user, hash) in &users {
            let parts = bcrypt::HashParts::from_str(hash).map_err(|_| {
                format!(
                    "the password of user {:?} is not a bcrypt hash; store \
                     `htpasswd -nBC 10 \"\" | tr -d ':\\n'` of it, never the password itself",
                    escape_controls(user)
                )
            })?;
            cost = cost.max(parts.get_cost());
        }
        let dummy = bcrypt::hash_with_salt(b"macdrop: no such user", cost, [0; 16])
            .map_err(|e| format!("cannot make the comparison hash: {e}"))?
            .format_for_version(bcrypt::Version::TwoB);
        Ok(Self {
            users,
            dummy,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `user` and `password` are one of the configured pairs.
    /// Blocking: a bcrypt verification is CPU work (run it off the
    /// runtime's thread). Every failure costs one full verification.
    pub fn check(&self, user: &str, password: &str) -> bool {
        let now = Instant::now();
        if let Some((cached, at)) = self.lock().get(user)
            && now.saturating_duration_since(*at) < AUTH_CACHE_TTL
            && bool::from(cached.as_slice().ct_eq(password.as_bytes()))
        {
            return true;
        }
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if ok {
            let mut verified = self.lock();
            // Only configured users are ever cached: the map stays as
            // small as the file's user list.
            verified.insert(user.to_owned(), (password.as_bytes().to_vec(), now));
        }
        ok
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<u8>, Instant)>> {
        // A panic while holding it cannot leave the map inconsistent.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
