//! W3C Trace Context (`traceparent`, `tracestate`), parsed strictly: version `00` only, exact
//! lengths, lower-case hex, non-zero ids. Anything else is no parent at all (a new trace
//! starts), never an error for the request.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `00-` + 32 + `-` + 16 + `-` + 2.
const LEN: usize = 55;

/// The client's span context from `traceparent` (exactly one valid field) and `tracestate`,
/// and whether that `tracestate` was valid (a bad one does not void the parent, but is not
/// passed on).
pub fn extract(headers: &HeaderMap) -> Option<(SpanContext, bool)> {
    let mut fields = headers.get_all(&TRACEPARENT).iter();
    let (first, None) = (fields.next()?, fields.next()) else {
        return None;
    };
    let (trace_id, span_id, flags) = parse(first.as_bytes())?;
    let state = tracestate(headers);
    let valid = state.is_some();
    Some((SpanContext::new(trace_id, span_id, flags, true, state.unwrap_or_default()), valid))
}

fn parse(v: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
    if v.len() != LEN || !v.starts_with(b"00-") || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = hex::<16>(&v[3..35])?;
    let span_id = hex::<8>(&v[36..52])?;
    let [flags] = hex::<1>(&v[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    let sampled = if flags & 1 == 1 { TraceFlags::SAMPLED } else { TraceFlags::default() };
    Some((TraceId::from_bytes(trace_id), SpanId::from_bytes(span_id), sampled))
}

/// Every `tracestate` field joined (the header may be split), when it parses as a list.
fn tracestate(headers: &HeaderMap) -> Option<TraceState> {
    let mut joined = String::new();
    for v in headers.get_all(&TRACESTATE) {
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(v.to_str().ok()?);
    }
    if joined.is_empty() || joined.len() > 512 || !valid_tracestate(&joined) {
        return None;
    }
    // Built from the members themselves, not by `TraceState::from_str`: that one counts blank
    // members towards the 32 and silently drops what lies past them.
    let members = joined.split(',').map(|m| m.trim_matches([' ', '\t'])).filter(|m| !m.is_empty());
    TraceState::from_key_value(members.filter_map(|m| m.split_once('='))).ok()
}

/// W3C Trace Context §3.3: at most 32 `key=value` members separated by commas (blank members
/// and spaces around them allowed); keys `lcalpha *(lcalpha / digit / "_-*/")` up to 256
/// characters, optionally `tenant@system`; values up to 256 printable characters other than
/// `,` and `=`, not ending in a space. A system id is held to 13 characters, one fewer than
/// the W3C text's 14, because opentelemetry's `TraceState` refuses 14 (such a list is dropped
/// whole, the parent kept, rather than passed on changed).
fn valid_tracestate(s: &str) -> bool {
    let mut members = 0;
    for member in s.split(',').map(|m| m.trim_matches([' ', '\t'])) {
        if member.is_empty() {
            continue;
        }
        members += 1;
        let Some((key, value)) = member.split_once('=') else { return false };
        if members > 32 || !valid_key(key) || !valid_value(value) {
            return false;
        }
    }
    true
}

fn valid_key(key: &str) -> bool {
    let part = |p: &str, first_digit_ok: bool| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.len() <= 256
            && (b[0].is_ascii_lowercase() || (first_digit_ok && b[0].is_ascii_digit()))
            && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(&c))
    };
    match key.split_once('@') {
        None => part(key, false),
        Some((tenant, system)) => {
            part(tenant, true) && tenant.len() <= 241 && part(system, false) && system.len() <= 13
        }
    }
}

fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && !v.ends_with(' ')
        && v.bytes().all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

/// Lower-case hex only, as the specification requires.
fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        *out.get_mut(i)? = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The `traceparent` value naming `cx` as the parent, written on the stack.
pub fn header(cx: &SpanContext) -> HeaderValue {
    let mut buf = [0u8; LEN];
    buf[..3].copy_from_slice(b"00-");
    write_hex(&mut buf[3..35], &cx.trace_id().to_bytes());
    buf[35] = b'-';
    write_hex(&mut buf[36..52], &cx.span_id().to_bytes());
    buf[52] = b'-';
    write_hex(&mut buf[53..55], &[cx.trace_flags().to_u8() & 1]);
    // Always valid: ASCII hex and dashes.
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static(""))
}

