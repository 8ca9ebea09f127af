//! OpenTelemetry traces (`[telemetry]`): a server span per request, with the client's W3C
//! `traceparent` as its parent when valid; a client span for the upstream call (whose id the
//! upstream receives as its parent) and for each call to an identity provider; export over
//! OTLP/HTTP protobuf from a thread of its own ([`export`]).
//!
//! Off (no `[telemetry]`), none of this runs: the gateway holds `None` and a client's
//! `traceparent` and `tracestate` pass through to the upstream untouched.
//!
//! Span creation takes no lock shared across workers: ids come from a thread-local generator,
//! the sampler is a pure function of the trace id, and a finished span is one non-blocking
//! channel send. Attributes never carry tokens, cookies, `Authorization` or query strings.

mod client;
pub mod export;
pub mod traceparent;

use std::borrow::Cow;
use std::time::Instant;

use http::header::HeaderMap;
use http::{Method, Request, StatusCode};
use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceContextExt, TraceId, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, Span, SpanExporter as _};
use opentelemetry_sdk::Resource;

use crate::authority::Authority;
use crate::config;
use export::{ExportMetrics, QueueProcessor, Schedule};
use traceparent::{TRACEPARENT, TRACESTATE};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter refused its settings.
    #[error("telemetry exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The export thread or its runtime could not start.
    #[error("telemetry export thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The export counters could not be registered.
    #[error("telemetry metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The tracer every worker shares (reference counted; nothing in it is locked per span).
#[derive(Clone, Debug)]
pub struct Telemetry {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Starts the export thread and builds the tracer: parent-based sampling (a client's
    /// sampled flag is followed), `sample_ratio` of new traces.
    pub fn start(
        cfg: &config::Telemetry,
        tls: rustls::ClientConfig,
        registry: &prometheus::Registry,
    ) -> Result<Telemetry, TelemetryError> {
        let resource = Resource::builder_empty()
            .with_service_name(cfg.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(cfg.traces_url.to_string())
            .with_timeout(cfg.export_timeout)
            .with_http_client(client::ExportClient::new(tls, cfg.export_timeout))
            .build()?;
        exporter.set_resource(&resource);
        let schedule =
            Schedule { interval: cfg.export_interval, timeout: cfg.export_timeout, queue: cfg.max_queue_size };
        let processor = QueueProcessor::start(exporter, schedule, ExportMetrics::new(registry)?)?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("tollgate");
        Ok(Telemetry { tracer, provider })
    }

    /// Exports what is queued and stops the export thread (bounded by the export timeout).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "telemetry: spans left unexported at shutdown");
        }
    }

    /// The server span of one request, child of the client's span when its `traceparent` is
    /// valid, else the root of a new trace.
    pub fn request(&self, headers: &HeaderMap, method: &Method, path: &str) -> RequestSpan<'_> {
        let (parent_cx, keep_tracestate) = match traceparent::extract(headers) {
            Some((sc, valid_state)) => (Context::new().with_remote_span_context(sc), valid_state),
            None => (Context::new(), false),
        };
        let (name, method_attr) = method_name(method);
        // Room for every attribute the span gets (they are moved into it, not copied), so none
        // of the later ones reallocates.
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(Vec::with_capacity(SERVER_ATTRIBUTES))
            .start_with_context(&self.tracer, &parent_cx);
        let recording = opentelemetry::trace::Span::is_recording(&span);
        let cx = Context::new().with_span(span);
        if recording {
            let s = cx.span();
            s.set_attribute(KeyValue::new("http.request.method", method_attr));
            if method_attr == "_OTHER" {
                s.set_attribute(KeyValue::new("http.request.method_original", method.as_str().to_owned()));
            }
            // The path alone: the query may carry a token (`access_token=`) or other secrets.
            s.set_attribute(KeyValue::new("url.path", path.to_owned()));
        }
        RequestSpan { tracer: &self.tracer, cx, keep_tracestate, recording, method: method_attr }
    }

    /// A client span for a call to an identity provider: a child of the request being served
    /// when there is one (an unknown key, an introspection), else the root of its own trace
    /// (background key and metadata refreshes). Only the URL without its query is recorded;
    /// never the form, which carries client secrets and tokens.
    pub fn idp_call<B>(&self, req: &Request<B>, call: &'static str) -> CallSpan {
        let parent = Context::current();
        let span = self
            .tracer
            .span_builder(Cow::Borrowed(idp_span_name(call)))
            .with_kind(SpanKind::Client)
            .with_attributes(Vec::with_capacity(CLIENT_ATTRIBUTES))
            .start_with_context(&self.tracer, &parent);
        let mut call_span = CallSpan { span, started: Instant::now() };
        if call_span.recording() {
            let (_, method) = method_name(req.method());
            let (full, host, port) = idp_url(req.uri());
            call_span.set_all([
                KeyValue::new("tollgate.idp.call", call),
                KeyValue::new("http.request.method", method),
                KeyValue::new("server.address", host.to_owned()),
                KeyValue::new("server.port", i64::from(port)),
                KeyValue::new("url.full", full),
            ]);
        }
        call_span
    }
}

