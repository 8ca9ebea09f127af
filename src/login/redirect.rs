//! Where a browser may be sent after login or logout: a path on the gateway's own origin, an
//! absolute URL on that same origin (scheme, host and port), or an https URL on an allow-listed
//! host. Anything ambiguous becomes "/". Browsers treat `\` as `/`, ignore tabs and newlines in
//! URLs, and accept `//host` as another site, so those are refused before and after one round of
//! percent-decoding.

/// The longest target kept, in bytes as it goes into `Location`: it is stored in a flow cookie
/// between sign-in start and callback, and browsers keep about 4 KB per cookie.
pub const MAX_TARGET: usize = 2048;

/// Returns `rd` if it is safe to redirect to, else `"/"`. `public_origin` is the gateway's
/// public URL, `scheme://host[:port]` in lower case. Non-ASCII characters of an accepted path
/// are percent-encoded (UTF-8), so the `Location` header is plain ASCII. A target longer than
/// [`MAX_TARGET`] once encoded is `"/"` too.
pub fn safe_target(rd: &str, public_origin: &str, allowed_hosts: &[String]) -> String {
    if is_safe(rd, public_origin, allowed_hosts) {
        let target = encode_non_ascii(rd);
        if target.len() <= MAX_TARGET {
            return target;
        }
    }
    "/".to_string()
}

/// Where a login sends the browser after sign-in or sign-out: `rd` if [`safe_target`] keeps it
/// and, for a login whose `public_url` has a path, it stays under that path on the login's own
/// origin (another app on the same host is another app); else the login's `public_url` path.
/// Allow-listed hosts are the login's to name, and are not limited.
pub fn for_login(rd: &str, login: &crate::config::Login) -> String {
    let home = login.cookie_path();
    let target = safe_target(rd, &login.public_origin, &login.allowed_redirect_hosts);
    if login.path.is_empty() {
        return target;
    }
    let local = match target.strip_prefix(&login.public_origin) {
        Some(rest) if rest.starts_with('/') || rest.is_empty() => rest,
        Some(_) => return home.to_string(),
        None if target.starts_with('/') => &target,
        // Another, allow-listed, host.
        None => return target,
    };
    let path = local.split(['?', '#']).next().unwrap_or("");
    let normal = crate::path::normalize_path(path).is_ok_and(|n| n == path);
    let under = path == login.path || path.strip_prefix(&login.path).is_some_and(|r| r.starts_with('/'));
    if target == "/" || !(normal && under) {
        return home.to_string();
    }
    target
}

fn encode_non_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn is_safe(rd: &str, public_origin: &str, allowed_hosts: &[String]) -> bool {
    if rd.is_empty() || rd.len() > MAX_TARGET || !clean(rd) {
        return false;
    }
    let Some(decoded) = crate::util::percent_decode(rd, false) else { return false };
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
    // An absolute URL: the public origin itself, or https to an allowed host; no userinfo.
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
    // Same origin means same scheme, host and port: another port on the same host is another
    // site, and so is plain http next to an https public URL.
    let origin = format!("{}://{}", uri.scheme_str().unwrap_or(""), authority.as_str()).to_ascii_lowercase();
    if origin == public_origin {
        return true;
    }
    let host = authority.host().to_ascii_lowercase();
    // An allowed host on its https port only: another port is another site (oauth2-proxy too
    // refuses ports not listed in its whitelist).
    uri.scheme_str() == Some("https")
        && uri.port_u16().is_none_or(|p| p == 443)
        && allowed_hosts.iter().any(|a| if a.starts_with('.') { host.ends_with(a.as_str()) } else { &host == a })
}

fn is_local_path(p: &str) -> bool {
    p.starts_with('/') && !p.starts_with("//") && !p.starts_with("/\\")
}

