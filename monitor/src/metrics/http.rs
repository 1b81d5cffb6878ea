//! The metrics endpoint: hyper's HTTP/1 server on the monitor's own tokio
//! runtime. `GET /metrics` (Prometheus text format) and `GET /healthz`;
//! HEAD works like GET without the body; any other path is 404, any other
//! method on those paths 405.
//!
//! Bounded, because it may face a network: at most [`MAX_CONNECTIONS`] at a
//! time (further ones are closed at once), request headers at most
//! [`MAX_HEADER_BYTES`] bytes and [`MAX_HEADERS`] fields (else 431), headers
//! must arrive within [`HEADER_READ_TIMEOUT`] (also between keep-alive
//! requests: an idle client is dropped), and no connection lives longer
//! than [`CONNECTION_DEADLINE`]. Request bodies are never read.
//!
//! With `--web-config` ([`super::web_config`]): TLS is a layer under HTTP
//! (each accepted connection completes its handshake within
//! [`HEADER_READ_TIMEOUT`] or is dropped), and basic authentication a check
//! before routing. Every path needs credentials but `/healthz`, which tells
//! only whether reports arrive, so that probes and load balancers need no
//! password; it is still served over TLS only.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use headers::{Authorization, HeaderMapExt as _, authorization::Basic};
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Bytes, header, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::Semaphore,
};
use tokio_rustls::TlsAcceptor;

use super::{
    Latest, Publisher,
    web_config::{BasicAuth, WebConfig},
};
use crate::{error::Failure, model::World};

/// Connections served at once; more are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 16;
/// Request line and headers, in bytes (a scrape request is ~200).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Header fields per request.
pub const MAX_HEADERS: usize = 32;
/// Time a client has to send a request's headers, counted from the
/// connection (or the previous response); slow or idle clients are dropped.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection, whatever it does.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// A running exporter: the listener is bound and served in the background;
/// the monitor publishes each report into it.
pub struct Exporter {
    publisher: Publisher,
    local_addr: SocketAddr,
}

impl Exporter {
    /// Binds `addr` (before anything is attached, so a port in use fails
    /// fast) and serves it on the current tokio runtime. `interval` is the
    /// monitor's report interval, for /healthz's notion of "stale"; `web`
    /// what the endpoint enforces (TLS, users).
    pub async fn start(
        addr: SocketAddr,
        interval: Duration,
        web: WebConfig,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| bind_failure(addr, &e))?;
        let local_addr = listener.local_addr()?;
        let (publisher, latest) = super::channel();
        let state = Arc::new(State {
            registry: super::registry(latest.clone()),
            latest,
            stale_after: interval * 3 + Duration::from_secs(10),
            auth: web.auth,
        });
        tokio::spawn(serve(listener, web.tls.map(TlsAcceptor::from), state));
        Ok(Self {
            publisher,
            local_addr,
        })
    }

    /// Where it listens (the port chosen when the given port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn publish(&self, world: World) {
        self.publisher.publish(world);
    }
}

/// One line naming the problem and the fix; exit 3.
fn bind_failure(addr: SocketAddr, e: &std::io::Error) -> Failure {
    use std::io::ErrorKind;
    let port = addr.port();
    let why = match e.kind() {
        ErrorKind::AddrInUse => format!(
            "the address is already in use (another macdrop?); stop what listens there \
             (`ss -ltnp 'sport = :{port}'` names it) or choose another with --metrics ADDR:PORT"
        ),
        ErrorKind::PermissionDenied => format!(
            "binding port {port} is not permitted (ports below 1024 need CAP_NET_BIND_SERVICE); \
             choose a port from 1024 up, e.g. --metrics 127.0.0.1:9815"
        ),
        ErrorKind::AddrNotAvailable => format!(
            "{} is not an address of this host's network namespace; use 127.0.0.1, 0.0.0.0 or \
             an address `ip addr` shows",
            addr.ip()
        ),
        _ => format!("{e}; choose another address with --metrics ADDR:PORT"),
    };
    Failure::environment(format!("cannot serve metrics on {addr}: {why}"))
}

struct State {
    registry: Registry,
    latest: Latest,
    stale_after: Duration,
    auth: Option<BasicAuth>,
}

async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<State>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, say: wait a little rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let (http, state, tls) = (http.clone(), Arc::clone(&state), tls.clone());
        tokio::spawn(async move {
            // Errors (a client gone, a header timeout, a failed handshake)
            // concern that client only.
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, async move {
                match tls {
                    None => connection(&http, stream, state).await,
                    Some(tls) => {
                        if let Ok(Ok(stream)) =
                            tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await
                        {
                            connection(&http, stream, state).await;
                        }
                    }
                }
            })
            .await;
            drop(permit);
        });
    }
}

/// Serves HTTP/1 on one connection, plain or TLS.
async fn connection<I>(http: &http1::Builder, io: I, state: Arc<State>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(state, req).await) }
    });
    let _ = http.serve_connection(TokioIo::new(io), service).await;
}

/// Authentication, then routing.
async fn handle<B>(state: Arc<State>, req: Request<B>) -> Response<Full<Bytes>> {
    if state.auth.is_some() && req.uri().path() != "/healthz" && !authorized(&state, &req).await {
        let mut response = text(
            StatusCode::UNAUTHORIZED,
            "unauthorized: macdrop's metrics need a user and password (basic auth)\n".into(),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"macdrop\""),
        );
        return response;
    }
    respond(&state, &req)
}

