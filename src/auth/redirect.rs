//! Where a browser may be sent after login or logout: a path on the gateway's own origin, or an
//! https URL on an allow-listed host. Anything ambiguous becomes "/". Browsers treat `\` as `/`,
//! ignore tabs and newlines in URLs, and accept `//host` as another site, so those are refused
//! before and after one round of percent-decoding.

/// Returns `rd` if it is safe to redirect to, else `"/"`.
pub fn safe_target(rd: &str, public_host: &str, allowed_hosts: &[String]) -> String {
    if is_safe(rd, public_host, allowed_hosts) {
        rd.to_string()
    } else {
        "/".to_string()
    }
}

fn is_safe(rd: &str, public_host: &str, allowed_hosts: &[String]) -> bool {
    if rd.is_empty() || rd.len() > 2048 || !clean(rd) {
        return false;
    }
    let Some(decoded) = percent_decode(rd) else { return false };
    // Decoded, the part before the query must still be clean: a server that decodes once
    // must not find `\`, a tab or `//` there. (An encoded space in the query is fine.)
    let decoded_head = decoded.split(['?', '#']).next().unwrap_or("");
    if decoded_head.chars().any(|c| c == '\\' || c.is_control()) {
        return false;
    }
    if rd.starts_with('/') {
        // A path: never `//host` or `/\host`, in raw or decoded form.
        return is_local_path(rd) && is_local_path(decoded_head);
    }
    // An absolute URL: https (or the public URL's own scheme) to an allowed host, no userinfo.
    let Ok(uri) = rd.parse::<http::Uri>() else { return false };
    if !matches!(uri.scheme_str(), Some("https") | Some("http")) {
        return false;
    }
    let Some(authority) = uri.authority() else { return false };
    // The decoded form must name the same host, without userinfo (no `%40`, `%2f` tricks).
    let Ok(again) = decoded.parse::<http::Uri>() else { return false };
    if authority.as_str().contains('@') || again.authority().is_none_or(|a| a.as_str().contains('@') || a != authority)
    {
        return false;
    }
    let host = authority.host().to_ascii_lowercase();
    if uri.scheme_str() == Some("http") && host != public_host {
        return false;
    }
    host == public_host
        || allowed_hosts.iter().any(|a| if a.starts_with('.') { host.ends_with(a.as_str()) } else { &host == a })
}

fn is_local_path(p: &str) -> bool {
    p.starts_with('/') && !p.starts_with("//") && !p.starts_with("/\\")
}

/// No backslash, whitespace or control character anywhere (browsers strip or reinterpret them).
fn clean(s: &str) -> bool {
    !s.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safe(rd: &str) -> bool {
        is_safe(rd, "app.example.com", &[".trusted.example".into(), "docs.example.com".into()])
    }

    #[test]
    fn accepts_local_paths_and_allowed_hosts() {
        for ok in [
            "/",
            "/dashboard?tab=1&x=%20",
            "/a/b#frag",
            "https://app.example.com/x",
            "https://docs.example.com/",
            "https://a.trusted.example/p",
        ] {
            assert!(safe(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_off_site() {
        for bad in [
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "/%2f%2fevil.com",
            "/%5cevil.com",
            "\\\\evil.com",
            "/\t/evil.com",
            "/%09/evil.com",
            "https://evil.com",
            "http://docs.example.com/",
            "https://app.example.com@evil.com/",
            "https://evil.com\\@app.example.com",
            "https://trusted.example.evil.com/",
            "javascript:alert(1)",
            "data:text/html,x",
            "evil.com",
            " /x",
            "",
        ] {
            assert!(!safe(bad), "{bad}");
        }
    }

    #[test]
    fn public_corpora_stay_on_site() {
        for corpus in [
            include_str!("../../tests/data/open-redirects-oauth2-proxy.txt"),
            include_str!("../../tests/data/open-redirects-mod-auth-openidc.txt"),
        ] {
            for line in corpus.lines() {
                let target = safe_target(line, "app.example.com", &[]);
                let on_site = target.starts_with('/') && !target.starts_with("//") && !target.starts_with("/\\")
                    || target.starts_with("https://app.example.com/");
                assert!(on_site, "{line:?} -> {target:?}");
            }
        }
    }
}
