//! Serving HTTP/1.1 with the limits a public endpoint needs: a deadline for
//! a request's headers (which is also how long an idle keep-alive
//! connection is kept), a deadline for its body, a deadline for writing
//! each answer, and a bound on open connections. Stopping drains: no new
//! connections, requests in flight are answered, idle connections closed,
//! and whatever has not drained within `HTTP_DRAIN_TIMEOUT_MS` is closed.

mod write_deadline;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use shared::config::{self, ConfigError};
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use write_deadline::WriteDeadline;
pub use write_deadline::WriteTimedOut;

/// How the server treats slow and numerous clients.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// `HTTP_HEADER_TIMEOUT_MS`: how long a client has to send a request's
    /// headers, counted from the connection or from the previous answer, so
    /// it is also how long an idle keep-alive connection stays open. Past
    /// it the connection is closed.
    pub header_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT_MS`: how long a request's whole body may take to
    /// arrive after its headers; past it the answer is `408:request_timeout`
    /// and the connection is closed.
    pub body_timeout: Duration,
    /// `HTTP_WRITE_TIMEOUT_MS`: how long each answer may take to leave,
    /// from its first byte written to its last; a client that does not read
    /// it in time has its connection closed, which frees its slot.
    pub write_timeout: Duration,
    /// `HTTP_DRAIN_TIMEOUT_MS`: at shutdown, how long connections have to
    /// finish their request in flight; those still open are then closed.
    pub drain_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`: connections served at once; further ones wait
    /// in the listen backlog until one closes.
    pub max_connections: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(20),
            max_connections: 1024,
        }
    }
}

impl HttpConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let millis = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
            match config::parse_or(name, default)? {
                0 => Err(ConfigError::Invalid {
                    name,
                    reason: "must be at least 1".into(),
                }),
                ms => Ok(Duration::from_millis(ms)),
            }
        };
        let max_connections = config::parse_or("HTTP_MAX_CONNECTIONS", defaults.max_connections)?;
        if max_connections == 0 {
            return Err(ConfigError::Invalid {
                name: "HTTP_MAX_CONNECTIONS",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            header_timeout: millis("HTTP_HEADER_TIMEOUT_MS", defaults.header_timeout)?,
            body_timeout: millis("HTTP_BODY_TIMEOUT_MS", defaults.body_timeout)?,
            write_timeout: millis("HTTP_WRITE_TIMEOUT_MS", defaults.write_timeout)?,
            drain_timeout: millis("HTTP_DRAIN_TIMEOUT_MS", defaults.drain_timeout)?,
            max_connections,
        })
    }
}

/// How long a closing connection keeps reading (and dropping) what the
/// client still sends: closing a socket with unread bytes resets it, and a
/// reset can destroy the answer before the client has read it.
const LINGER: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `cancel` fires, then waits for every
/// connection to finish its request in flight and close.
pub async fn serve(listener: TcpListener, router: Router, config: HttpConfig, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(config.max_connections as usize));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    loop {
        let slot = tokio::select! {
            _ = cancel.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let (stream, remote) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = ConnectionService {
            router: router.clone(),
            remote,
            body_timeout: config.body_timeout,
        };
        let stream = WriteDeadline::new(stream, config.write_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let cancel = cancel.clone();
        let drain = config.drain_timeout;
        tokio::spawn(async move {
            drive(connection, cancel, drain).await;
            drop(slot);
        });
    }
    drop(listener);
    // Each connection holds its slot until it has closed.
    let _ = slots.acquire_many(config.max_connections).await;
}

/// Errors of one connection that was already gone are nothing to wait for;
/// others (out of file descriptors) are, a little.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Runs one connection to its end (closing it gracefully when `cancel`
/// fires, and at once if it has not drained `drain` later), then closes the
/// socket without losing the last answer.
async fn drive(
    mut connection: http1::Connection<TokioIo<WriteDeadline>, ConnectionService>,
    cancel: CancellationToken,
    drain: Duration,
) {
    let mut stopping = std::pin::pin!(cancel.cancelled_owned());
    let mut drained: Option<Pin<Box<Sleep>>> = None;
    let ended = poll_fn(|cx| {
        if drained.is_none() && stopping.as_mut().poll(cx).is_ready() {
            drained = Some(Box::pin(tokio::time::sleep(drain)));
            Pin::new(&mut connection).graceful_shutdown();
        }
        if let Some(deadline) = drained.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ended::NotDrained);
            }
        }
        connection.poll_without_shutdown(cx).map(Ended::Closed)
    })
    .await;
    let (stream, timed_out) = connection.into_parts().io.into_inner().into_inner();
    let not_drained = matches!(ended, Ended::NotDrained);
    match ended {
        Ended::Closed(Ok(())) => {}
        Ended::Closed(Err(error)) => tracing::debug!(%error, "connection ended"),
        Ended::NotDrained => tracing::debug!("connection closed at shutdown before it drained"),
    }
    if timed_out || not_drained {
        // Nobody is reading: a reset frees the socket's buffers at once
        // instead of lingering for a client that will not take them.
        let _ = stream.set_zero_linger();
        return;
    }
    linger(stream).await;
}

/// How [`drive`] stopped.
enum Ended {
    Closed(hyper::Result<()>),
    NotDrained,
}

/// Says the answer is complete (FIN), then drops what the client still
/// sends until it closes too, for at most `LINGER`.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 8192];
    let _ = tokio::time::timeout(LINGER, async { while let Ok(1..) = stream.read(&mut sink).await {} }).await;
}

/// The router, as one connection's service: every request learns the
/// client's address and gets a deadline on its body.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    remote: SocketAddr,
    body_timeout: Duration,
}

type Answer = Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let body_timeout = self.body_timeout;
        let mut request = request.map(|body| {
            if hyper::body::Body::is_end_stream(&body) {
                Body::new(body)
            } else {
                Body::new(DeadlineBody {
                    inner: body,
                    deadline: Box::pin(tokio::time::sleep(body_timeout)),
                })
            }
        });
        request.extensions_mut().insert(ConnectInfo(self.remote));
        Box::pin(self.router.clone().oneshot(request))
    }
}

/// The body did not arrive within `HTTP_BODY_TIMEOUT_MS`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// A request body that fails with [`BodyTimedOut`] once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