/// `url.full`, `server.address` and `server.port` of a call to a provider: the URL as called,
/// port included, without userinfo, query or fragment; the port is the scheme's default when
/// the URL names none.
fn idp_url(uri: &http::Uri) -> (String, &str, u16) {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or("");
    let full = match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}{}", uri.path()),
        None => format!("{scheme}://{host}{}", uri.path()),
    };
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    (full, host, port)
}

/// One request's server span (held in a [`Context`] so that identity-provider calls made
/// while serving it find it as their parent).
pub struct RequestSpan<'t> {
    tracer: &'t SdkTracer,
    cx: Context,
    /// The client sent a valid `traceparent` and a valid `tracestate`, which then belongs to
    /// this trace and goes upstream as sent.
    keep_tracestate: bool,
    recording: bool,
    method: &'static str,
}

impl RequestSpan<'_> {
    /// The context to run the request's work in (see `opentelemetry::context::FutureExt`).
    pub fn context(&self) -> &Context {
        &self.cx
    }

    pub fn trace_id(&self) -> TraceId {
        self.cx.span().span_context().trace_id()
    }

    /// What authentication concluded: `anonymous`, `bearer`, `session`, or why it refused.
    pub fn auth_outcome(&self, outcome: &'static str) {
        if self.recording {
            self.cx.span().set_attribute(KeyValue::new("tollgate.auth.outcome", outcome));
        }
    }

    /// Sets the upstream request's `traceparent` and, when this request is sampled, starts
    /// the client span for the upstream call that it names as the parent. An unsampled request
    /// makes no second span: the upstream's parent is this one (sampled flag off).
    ///
    /// A client's `tracestate` stays as sent when it and the `traceparent` were valid;
    /// otherwise it is removed (with a new trace it described another one).
    ///
    /// `resend`: 0 for the first attempt; a request sent again (after a rejected upstream
    /// token) has its own span with `http.request.resend_count` and names that span.
    pub fn upstream(&self, route: &config::Route, headers: &mut HeaderMap, resend: u8) -> Option<CallSpan> {
        if !self.keep_tracestate {
            headers.remove(&TRACESTATE);
        }
        if !self.recording {
            headers.insert(TRACEPARENT.clone(), traceparent::header(self.cx.span().span_context()));
            return None;
        }
        let span = self
            .tracer
            .span_builder("upstream")
            .with_kind(SpanKind::Client)
            .with_attributes(Vec::with_capacity(CLIENT_ATTRIBUTES))
            .start_with_context(self.tracer, &self.cx);
        let mut call = CallSpan { span, started: Instant::now() };
        headers.insert(TRACEPARENT.clone(), traceparent::header(call.span_context()));
        let u = &route.upstream;
        let port = u.authority.port_u16().map(|p| KeyValue::new("server.port", i64::from(p)));
        let resent = (resend > 0).then(|| KeyValue::new("http.request.resend_count", i64::from(resend)));
        let attrs = [
            KeyValue::new("http.request.method", self.method),
            KeyValue::new("server.address", u.authority.host().to_owned()),
            KeyValue::new("http.route", route.name.clone()),
        ];
        call.set_all(attrs.into_iter().chain(port).chain(resent));
        Some(call)
    }

    /// Ends the upstream call's span and records its time on the request's span.
    pub fn upstream_done(&self, call: CallSpan, outcome: Result<StatusCode, &'static str>) {
        let ms = call.finish(outcome);
        if self.recording {
            self.cx.span().set_attribute(KeyValue::new("tollgate.upstream.duration_ms", ms));
        }
    }

    /// Ends the span with what the request came to. `route` and `authority` are known only
    /// when the request got that far.
    pub fn finish(self, route: Option<&str>, authority: Option<&Authority>, status: StatusCode) {
        if !self.recording {
            return;
        }
        let span = self.cx.span();
        if let Some(route) = route {
            span.update_name(format!("{} {route}", span_method(self.method)));
        }
        let status_code = KeyValue::new("http.response.status_code", i64::from(status.as_u16()));
        let route = route.map(|r| KeyValue::new("http.route", r.to_owned()));
        let host = authority.map(|a| KeyValue::new("server.address", a.host().to_owned()));
        let port = authority.and_then(Authority::port).map(|p| KeyValue::new("server.port", i64::from(p)));
        // One lock of the span for all of them.
        span.set_attributes(route.into_iter().chain(host).chain(port).chain([status_code]));
        if status.is_server_error() {
            span.set_status(Status::error(status.as_str().to_owned()));
        }
        span.end();
    }
}

