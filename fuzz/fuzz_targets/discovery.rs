//! Discovery documents: the configured issuer, https (or loopback) endpoints; and the host a
//! browser's URL parser (WHATWG, the `url` crate) reads in an endpoint is the one tollgate checked.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for (raw, uri) in props::discovery(data) {
        let Ok(u) = url::Url::parse(&raw) else { continue };
        if let Some(url::Host::Domain(d)) = u.host() {
            let h = uri.host().unwrap_or("").to_ascii_lowercase();
            if !h.split('.').any(|l| l.starts_with("xn--")) {
                assert_eq!(d, h, "{raw:?}: a browser goes to another host");
            }
        }
    }
});
