//! A deadline on writing each answer. hyper's header timer stops once a
//! request has arrived, so a client that never reads its answer would hold
//! its connection (and its slot of `HTTP_MAX_CONNECTIONS`) for ever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// The client did not take an answer within `HTTP_WRITE_TIMEOUT_MS`.
#[derive(Debug, thiserror::Error)]
#[error("the client did not read the answer in time")]
pub struct WriteTimedOut;

/// A connection's socket whose writes fail once an answer has taken longer
/// than `timeout` to leave. The clock starts at the first write of an
/// answer and stops when hyper flushes it whole, which it does after each
/// answer; so each answer gets its own deadline, however slowly the client
/// trickles reads to keep it alive.
pub struct WriteDeadline {
    stream: TcpStream,
    timeout: Duration,
    /// Armed while an answer is being written.
    deadline: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
}

impl WriteDeadline {
    pub fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self {
            stream,
            timeout,
            deadline: None,
            timed_out: false,
        }
    }

    /// The socket, and whether an answer missed its deadline.
    pub fn into_inner(self) -> (TcpStream, bool) {
        (self.stream, self.timed_out)
    }

    fn arm(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
    }

    /// What a write that could not go on yet becomes: still pending (woken
    /// when the socket has room or the deadline passes), or the timeout.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let expired = self
            .deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        if expired {
            self.timed_out = true;
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, WriteTimedOut)));
        }
        Poll::Pending
    }

    fn write_with<T>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let this = self.get_mut();
        this.arm();
        match write(Pin::new(&mut this.stream), cx) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.write_with(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write_with(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    /// hyper flushes once an answer's bytes are all written: the answer
    /// has left, and the next one starts its own clock.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                this.deadline = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
