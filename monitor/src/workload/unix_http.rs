//! HTTP over a unix socket, read-only: how the Docker Engine (its API and
//! its event stream) and Podman's service are asked. Each call is bounded
//! by `CALL_TIMEOUT` and each answer read whole by `MAX_BODY`.
//!
//! HTTP is hyper's client (`hyper::client::conn::http1`) on a tokio
//! `UnixStream`: hyper is already macdrop's HTTP library (the metrics
//! endpoint), and a few GETs do not justify an engine client crate's
//! dependency tree (bollard: the whole Engine API, TLS, SSH, ...); nothing
//! here parses HTTP by hand.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// Longest any one call to a runtime may take.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest answer read (a list of a few thousand containers fits).
const MAX_BODY: usize = 16 << 20;

/// `GET path` on the HTTP server at `socket`, bounded by `CALL_TIMEOUT`,
/// its JSON answer decoded.
pub async fn get<T: DeserializeOwned>(socket: &Path, path: &str) -> anyhow::Result<T> {
    let call = async {
        let (response, connection) = request(socket, path).await?;
        let result = async {
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
                .to_bytes();
            if !status.is_success() {
                bail!("GET {path}: {status}");
            }
            serde_json::from_slice(&body).with_context(|| format!("GET {path}: bad JSON"))
        }
        .await;
        connection.abort();
        result
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .with_context(|| format!("GET {path}: no answer within {CALL_TIMEOUT:?}"))?
}

/// Sends `GET path` to the server at `socket`: the answer's head (its body
/// still to read) and the connection's task, to abort once done with it.
pub async fn request(
    socket: &Path,
    path: &str,
) -> anyhow::Result<(
    hyper::Response<hyper::body::Incoming>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    // Any Host will do on a unix socket; HTTP/1.1 wants one.
    let request = Request::get(path)
        .header(hyper::header::HOST, "docker")
        .body(Empty::<Bytes>::new())?;
    match sender.send_request(request).await {
        Ok(response) => Ok((response, connection)),
        Err(e) => {
            connection.abort();
            Err(e.into())
        }
    }
}
