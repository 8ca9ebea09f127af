//! `[telemetry]`: OpenTelemetry traces exported over OTLP/HTTP (protobuf). Absent, tollgate
//! makes no spans and passes a client's `traceparent`/`tracestate` through unchanged.

use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use super::validate::Check;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub sample_ratio: Option<f64>,
    pub service_name: Option<String>,
    pub export_interval: Option<String>,
    pub export_timeout: Option<String>,
    pub max_queue_size: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// Where spans are posted: the configured base URL with `/v1/traces` appended.
    pub traces_url: Uri,
    /// Share of new traces sampled; a client's sampled flag is followed (parent-based).
    pub sample_ratio: f64,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Longest time a finished span waits before it is sent.
    pub export_interval: Duration,
    /// Time limit of one export request.
    pub export_timeout: Duration,
    /// Finished spans held for export; more are dropped (and counted).
    pub max_queue_size: usize,
}

pub(super) fn telemetry(c: &mut Check, raw: RawTelemetry) -> Option<Telemetry> {
    let traces_url = match raw.otlp_endpoint.as_deref().map(traces_url) {
        None => {
            c.err(
                "telemetry.otlp_endpoint",
                "required: the collector's OTLP/HTTP base URL, like \"http://collector:4318\"",
            );
            None
        }
        Some(Err(reason)) => {
            c.err("telemetry.otlp_endpoint", reason);
            None
        }
        Some(Ok(u)) => Some(u),
    };
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        c.err("telemetry.sample_ratio", format!("{sample_ratio} is outside [0, 1]"));
    }
    let service_name = raw.service_name.unwrap_or_else(|| "tollgate".into());
    if service_name.trim().is_empty() {
        c.err("telemetry.service_name", "must not be empty");
    }
    let export_interval =
        c.duration("telemetry.export_interval", raw.export_interval.as_deref(), Duration::from_secs(5));
    let export_timeout = c.duration("telemetry.export_timeout", raw.export_timeout.as_deref(), Duration::from_secs(10));
    for (field, d) in [("telemetry.export_interval", export_interval), ("telemetry.export_timeout", export_timeout)] {
        if d.is_zero() {
            c.err(field, "must be more than zero");
        }
    }
    let max_queue_size = raw.max_queue_size.unwrap_or(2048);
    if max_queue_size == 0 {
        c.err("telemetry.max_queue_size", "must be at least 1");
    }
    Some(Telemetry {
        traces_url: traces_url?,
        sample_ratio,
        service_name,
        export_interval,
        export_timeout,
        max_queue_size,
    })
}

/// `http(s)://host[:port][/base]` → `.../v1/traces`, as OTEL_EXPORTER_OTLP_ENDPOINT is read.
fn traces_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{s:?} must be an http:// or https:// URL")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{s:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!("{s:?} must not carry credentials"));
    }
    if uri.query().is_some() {
        return Err(format!("{s:?} must not have a query"));
    }
    let base = uri.path().trim_end_matches('/');
    let full = format!("{}://{authority}{base}/v1/traces", uri.scheme_str().unwrap_or("http"));
    full.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(raw: RawTelemetry) -> (Option<Telemetry>, Vec<String>) {
        let mut c = Check { errors: Vec::new() };
        let t = telemetry(&mut c, raw);
        (t, c.errors.iter().map(|e| e.to_string()).collect())
    }

    fn raw(endpoint: &str) -> RawTelemetry {
        RawTelemetry {
            otlp_endpoint: Some(endpoint.into()),
            sample_ratio: None,
            service_name: None,
            export_interval: None,
            export_timeout: None,
            max_queue_size: None,
        }
    }

    #[test]
    fn defaults_and_the_traces_path() {
        let (t, errors) = check(raw("http://collector:4318"));
        assert!(errors.is_empty(), "{errors:?}");
        let t = t.unwrap();
        assert_eq!(t.traces_url, "http://collector:4318/v1/traces");
        assert_eq!((t.sample_ratio, t.service_name.as_str(), t.max_queue_size), (1.0, "tollgate", 2048));
        assert_eq!(check(raw("https://c.example/otlp/")).0.unwrap().traces_url, "https://c.example/otlp/v1/traces");
    }

    #[test]
    fn bad_values_name_their_field() {
        for bad in ["collector:4318", "ftp://c", "http://u:p@c:4318", "http://c/?x=1", "not a url"] {
            let (_, errors) = check(raw(bad));
            assert!(errors.iter().any(|e| e.contains("telemetry.otlp_endpoint")), "{bad}: {errors:?}");
        }
        for ratio in [-0.1, 1.5, f64::NAN] {
            let (_, errors) = check(RawTelemetry { sample_ratio: Some(ratio), ..raw("http://c:4318") });
            assert!(errors.iter().any(|e| e.contains("telemetry.sample_ratio")), "{ratio}: {errors:?}");
        }
        let (_, errors) = check(RawTelemetry { otlp_endpoint: None, ..raw("x") });
        assert!(errors.iter().any(|e| e.contains("telemetry.otlp_endpoint")), "{errors:?}");
        let (_, errors) = check(RawTelemetry { max_queue_size: Some(0), ..raw("http://c:4318") });
        assert!(errors.iter().any(|e| e.contains("telemetry.max_queue_size")), "{errors:?}");
        let (_, errors) = check(RawTelemetry { export_interval: Some("0".into()), ..raw("http://c:4318") });
        assert!(errors.iter().any(|e| e.contains("telemetry.export_interval")), "{errors:?}");
    }
}