/// A client span (upstream or identity provider), ended by [`CallSpan::finish`] or on drop.
pub struct CallSpan {
    span: Span,
    started: Instant,
}

impl CallSpan {
    fn recording(&self) -> bool {
        opentelemetry::trace::Span::is_recording(&self.span)
    }

    fn set_all(&mut self, attrs: impl IntoIterator<Item = KeyValue>) {
        opentelemetry::trace::Span::set_attributes(&mut self.span, attrs);
    }

    pub fn span_context(&self) -> &SpanContext {
        opentelemetry::trace::Span::span_context(&self.span)
    }

    /// Ends the span with the answer's status (an error from 400 up, as for HTTP clients) or
    /// the kind of failure; returns the time taken in milliseconds.
    pub fn finish(mut self, outcome: Result<StatusCode, &'static str>) -> f64 {
        use opentelemetry::trace::Span as _;
        let ms = self.started.elapsed().as_secs_f64() * 1e3;
        if self.span.is_recording() {
            match outcome {
                Ok(status) => {
                    self.span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
                    if status.as_u16() >= 400 {
                        self.span.set_status(Status::error(status.as_str().to_owned()));
                    }
                }
                Err(kind) => {
                    self.span.set_attribute(KeyValue::new("error.type", kind));
                    self.span.set_status(Status::error(kind));
                }
            }
        }
        self.span.end();
        ms
    }
}

/// Attributes a server span gets at most (see [`Telemetry::request`] and [`RequestSpan`]).
const SERVER_ATTRIBUTES: usize = 9;
/// Attributes a client span gets at most.
const CLIENT_ATTRIBUTES: usize = 6;

/// The span name's method and the `http.request.method` value (semantic conventions: known
/// methods as they are, others `_OTHER` and named `HTTP`).
fn method_name(m: &Method) -> (&'static str, &'static str) {
    let known = match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return ("HTTP", "_OTHER"),
    };
    (known, known)
}

fn span_method(attr: &'static str) -> &'static str {
    if attr == "_OTHER" {
        "HTTP"
    } else {
        attr
    }
}

fn idp_span_name(call: &'static str) -> &'static str {
    match call {
        "jwks" => "idp jwks",
        "discovery" => "idp discovery",
        "token" => "idp token",
        "introspection" => "idp introspection",
        _ => "idp",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn idp_url_keeps_the_port_and_drops_query_and_userinfo() {
        let url = |u: &str| {
            let uri: http::Uri = u.parse().unwrap();
            let (full, host, port) = super::idp_url(&uri);
            (full, host.to_owned(), port)
        };
        assert_eq!(
            url("http://127.0.0.1:4455/jwks?x=1"),
            ("http://127.0.0.1:4455/jwks".into(), "127.0.0.1".into(), 4455)
        );
        assert_eq!(
            url("https://idp.example.com/token"),
            ("https://idp.example.com/token".into(), "idp.example.com".into(), 443)
        );
        assert_eq!(url("http://idp.example.com/a"), ("http://idp.example.com/a".into(), "idp.example.com".into(), 80));
        assert_eq!(url("https://u:p@[::1]:8443/k#f"), ("https://[::1]:8443/k".into(), "[::1]".into(), 8443));
    }
}
