//! The route table: which route serves a host and normalised path (`path.rs`).

use std::collections::HashMap;

use crate::authority::HostPattern;
use crate::config::Route;

/// True when `path` is under `prefix` on a segment boundary: `/api` and `/api/` both match
/// `/api`, `/api/x` and `/api;jsessionid=1/x` (servlet containers drop `;params`, so `;` ends a
/// segment too), never `/apix`. Matching is case-sensitive.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let base = prefix.strip_suffix('/').unwrap_or(prefix);
    path.starts_with(base) && matches!(path.as_bytes().get(base.len()), None | Some(b'/') | Some(b';'))
}

/// The route table: routes grouped by host kind, each group sorted by prefix length, longest first.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    exact: HashMap<String, Vec<usize>>,
    suffix: Vec<(String, Vec<usize>)>,
    any: Vec<usize>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut suffix: Vec<(String, Vec<usize>)> = Vec::new();
        let mut any = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match &r.host {
                Some(HostPattern::Exact(h)) => exact.entry(h.clone()).or_default().push(i),
                Some(HostPattern::Suffix(s)) => match suffix.iter_mut().find(|(k, _)| k == s) {
                    Some((_, v)) => v.push(i),
                    None => suffix.push((s.clone(), vec![i])),
                },
                None => any.push(i),
            }
        }
        let by_len = |v: &mut Vec<usize>| v.sort_by_key(|&i| std::cmp::Reverse(routes[i].path.len()));
        exact.values_mut().for_each(by_len);
        suffix.iter_mut().for_each(|(_, v)| by_len(v));
        by_len(&mut any);
        // The most specific wildcard first.
        suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Router { routes, exact, suffix, any }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for `host` (lower case, no port) and a normalised `path`. The longest prefix
    /// wins; for equal prefixes an exact host beats a wildcard, which beats no host.
    pub fn find(&self, host: &str, path: &str) -> Option<&Route> {
        let mut best: Option<usize> = None;
        let mut consider = |group: &[usize]| {
            if let Some(&i) = group.iter().find(|&&i| prefix_matches(&self.routes[i].path, path)) {
                if best.is_none_or(|b| self.routes[i].path.len() > self.routes[b].path.len()) {
                    best = Some(i);
                }
            }
        };
        if let Some(group) = self.exact.get(host) {
            consider(group);
        }
        for (suffix, group) in &self.suffix {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                consider(group);
            }
        }
        consider(&self.any);
        best.map(|i| &self.routes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: Option<&str>, path: &str) -> Route {
        Route { host: host.map(|h| HostPattern::parse(h).unwrap()), ..Route::for_tests(name, path) }
    }

    #[test]
    fn longest_prefix_and_host_specificity() {
        let r = Router::new(vec![
            route("root", None, "/"),
            route("api", None, "/api"),
            route("api-v2", None, "/api/v2/"),
            route("wild", Some("*.example.com"), "/api"),
            route("exact", Some("a.example.com"), "/api"),
        ]);
        let name = |h: &str, p: &str| r.find(h, p).map(|r| r.name.as_str());
        assert_eq!(name("x", "/"), Some("root"));
        assert_eq!(name("x", "/api"), Some("api"));
        assert_eq!(name("x", "/api/x"), Some("api"));
        assert_eq!(name("x", "/apix"), Some("root"));
        assert_eq!(name("x", "/api;jsessionid=1/secret"), Some("api"), "`;` ends a segment");
        assert_eq!(name("x", "/api/v2"), Some("api-v2"), "a trailing-slash prefix matches without it");
        assert_eq!(name("x", "/api/v2;x"), Some("api-v2"));
        assert_eq!(name("x", "/api/v2/x"), Some("api-v2"));
        assert_eq!(name("b.example.com", "/api/x"), Some("wild"));
        assert_eq!(name("a.example.com", "/api/x"), Some("exact"));
        assert_eq!(name("example.com", "/api/x"), Some("api"));
        assert_eq!(name("a.example.com", "/api/v2/x"), Some("api-v2"));
    }

    #[test]
    fn no_match_without_catch_all() {
        let r = Router::new(vec![route("api", Some("api.test"), "/api/")]);
        assert!(r.find("api.test", "/other").is_none());
        assert!(r.find("other.test", "/api/x").is_none());
    }
}
