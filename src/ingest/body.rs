//! The request body as handlers see it ([`RequestBody`]), and what becomes of the part they leave
//! unread ([`Leftover`]).
//!
//! Issue #31 item 9: a refusal sent before the body was read (403, 404, 415, 413 on a declared
//! length) dropped the body while the client was still sending it. Over HTTP/2 hyper's h2 then
//! resets the stream (`RST_STREAM`, `CANCEL` when the reset goes out before the response is
//! complete), and clients such as curl report `Stream error in the HTTP/2 framing layer` and
//! discard the answer; HTTP/1.1 was unaffected (the connection is just not reused). Now the body
//! outlives the handler: the service answers at once, and the rest of the body is read and
//! discarded in the background, bounded by `server.max_body_bytes` and
//! `server.body_read_timeout_ms` (at most [`DRAIN_AT_MOST`]), so the stream ends normally on both
//! sides (an HTTP/1.1 client that writes its whole body before reading, as hyper's does, would
//! otherwise meet a closed socket). A client still
//! sending past the bound gets the stream reset after the complete response (`NO_ERROR`, RFC 9113
//! 8.1: h2 picks it once the response is sent), or on HTTP/1.1 the connection closed.
//!
//! Never does: keep what it drains (frames are dropped as they come), or drain without a bound.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::Request;

type Shared = Arc<Mutex<Option<Incoming>>>;

/// The longest a refused stream's body is drained: enough for a complete answer to reach a
/// client sending at a few MB/s; past it the stream is reset after that answer (`NO_ERROR`).
pub(super) const DRAIN_AT_MOST: Duration = Duration::from_secs(2);

/// A request body the service still holds a handle on after the handler is done with it.
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: Shared,
}

/// The handle the service keeps: see [`Leftover::drain`].
#[derive(Debug)]
pub(super) struct Leftover {
    inner: Shared,
}

/// The request for the handler, and the service's handle on its body.
pub(super) fn split(req: Request<Incoming>) -> (Request<RequestBody>, Leftover) {
    let (parts, body) = req.into_parts();
    let inner: Shared = Arc::new(Mutex::new(Some(body)));
    (
        Request::from_parts(
            parts,
            RequestBody {
                inner: inner.clone(),
            },
        ),
        Leftover { inner },
    )
}

fn lock(inner: &Shared) -> std::sync::MutexGuard<'_, Option<Incoming>> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match lock(&self.inner).as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.inner).as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.inner)
            .as_ref()
            .map(Body::size_hint)
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Leftover {
    /// Read and discard what the handler left of the body, in the background: at most
    /// `max_bytes`, for at most `within`. Nothing to do when the handler read it all.
    pub(super) fn drain(self, max_bytes: u64, within: Duration) {
        let Some(mut body) = lock(&self.inner).take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        tokio::spawn(async move {
            let mut read: u64 = 0;
            let discard = async {
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else { return };
                    if let Some(data) = frame.data_ref() {
                        read += data.len() as u64;
                        if read > max_bytes {
                            return;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(within, discard).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_handle_reads_as_the_end() {
        let body = RequestBody {
            inner: Arc::new(Mutex::new(None)),
        };
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