/// Whether the request carries the credentials of a configured user. The
/// bcrypt verification runs on tokio's blocking pool, not on the thread
/// that drives the monitor; at most [`MAX_CONNECTIONS`] run at once.
async fn authorized<B>(state: &Arc<State>, req: &Request<B>) -> bool {
    let Some(Authorization(basic)) = req.headers().typed_get::<Authorization<Basic>>() else {
        return false;
    };
    let (user, password) = (basic.username().to_owned(), basic.password().to_owned());
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        state
            .auth
            .as_ref()
            .is_some_and(|auth| auth.check(&user, &password))
    })
    .await
    .unwrap_or(false)
}

fn respond<B>(state: &State, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: macdrop serves /metrics and /healthz\n".into(),
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method not allowed: {path} answers GET and HEAD\n"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => match super::encode(&state.registry) {
            Ok(body) => {
                let mut response = text(StatusCode::OK, body);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(super::CONTENT_TYPE),
                );
                response
            }
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n".into(),
            ),
        },
        _ => health(state),
    }
}

/// 200 while reports arrive; 503 before the first and once they stop.
fn health(state: &State) -> Response<Full<Bytes>> {
    let at = state.latest.borrow().as_ref().map(|p| p.at);
    match at.map(|at| Instant::now().saturating_duration_since(at)) {
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: no report yet\n".into(),
        ),
        Some(age) if age > state.stale_after => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stale: last report {:.1} s ago (limit {:.1} s)\n",
                age.as_secs_f64(),
                state.stale_after.as_secs_f64()
            ),
        ),
        Some(age) => text(
            StatusCode::OK,
            format!("ok: last report {:.1} s ago\n", age.as_secs_f64()),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn state(stale_after: Duration) -> (Publisher, State) {
        let (publisher, latest) = super::super::channel();
        let state = State {
            registry: super::super::registry(latest.clone()),
            latest,
            stale_after,
            auth: None,
        };
        (publisher, state)
    }

    fn request(method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    }

    fn empty_world() -> World {
        World {
            ts: SystemTime::now(),
            interfaces: Vec::new(),
            events: Vec::new(),
            drop_source: Ok("tp_btf"),
            self_stats: None,
            evidence: None,
        }
    }

    #[test]
    fn routes_and_methods() {
        let (_publisher, state) = state(Duration::from_secs(60));
        for path in ["/", "/metrics/", "/metricsx", "/healthz/x", "/favicon.ico"] {
            assert_eq!(
                respond(&state, &request(Method::GET, path)).status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        let metrics = respond(&state, &request(Method::GET, "/metrics?x=1"));
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            metrics.headers()[header::CONTENT_TYPE],
            super::super::CONTENT_TYPE
        );
        assert_eq!(
            respond(&state, &request(Method::HEAD, "/metrics")).status(),
            StatusCode::OK
        );
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let r = respond(&state, &request(method.clone(), "/metrics"));
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
        }
        assert_eq!(
            respond(&state, &request(Method::POST, "/elsewhere")).status(),
            StatusCode::NOT_FOUND
        );
    }

    /// With users configured, everything but /healthz needs one of them.
    #[tokio::test]
    async fn basic_auth_guards_all_but_healthz() {
        use headers::HeaderMapExt as _;
        let (_publisher, mut state) = state(Duration::from_secs(60));
        let users = [("a".to_owned(), bcrypt::hash("pw", 4).unwrap())].into();
        state.auth = Some(BasicAuth::new(users).unwrap());
        let state = Arc::new(state);
        let ask = |path: &str, credentials: Option<(&str, &str)>| {
            let mut req = request(Method::GET, path);
            if let Some((user, password)) = credentials {
                req.headers_mut()
                    .typed_insert(Authorization::basic(user, password));
            }
            handle(Arc::clone(&state), req)
        };
        for (path, credentials) in [
            ("/metrics", None),
            ("/metrics", Some(("a", "wrong"))),
            ("/metrics", Some(("b", "pw"))),
            ("/nowhere", None),
        ] {
            let r = ask(path, credentials).await;
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{path} {credentials:?}"
            );
            assert_eq!(
                r.headers()[header::WWW_AUTHENTICATE],
                "Basic realm=\"macdrop\""
            );
        }
        assert_eq!(
            ask("/metrics", Some(("a", "pw"))).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            ask("/nowhere", Some(("a", "pw"))).await.status(),
            StatusCode::NOT_FOUND
        );
        // No report yet: 503, not 401.
        assert_eq!(
            ask("/healthz", None).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn health_follows_the_reports() {
        let (publisher, state) = state(Duration::from_millis(50));
        let health = || respond(&state, &request(Method::GET, "/healthz")).status();
        assert_eq!(health(), StatusCode::SERVICE_UNAVAILABLE, "no report yet");
        publisher.publish(empty_world());
        assert_eq!(health(), StatusCode::OK);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(health(), StatusCode::SERVICE_UNAVAILABLE, "stale");
        publisher.publish(empty_world());
        assert_eq!(health(), StatusCode::OK);
    }

    #[test]
    fn bind_failures_name_the_problem_and_the_fix() {
        let addr: SocketAddr = "127.0.0.1:9815".parse().unwrap();
        let in_use = bind_failure(addr, &std::io::ErrorKind::AddrInUse.into());
        assert_eq!(in_use.kind, crate::error::ExitKind::Environment);
        assert!(
            in_use
                .message
                .starts_with("cannot serve metrics on 127.0.0.1:9815: ")
        );
        assert!(in_use.message.contains("already in use"));
        assert!(in_use.message.contains("--metrics ADDR:PORT"));
        let denied = bind_failure(addr, &std::io::ErrorKind::PermissionDenied.into());
        assert!(denied.message.contains("CAP_NET_BIND_SERVICE"));
        for f in [in_use, denied] {
            assert!(!f.message.contains('\n'), "one line: {}", f.message);
        }
    }
}
