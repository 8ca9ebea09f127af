//! The route table: which route serves a host, method and normalised path (`path.rs`).
//!
//! Routes are grouped into slots, one per host and path prefix. The most specific slot whose
//! prefix covers the path owns it (longest prefix; for equal prefixes an exact host, then a
//! wildcard, then no host); within the slot a route whose `methods` lists the request's method
//! wins over one without `methods`. A slot that has no route for the method answers 405: a
//! method restriction never hands the request to a less specific route (which may be public).
//!
//! The table holds whatever stands for a configured route (`R`): the gateway's live routes,
//! which carry handles to what they refer to, or plain configured ones.

use std::borrow::Borrow;
use std::collections::HashMap;

use http::{HeaderValue, Method};

use crate::authority::HostPattern;
use crate::config::{MethodSet, Route};

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

/// What the table says about a request.
#[derive(Debug)]
pub enum Found<'r, R = Route> {
    Route(&'r R),
    /// The path's routes serve other methods only: 405 with `allow`. `route` is the slot's
    /// route whose CORS policy and metrics the answer uses (the first with `cors`, else the
    /// first in the file).
    MethodNotAllowed {
        allow: &'r HeaderValue,
        route: &'r R,
    },
    /// The method was not given ([`Router::find_any_method`]) and the path's routes differ by
    /// method.
    MethodUnknown,
    NoRoute,
}

impl<'r, R> Found<'r, R> {
    /// The route, when one serves the request.
    pub fn route(self) -> Option<&'r R> {
        match self {
            Found::Route(r) => Some(r),
            _ => None,
        }
    }
}

/// The routes of one host and path prefix.
#[derive(Debug)]
struct Slot {
    path: String,
    /// The route without `methods`.
    any: Option<usize>,
    /// Routes with `methods`, in file order (validation keeps their sets disjoint).
    by_method: Vec<(MethodSet, usize)>,
    /// `Allow` for a 405: the union of `by_method`, HEAD added with GET.
    allow: HeaderValue,
    representative: usize,
}

/// The route table: slots grouped by host kind, each group sorted by prefix length, longest first.
#[derive(Debug)]
pub struct Router<R = Route> {
    routes: Vec<R>,
    slots: Vec<Slot>,
    exact: HashMap<String, Vec<usize>>,
    suffix: Vec<(String, Vec<usize>)>,
    any: Vec<usize>,
}

