//! Authority parsing: re-parses to itself, no `#?/\\@ %`; and a browser's URL parser (WHATWG,
//! the `url` crate) reads the same host, never an IPv4 address where tollgate saw a name.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(a) = props::authority(data) else { return };
    let host = a.host();
    if host.starts_with('[') || host.split('.').any(|l| l.starts_with("xn--")) {
        return;
    }
    let Ok(u) = url::Url::parse(&format!("http://{}/", a.as_str())) else { return };
    match u.host() {
        Some(url::Host::Domain(d)) => assert_eq!(d, host, "a browser reads another host"),
        Some(url::Host::Ipv4(ip)) => {
            assert_eq!(host.parse::<std::net::Ipv4Addr>().ok(), Some(ip), "{host:?} is IPv4 to a browser")
        }
        other => panic!("{host:?} is {other:?} to a browser"),
    }
});