/// A trace id as 32 hex digits on the stack (for the access log).
pub fn trace_id_hex(id: TraceId, out: &mut [u8; 32]) -> &str {
    write_hex(out, &id.to_bytes());
    std::str::from_utf8(out).unwrap_or("-")
}

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 15)];
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append((*k).clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_valid_parent_round_trips() {
        let (cx, _) = extract(&headers(&[(&TRACEPARENT, GOOD)])).unwrap();
        assert_eq!(cx.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.span_id().to_string(), "00f067aa0ba902b7");
        assert!(cx.is_sampled() && cx.is_remote());
        assert_eq!(header(&cx), GOOD);
        let (unsampled, _) = extract(&headers(&[(&TRACEPARENT, &GOOD.replace("-01", "-00"))])).unwrap();
        assert!(!unsampled.is_sampled());
        let mut buf = [0; 32];
        assert_eq!(trace_id_hex(cx.trace_id(), &mut buf), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn anything_else_is_no_parent() {
        let bad = [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // another version
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // too long
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // too short
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", // separator
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", // hex
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9 2b7-01",
            "",
        ];
        for b in bad {
            assert!(extract(&headers(&[(&TRACEPARENT, b)])).is_none(), "{b:?}");
        }
        assert!(extract(&headers(&[(&TRACEPARENT, GOOD), (&TRACEPARENT, GOOD)])).is_none(), "two fields");
        assert!(extract(&HeaderMap::new()).is_none());
    }

    #[test]
    fn tracestate_is_kept_when_valid_and_ignored_when_not() {
        let split =
            headers(&[(&TRACEPARENT, GOOD), (&TRACESTATE, "rojo=00f067aa0ba902b7"), (&TRACESTATE, "congo=t61")]);
        let (cx, valid) = extract(&split).unwrap();
        assert!(valid);
        assert_eq!(cx.trace_state().header(), "rojo=00f067aa0ba902b7,congo=t61");
        let tenant = extract(&headers(&[(&TRACEPARENT, GOOD), (&TRACESTATE, "1tenant@vendor=x, ,b=c d")])).unwrap();
        assert!(tenant.1, "tenant keys and blank members are allowed");
        for bad in ["=no key", "Upper=1", "k=v=w", "k=", "k", "a=1,b"] {
            let (cx, valid) = extract(&headers(&[(&TRACEPARENT, GOOD), (&TRACESTATE, bad)])).unwrap();
            assert!(!valid, "{bad:?}");
            assert_eq!(cx.trace_state().header(), "", "{bad:?}: a bad tracestate is dropped, the parent kept");
        }
        let many = (0..33).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        let full = (0..32).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        let (cx, valid) = extract(&headers(&[(&TRACEPARENT, GOOD), (&TRACESTATE, &format!(" ,{full}, ,"))])).unwrap();
        assert!(valid, "32 members and blank ones");
        assert_eq!(cx.trace_state().header(), full, "blank members do not count towards the 32");
        let system13 = extract(&headers(&[(&TRACEPARENT, GOOD), (&TRACESTATE, "t@abcdefghijklm=1")])).unwrap();
        assert_eq!((system13.1, system13.0.trace_state().header().as_str()), (true, "t@abcdefghijklm=1"));
        let system14 = extract(&headers(&[(&TRACEPARENT, GOOD), (&TRACESTATE, "t@abcdefghijklmn=1")])).unwrap();
        assert_eq!((system14.1, system14.0.trace_state().header().as_str()), (false, ""), "dropped whole");
        assert!(!extract(&headers(&[(&TRACEPARENT, GOOD), (&TRACESTATE, &many)])).unwrap().1, "33 members");
    }
}
