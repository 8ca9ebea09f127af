//! Body types: one response body for everything the gateway answers (its own small bodies and
//! streamed upstream bodies, without boxing), and a request body that enforces a size limit
//! while streaming.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

/// A response body: nothing, a small in-memory body, or an upstream body streamed through.
#[derive(Debug)]
pub enum Body {
    Full(Option<Bytes>),
    Stream(Incoming),
}

impl Body {
    pub fn empty() -> Body {
        Body::Full(None)
    }
    pub fn from_static(s: &'static str) -> Body {
        Body::Full(Some(Bytes::from_static(s.as_bytes())))
    }
    pub fn text(s: impl Into<Bytes>) -> Body {
        Body::Full(Some(s.into()))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Full(data) => Poll::Ready(data.take().filter(|d| !d.is_empty()).map(|d| Ok(Frame::data(d)))),
            Body::Stream(inner) => Pin::new(inner).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(data) => data.as_ref().is_none_or(|d| d.is_empty()),
            Body::Stream(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Body::Stream(inner) => inner.size_hint(),
        }
    }
}

/// The request body grew past the route's `max_body` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// Errors of a [`LimitedBody`]: the client's stream failed, or it was too large.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// Reading from the client failed.
    #[error("reading the request body: {0}")]
    Client(#[source] hyper::Error),
    /// The limit was exceeded; the upstream request is aborted and the client gets 413.
    #[error(transparent)]
    TooLarge(#[from] BodyTooLarge),
}

/// A client request body forwarded upstream, counted frame by frame against a limit.
#[derive(Debug)]
pub struct LimitedBody {
    /// `None`: no body (a request replayed on a new connection).
    inner: Option<Incoming>,
    remaining: u64,
    limit: u64,
}

impl LimitedBody {
    /// `limit: None` means unlimited.
    pub fn new(inner: Incoming, limit: Option<u64>) -> LimitedBody {
        let limit = limit.unwrap_or(u64::MAX);
        LimitedBody { inner: Some(inner), remaining: limit, limit }
    }

    pub fn empty() -> LimitedBody {
        LimitedBody { inner: None, remaining: 0, limit: 0 }
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.remaining = 0;
                        return Poll::Ready(Some(Err(BodyTooLarge { limit: this.limit }.into())));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(RequestBodyError::Client(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}
