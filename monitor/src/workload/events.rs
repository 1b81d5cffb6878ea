//! The Engine's container events as nudges (Docker's, and Podman's
//! service, which serves the same endpoint): a thread of its own holds
//! `GET /events` open (filtered to containers starting and ending) and,
//! for every event, tells the resolver to look again. So a container is
//! named as soon as it runs, not at the next retry; the resolver still
//! retries and refreshes on its own, so a missed event costs only time.
//!
//! The stream is read only to notice that something arrived: what changed
//! is read afresh by the resolver (`docker::Docker::by_namespace`), so no
//! event is parsed. When the Engine is gone the thread tries again every
//! `RECONNECT`; when it stops, the stream ends and the thread reconnects
//! once the Engine is back.

use std::{
    path::PathBuf,
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::Duration,
};

use http_body_util::BodyExt as _;
use tokio::sync::Notify;

use super::unix_http::{self, CALL_TIMEOUT};

/// How often a lost or missing Engine is tried again.
const RECONNECT: Duration = Duration::from_secs(1);

/// `/events` with `filters={"type":["container"],"event":["start","die"]}`
/// (URL-encoded): a container began or stopped running.
const EVENTS: &str = "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22start%22%2C%22die%22%5D%7D";

pub struct Events {
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl Events {
    /// Starts the thread; `nudge` is called for every event (and once per
    /// connection, in case something happened while it was away), until
    /// it returns false.
    pub fn start(
        socket: PathBuf,
        nudge: impl Fn() -> bool + Send + 'static,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(Notify::new());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("macdrop-events".into())
            .spawn(move || {
                runtime.block_on(async {
                    tokio::select! {
                        () = follow(&socket, &nudge) => {}
                        () = stopped.notified() => {}
                    }
                });
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        // A stored permit: the thread stops even if it is not waiting yet.
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects, reads events until the stream ends, and again, for as long
/// as `nudge` wants them.
async fn follow(socket: &std::path::Path, nudge: &impl Fn() -> bool) {
    loop {
        // No Engine, no attempt: a failed connect builds an error (with a
        // backtrace, under RUST_BACKTRACE) every `RECONNECT` for nothing.
        if !socket.exists() {
            tokio::time::sleep(RECONNECT).await;
            continue;
        }
        let connected =
            tokio::time::timeout(CALL_TIMEOUT, unix_http::request(socket, EVENTS)).await;
        if let Ok(Ok((response, connection))) = connected {
            if response.status().is_success() {
                if !nudge() {
                    connection.abort();
                    return;
                }
                let mut body = response.into_body();
                while let Some(Ok(frame)) = body.frame().await {
                    if frame.data_ref().is_some_and(|d| !d.is_empty()) && !nudge() {
                        connection.abort();
                        return;
                    }
                }
                // The stream ended: the engine stopped or restarts. What it
                // named may be stale, and nothing else would say so while
                // the containers' namespaces stay (conmon, live-restore).
                if !nudge() {
                    connection.abort();
                    return;
                }
            }
            connection.abort();
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// A `nudge` that sends `message()` on `tx`; false once the receiver is
/// gone.
pub fn sender<M: Send + 'static>(
    tx: mpsc::Sender<M>,
    message: impl Fn() -> M + Send + 'static,
) -> impl Fn() -> bool + Send + 'static {
    move || tx.send(message()).is_ok()
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        os::unix::net::UnixListener,
        sync::atomic::{AtomicUsize, Ordering},
        time::Instant,
    };

    use super::*;

    fn nudges() -> (Arc<AtomicUsize>, impl Fn() -> bool + Send + 'static) {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        (count, move || {
            counter.fetch_add(1, Ordering::SeqCst);
            true
        })
    }

    fn wait_for(count: &AtomicUsize, at_least: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while count.load(Ordering::SeqCst) < at_least {
            assert!(Instant::now() < deadline, "{count:?} < {at_least}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// An engine that stops ends the stream: that is a nudge too, or the
    /// names it gave would stand while its containers' namespaces stay.
    #[test]
    fn the_end_of_the_stream_is_a_nudge() {
        let dir = std::env::temp_dir().join(format!("macdrop-events-end-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
            let event = b"{\"Type\":\"container\",\"Action\":\"start\"}\n";
            write!(conn, "{:x}\r\n", event.len()).unwrap();
            conn.write_all(event).unwrap();
            conn.write_all(b"\r\n0\r\n\r\n").unwrap();
            // The engine goes: the connection closes, the listener stays
            // (accepting nothing more).
            drop(conn);
            listener
        });
        let (count, nudge) = nudges();
        let events = Events::start(socket.clone(), nudge).unwrap();
        // One for the connection, one for the event, one for the end.
        wait_for(&count, 3);
        drop(events);
        drop(server.join().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_event_of_the_stream_is_a_nudge_and_drop_ends_the_thread() {
        let dir = std::env::temp_dir().join(format!("macdrop-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let n = conn.read(&mut request).unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
            for _ in 0..2 {
                let event = b"{\"Type\":\"container\",\"Action\":\"start\"}\n";
                write!(conn, "{:x}\r\n", event.len()).unwrap();
                conn.write_all(event).unwrap();
                conn.write_all(b"\r\n").unwrap();
            }
            // Held open, as the Engine does, until the test is done.
            let _ = rx.recv();
            request
        });
        let (count, nudge) = nudges();
        let events = Events::start(socket.clone(), nudge).unwrap();
        // One for the connection, one per event.
        wait_for(&count, 3);
        let started = Instant::now();
        drop(events);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        tx.send(()).unwrap();
        let request = server.join().unwrap();
        assert!(
            request.starts_with(&format!("GET {EVENTS} HTTP/1.1\r\n")),
            "{request}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_engine_is_tried_again_and_never_blocks_the_drop() {
        let (count, nudge) = nudges();
        let events = Events::start("/nonexistent/macdrop-test/docker.sock".into(), nudge).unwrap();
        let started = Instant::now();
        drop(events);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
}