/// No backslash, whitespace or control character anywhere (browsers strip or reinterpret them).
fn clean(s: &str) -> bool {
    !s.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safe(rd: &str) -> bool {
        is_safe(rd, "https://app.example.com", &[".trusted.example".into(), "docs.example.com".into()])
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
            "https://docs.example.com:443/",
        ] {
            assert!(safe(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_off_site() {
        for bad in [
            // An allowed host, but another port (found by the `redirect` fuzz target).
            "https://ooLLLLLLLLL.trusted.example:8/oo",
            "https://docs.example.com:8443/",
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
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "https://app.example.com.evil.com/",
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
    fn same_origin_needs_the_same_port_and_paths_become_ascii() {
        let local = |rd: &str| safe_target(rd, "http://127.0.0.1:8080", &[]);
        assert_eq!(local("http://127.0.0.1:8080/x?y=1"), "http://127.0.0.1:8080/x?y=1");
        assert_eq!(local("http://127.0.0.1:9090/x"), "/");
        assert_eq!(local("https://127.0.0.1:8080/x"), "/");
        assert_eq!(local("/caf\u{e9}?q=\u{3031}"), "/caf%C3%A9?q=%E3%80%B1");
    }

    #[test]
    fn long_targets_become_the_root() {
        let local = |rd: &str| safe_target(rd, "http://127.0.0.1:8080", &[]);
        let longest = format!("/{}", "a".repeat(MAX_TARGET - 1));
        assert_eq!(local(&longest), longest);
        assert_eq!(local(&format!("{longest}a")), "/");
        // Short before encoding, three times longer after.
        let wide = format!("/{}", "\u{e9}".repeat(700));
        assert!(wide.len() <= MAX_TARGET);
        assert_eq!(local(&wide), "/");
    }

    #[test]
    fn public_corpora_stay_on_site() {
        for corpus in [
            include_str!("../../tests/data/open-redirects-oauth2-proxy.txt"),
            include_str!("../../tests/data/open-redirects-mod-auth-openidc.txt"),
        ] {
            for line in corpus.lines() {
                let target = safe_target(line, "https://app.example.com", &[]);
                let on_site = target.is_ascii()
                    && (target.starts_with('/') && !target.starts_with("//") && !target.contains('\\')
                        || target.starts_with("https://app.example.com/"));
                assert!(on_site, "{line:?} -> {target:?}");
            }
        }
    }

    #[allow(clippy::unwrap_used)]
    fn login(public_url: &str) -> crate::config::Login {
        let text = format!(
            "[[issuer]]\nurl = \"https://idp.example\"\naudiences = [\"api\"]\n\
             [login]\nclient_id = \"c\"\nclient_secret = \"s\"\npublic_url = \"{public_url}\"\n\
             cookie_secret = \"a-cookie-secret-of-at-least-32-bytes!!\"\nallowed_redirect_hosts = [\"docs.example.com\"]\n\
             [[route]]\npath = \"/\"\nauth = \"login\"\nupstream = \"http://127.0.0.1:9\"\n"
        );
        let config = crate::config::Config::from_str(&text, std::path::Path::new("t.toml"), &|_| None).unwrap();
        config.logins[0].clone()
    }

    #[test]
    fn a_login_on_a_path_keeps_the_browser_under_it() {
        let wiki = login("https://apps.example.com/wiki");
        for (rd, want) in [
            ("/wiki/page?x=1", "/wiki/page?x=1"),
            ("/wiki", "/wiki"),
            ("https://apps.example.com/wiki/a", "https://apps.example.com/wiki/a"),
            ("https://docs.example.com/x", "https://docs.example.com/x"),
            ("/", "/wiki"),
            ("/blog/", "/wiki"),
            ("/wikipedia", "/wiki"),
            ("/wiki/../blog/", "/wiki"),
            ("/wiki/%2e%2e/blog/", "/wiki"),
            ("/wiki//x", "/wiki"),
            ("https://apps.example.com/blog/", "/wiki"),
            ("https://evil.example/wiki/", "/wiki"),
            ("//evil.example/wiki/", "/wiki"),
        ] {
            assert_eq!(for_login(rd, &wiki), want, "{rd}");
        }
        let root = login("https://apps.example.com");
        assert_eq!(for_login("/blog/", &root), "/blog/", "a login at the root is not limited");
        assert_eq!(for_login("//evil.example", &root), "/");
    }
}
