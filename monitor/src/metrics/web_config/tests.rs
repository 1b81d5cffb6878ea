use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::error::ExitKind;

/// A directory of files for one test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "macdrop-web-config-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The one-line usage error `text` as a web config gives.
fn error_of(text: &str) -> String {
    let dir = TempDir::new();
    let path = dir.write("web.yml", text);
    let Err(e) = WebConfig::load(&path) else {
        panic!("accepted: {text}")
    };
    assert_eq!(e.kind, ExitKind::Usage, "{}", e.message);
    assert!(!e.message.contains('\n'), "one line: {}", e.message);
    assert!(
        e.message
            .starts_with(&format!("--web-config {}: ", path.display())),
        "{}",
        e.message
    );
    e.message
}

fn hash(password: &str) -> String {
    // The lowest cost bcrypt allows: the tests check logic, not strength.
    bcrypt::hash(password, 4).unwrap()
}

#[test]
fn an_empty_file_enforces_nothing() {
    let dir = TempDir::new();
    let web = WebConfig::load(&dir.write("web.yml", "\n")).unwrap();
    assert!(web.tls.is_none() && web.auth.is_none());
}

#[test]
fn users_only() {
    let dir = TempDir::new();
    let text = format!("basic_auth_users:\n  prometheus: {}\n", hash("s3cret"));
    let web = WebConfig::load(&dir.write("web.yml", &text)).unwrap();
    assert!(web.tls.is_none());
    let auth = web.auth.unwrap();
    assert!(auth.check("prometheus", "s3cret"));
    assert!(!auth.check("prometheus", "wrong"));
    assert!(!auth.check("nobody", "s3cret"));
}

#[test]
fn each_mistake_is_one_line_naming_it() {
    let good = hash("x");
    for (text, what) in [
        ("basic_auth_users: [a\n", "line 1"),
        ("basic_auth_users: [a, b]\n", "expected a map"),
        (
            "basic_auth_user:\n  a: b\n",
            "unknown field `basic_auth_user`",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n",
            "unknown field `min_version`",
        ),
        (
            "tls_server_config:\n  cert_file: a\n",
            "missing field `key_file`",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n",
            "unknown variant `RequestClientCert`",
        ),
        (
            "basic_auth_users:\n  alice: plaintext\n",
            "is not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "cannot read cert_file",
        ),
        (
            &format!("basic_auth_users:\n  alice: {good}\n  bob: \"$2y$10$short\"\n"),
            "user \"bob\" is not a bcrypt hash",
        ),
    ] {
        let message = error_of(text);
        assert!(message.contains(what), "{text:?}: {message}");
    }
}

#[test]
fn certificates_and_keys_must_be_pem() {
    let dir = TempDir::new();
    dir.write("server.crt", "not a certificate\n");
    dir.write("server.key", "not a key\n");
    let path = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let e = WebConfig::load(&path).err().unwrap();
    assert!(
        e.message.contains("holds no certificate"),
        "relative to the file's directory: {}",
        e.message
    );
}

#[test]
fn client_certificates_need_a_ca_and_a_policy() {
    // Missing certificates would fail later: these checks come first.
    let ca = error_of("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n");
    assert!(ca.contains("client_auth_type is NoClientCert"), "{ca}");
    let policy = error_of(
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  \
         client_auth_type: RequireAndVerifyClientCert\n",
    );
    assert!(policy.contains("needs client_ca_file"), "{policy}");
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let e = WebConfig::load(Path::new("/nonexistent/web.yml"))
        .err()
        .unwrap();
    assert_eq!(e.kind, ExitKind::Usage);
    assert!(e.message.contains("cannot read it"), "{}", e.message);
}

/// An unknown user is verified against a hash of the costliest configured
/// cost, so it takes as long as a known user's wrong password.
#[test]
fn unknown_users_cost_a_full_verification() {
    let mut users = BTreeMap::new();
    users.insert("a".to_owned(), bcrypt::hash("x", 4).unwrap());
    users.insert("b".to_owned(), bcrypt::hash("y", 5).unwrap());
    let auth = BasicAuth::new(users).unwrap();
    let dummy = bcrypt::HashParts::from_str(&auth.dummy).unwrap();
    assert_eq!(dummy.get_cost(), 5);
    assert!(!auth.check("c", "x"));
}

/// A verified password is remembered; any other password for that user is
/// verified in full and not remembered.
#[test]
fn verified_passwords_are_cached_and_wrong_ones_are_not() {
    let mut users = BTreeMap::new();
    users.insert("a".to_owned(), hash("right"));
    let auth = BasicAuth::new(users).unwrap();
    assert!(auth.lock().is_empty());
    assert!(!auth.check("a", "wrong"));
    assert!(auth.lock().is_empty(), "a failure is not cached");
    assert!(auth.check("a", "right"));
    assert_eq!(auth.lock().len(), 1);
    assert!(
        !auth.check("a", "wrong"),
        "the cache answers only its own password"
    );
    assert!(!auth.check("a", "righ"), "nor a prefix of it");
    assert!(auth.check("a", "right"));
    // An expired entry is verified again (and still right).
    auth.lock().get_mut("a").unwrap().1 = Instant::now() - AUTH_CACHE_TTL;
    assert!(auth.check("a", "right"));
}

#[test]
fn a_fifo_or_a_directory_is_refused_without_blocking() {
    let dir = TempDir::new();
    let fifo = dir.0.join("fifo.yml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for path in [fifo.as_path(), dir.0.as_path()] {
        let e = WebConfig::load(path).err().unwrap();
        assert!(
            e.message.contains("not a regular file") || e.message.contains("directory"),
            "{}",
            e.message
        );
    }
}
