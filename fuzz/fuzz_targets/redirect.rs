//! The `rd` redirect check; where a browser (WHATWG URL parser, the `url` crate) would really go
//! with an accepted target: the gateway's origin or https on an allowed host.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(rd) = std::str::from_utf8(data) else { return };
    let target = props::redirect(rd);
    let base = url::Url::parse(props::PUBLIC_ORIGIN).unwrap();
    let Ok(to) = base.join(&target) else { return };
    let host = to.host_str().unwrap_or("");
    let same = to.origin() == base.origin();
    let allowed = to.scheme() == "https"
        && to.port().is_none()
        && props::ALLOWED_HOSTS.iter().any(|a| if a.starts_with('.') { host.ends_with(a) } else { host == *a });
    assert!(same || allowed, "{rd:?} -> {target:?} sends a browser to {to}");
    if target.starts_with('/') {
        assert!(same, "{rd:?} -> {target:?} is a path but a browser goes to {to}");
    }
});