impl<R: Borrow<Route>> Router<R> {
    pub fn new(routes: Vec<R>) -> Router<R> {
        let mut slots: Vec<Slot> = Vec::new();
        let mut slot_of: HashMap<(u8, &str, &str), usize> = HashMap::new();
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut suffix: Vec<(String, Vec<usize>)> = Vec::new();
        let mut any = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let r: &Route = r.borrow();
            let key = match &r.host {
                Some(HostPattern::Exact(h)) => (1, h.as_str(), r.path.as_str()),
                Some(HostPattern::Suffix(x)) => (2, x.as_str(), r.path.as_str()),
                None => (0, "", r.path.as_str()),
            };
            let s = match slot_of.get(&key) {
                Some(&s) => s,
                None => {
                    let s = slots.len();
                    slots.push(Slot::new(&r.path, i));
                    slot_of.insert(key, s);
                    match &r.host {
                        Some(HostPattern::Exact(h)) => exact.entry(h.clone()).or_default().push(s),
                        Some(HostPattern::Suffix(x)) => match suffix.iter_mut().find(|(k, _)| k == x) {
                            Some((_, v)) => v.push(s),
                            None => suffix.push((x.clone(), vec![s])),
                        },
                        None => any.push(s),
                    }
                    s
                }
            };
            slots[s].add(i, r);
        }
        for slot in &mut slots {
            slot.finish(&routes);
        }
        let by_len = |v: &mut Vec<usize>| v.sort_by_key(|&s| std::cmp::Reverse(slots[s].path.len()));
        exact.values_mut().for_each(by_len);
        suffix.iter_mut().for_each(|(_, v)| by_len(v));
        by_len(&mut any);
        // The most specific wildcard first.
        suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Router { routes, slots, exact, suffix, any }
    }

    pub fn routes(&self) -> &[R] {
        &self.routes
    }

    /// The route for `host` (lower case, no port), `method` and a normalised `path`.
    pub fn find(&self, host: &str, method: &Method, path: &str) -> Found<'_, R> {
        match self.slot(host, path) {
            Some(slot) => self.pick(slot, Some(method)),
            None => Found::NoRoute,
        }
    }

    /// Like [`Router::find`] for a request whose method is not known (forward-auth without
    /// `X-Forwarded-Method`): found only where the method would not change the route.
    pub fn find_any_method(&self, host: &str, path: &str) -> Found<'_, R> {
        match self.slot(host, path) {
            Some(slot) => self.pick(slot, None),
            None => Found::NoRoute,
        }
    }

    /// The slot owning the path: the longest prefix; for equal prefixes an exact host beats a
    /// wildcard, which beats no host.
    fn slot(&self, host: &str, path: &str) -> Option<&Slot> {
        let mut best: Option<&Slot> = None;
        let mut consider = |group: &[usize]| {
            if let Some(s) = group.iter().map(|&s| &self.slots[s]).find(|s| prefix_matches(&s.path, path)) {
                if best.is_none_or(|b| s.path.len() > b.path.len()) {
                    best = Some(s);
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
        best
    }

    fn pick<'r>(&'r self, slot: &'r Slot, method: Option<&Method>) -> Found<'r, R> {
        let route = |i: usize| Found::Route(&self.routes[i]);
        if slot.by_method.is_empty() {
            // The common case: no `methods` on this path.
            return slot.any.map_or(Found::NoRoute, route);
        }
        let Some(method) = method else { return Found::MethodUnknown };
        let bit = MethodSet::bit(method);
        let listed = slot.by_method.iter().find(|(m, _)| m.contains_bit(bit));
        // HEAD goes where GET goes unless a route lists HEAD itself.
        let listed = listed.or_else(|| {
            (method == Method::HEAD).then(|| slot.by_method.iter().find(|(m, _)| m.serves(method))).flatten()
        });
        match (listed, slot.any) {
            (Some(&(_, i)), _) | (None, Some(i)) => route(i),
            (None, None) => Found::MethodNotAllowed { allow: &slot.allow, route: &self.routes[slot.representative] },
        }
    }
}

impl Slot {
    fn new(path: &str, first: usize) -> Slot {
        Slot {
            path: path.to_string(),
            any: None,
            by_method: Vec::new(),
            allow: HeaderValue::from_static(""),
            representative: first,
        }
    }

    fn add(&mut self, i: usize, r: &Route) {
        match r.methods {
            Some(m) => self.by_method.push((m, i)),
            // Validation allows one; were there two, the first would win as before.
            None => {
                self.any.get_or_insert(i);
            }
        }
    }

    fn finish<R: Borrow<Route>>(&mut self, routes: &[R]) {
        let all = self.by_method.iter().fold(MethodSet::default(), |acc, (m, _)| acc.union(*m));
        self.allow = HeaderValue::from_str(&all.header_text()).unwrap_or(HeaderValue::from_static(""));
        let members = self.by_method.iter().map(|(_, i)| *i).chain(self.any);
        let mut members: Vec<usize> = members.collect();
        members.sort_unstable();
        self.representative = members
            .iter()
            .copied()
            .find(|&i| routes[i].borrow().cors.is_some())
            .or(members.first().copied())
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: Option<&str>, path: &str) -> Route {
        Route { host: host.map(|h| HostPattern::parse(h).unwrap()), ..Route::for_tests(name, path) }
    }

    fn with_methods(name: &str, path: &str, methods: &[&str]) -> Route {
        let list: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
        Route { methods: Some(MethodSet::parse(&list).unwrap()), ..Route::for_tests(name, path) }
    }

    fn name<'r>(r: &'r Router, host: &str, method: &str, path: &str) -> Option<&'r str> {
        match r.find(host, &Method::from_bytes(method.as_bytes()).unwrap(), path) {
            Found::Route(r) => Some(r.name.as_str()),
            _ => None,
        }
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
        let name = |h: &str, p: &str| name(&r, h, "GET", p);
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
        assert!(matches!(r.find("api.test", &Method::GET, "/other"), Found::NoRoute));
        assert!(matches!(r.find("other.test", &Method::GET, "/api/x"), Found::NoRoute));
    }

    #[test]
    fn a_route_listing_the_method_wins_over_one_without() {
        let r = Router::new(vec![
            route("root", None, "/"),
            route("write", None, "/articles/"),
            with_methods("read", "/articles/", &["GET"]),
            with_methods("dav", "/articles/", &["PROPFIND"]),
        ]);
        assert_eq!(name(&r, "x", "GET", "/articles/1"), Some("read"));
        assert_eq!(name(&r, "x", "HEAD", "/articles/1"), Some("read"), "HEAD goes with GET");
        assert_eq!(name(&r, "x", "POST", "/articles/1"), Some("write"));
        assert_eq!(name(&r, "x", "DELETE", "/articles"), Some("write"));
        assert_eq!(name(&r, "x", "PROPFIND", "/articles"), Some("dav"));
        assert_eq!(name(&r, "x", "BREW", "/articles"), Some("write"), "an extension method takes the unlisted route");
        assert_eq!(name(&r, "x", "get", "/articles"), Some("write"), "methods are case-sensitive");
        assert_eq!(name(&r, "x", "POST", "/other"), Some("root"));
    }

    #[test]
    fn only_other_methods_is_405_never_a_shorter_prefix() {
        let r = Router::new(vec![
            route("public-root", None, "/"),
            with_methods("read", "/articles/", &["GET"]),
            with_methods("write", "/articles/", &["POST", "PUT", "DELETE"]),
            with_methods("head-only", "/probe", &["HEAD"]),
        ]);
        assert_eq!(name(&r, "x", "PUT", "/articles/1"), Some("write"));
        match r.find("x", &Method::PATCH, "/articles/1") {
            Found::MethodNotAllowed { allow, route } => {
                assert_eq!(allow, "GET, HEAD, POST, PUT, DELETE");
                assert_eq!(route.name, "read");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(r.find("x", &Method::GET, "/probe"), Found::MethodNotAllowed { .. }),
            "GET is not implied by HEAD"
        );
        assert_eq!(name(&r, "x", "HEAD", "/probe"), Some("head-only"));
        assert_eq!(name(&r, "x", "PATCH", "/other"), Some("public-root"));
    }

    #[test]
    fn a_route_listing_head_takes_it_from_get() {
        let r = Router::new(vec![with_methods("get", "/", &["GET"]), with_methods("head", "/", &["HEAD"])]);
        assert_eq!(name(&r, "x", "GET", "/"), Some("get"));
        assert_eq!(name(&r, "x", "HEAD", "/"), Some("head"));
    }

    #[test]
    fn unknown_method_only_where_it_does_not_matter() {
        let r = Router::new(vec![
            route("plain", None, "/plain/"),
            with_methods("read", "/split/", &["GET"]),
            route("write", None, "/split/"),
        ]);
        assert!(matches!(r.find_any_method("x", "/plain/a"), Found::Route(r) if r.name == "plain"));
        assert!(matches!(r.find_any_method("x", "/split/a"), Found::MethodUnknown));
        assert!(matches!(r.find_any_method("x", "/none"), Found::NoRoute));
    }

    #[test]
    fn methods_split_slots_per_host() {
        let mut exact = with_methods("exact-read", "/a", &["GET"]);
        exact.host = Some(HostPattern::parse("h.test").unwrap());
        let r = Router::new(vec![exact, route("any-host", None, "/a")]);
        assert_eq!(name(&r, "h.test", "GET", "/a"), Some("exact-read"));
        assert!(
            matches!(r.find("h.test", &Method::POST, "/a"), Found::MethodNotAllowed { .. }),
            "the exact host owns the path"
        );
        assert_eq!(name(&r, "other.test", "POST", "/a"), Some("any-host"));
    }
}
