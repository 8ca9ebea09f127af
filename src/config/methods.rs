//! Sets of HTTP methods (a route's `methods`, a CORS policy's `allowed_methods`) as bit masks,
//! so that matching a request's method is a lookup, not a string search.

use http::Method;

/// The methods a configuration may name, in the order `Allow` lists them: RFC 9110's, PATCH
/// (RFC 5789) and WebDAV's (RFC 4918). Any other name in a file is a typo more often than an
/// extension method.
const KNOWN: [&str; 16] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
];

const GET: u16 = 1;
const HEAD: u16 = 1 << 1;

/// A set of known methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MethodSet(u16);

impl MethodSet {
    /// Parses a list as written (any case; stored upper case). Errors name the item (`[i]`).
    pub fn parse(items: &[String]) -> Result<MethodSet, Vec<(usize, String)>> {
        let mut set = MethodSet(0);
        let mut errors = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let upper = item.trim().to_ascii_uppercase();
            match KNOWN.iter().position(|k| *k == upper) {
                Some(bit) if set.0 & (1 << bit) != 0 => errors.push((i, format!("{upper} is listed twice"))),
                Some(bit) => set.0 |= 1 << bit,
                None => errors.push((i, format!("unknown method {item:?}: use one of {}", KNOWN.join(", ")))),
            }
        }
        if items.is_empty() {
            errors.push((usize::MAX, "an empty list matches nothing: name methods, or leave the key out".into()));
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// The bit of a request's method; 0 for a method outside [`KNOWN`] (no set holds it).
    pub fn bit(method: &Method) -> u16 {
        // The common methods first, compared as `Method` constants (no string compare).
        let standard = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
        ];
        if let Some(i) = standard.iter().position(|m| m == method) {
            return 1 << i;
        }
        KNOWN[standard.len()..].iter().position(|k| *k == method.as_str()).map_or(0, |i| 1 << (i + standard.len()))
    }

    /// Holds `method` itself (HEAD is not implied here; see [`MethodSet::serves`]).
    pub fn contains_bit(self, bit: u16) -> bool {
        bit != 0 && self.0 & bit != 0
    }

    /// Holds `method`, counting HEAD as served by a set with GET (RFC 9110 §9.3.2).
    pub fn serves(self, method: &Method) -> bool {
        let bit = MethodSet::bit(method);
        self.contains_bit(bit) || (bit == HEAD && self.0 & GET != 0)
    }

    pub fn union(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 | other.0)
    }

    pub fn intersects(self, other: MethodSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names, HEAD added when GET is there: `GET, HEAD, POST` (for `Allow` and
    /// `Access-Control-Allow-Methods`).
    pub fn header_text(self) -> String {
        let with_head = if self.0 & GET != 0 { self.0 | HEAD } else { self.0 };
        let names: Vec<&str> =
            KNOWN.iter().enumerate().filter(|(i, _)| with_head & (1 << i) != 0).map(|(_, k)| *k).collect();
        names.join(", ")
    }

    /// The names listed, in [`KNOWN`] order (for messages).
    pub fn names(self) -> Vec<&'static str> {
        KNOWN.iter().enumerate().filter(|(i, _)| self.0 & (1 << i) != 0).map(|(_, k)| *k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> Result<MethodSet, Vec<(usize, String)>> {
        MethodSet::parse(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_known_methods_in_any_case() {
        let s = set(&["get", "Post", "PROPFIND"]).unwrap();
        assert_eq!(s.header_text(), "GET, HEAD, POST, PROPFIND");
        assert!(s.serves(&Method::GET) && s.serves(&Method::HEAD) && s.serves(&Method::POST));
        assert!(s.serves(&Method::from_bytes(b"PROPFIND").unwrap()));
        assert!(!s.serves(&Method::PUT));
        // Methods are case-sensitive on the wire (RFC 9110 §9.1): `get` is not GET.
        assert!(!s.serves(&Method::from_bytes(b"get").unwrap()));
        assert!(!s.serves(&Method::from_bytes(b"BREW").unwrap()));
        assert_eq!(set(&["HEAD"]).unwrap().header_text(), "HEAD");
    }

    #[test]
    fn refuses_unknown_duplicate_and_empty() {
        let e = set(&["GET", "FETCH", "get"]).unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, 1);
        assert!(e[0].1.contains("unknown method \"FETCH\""), "{e:?}");
        assert_eq!(e[1].0, 2);
        assert!(e[1].1.contains("twice"), "{e:?}");
        assert!(set(&[]).is_err());
    }

    #[test]
    fn every_known_method_has_its_own_bit() {
        for (i, k) in KNOWN.iter().enumerate() {
            assert_eq!(MethodSet::bit(&Method::from_bytes(k.as_bytes()).unwrap()), 1 << i, "{k}");
        }
    }
}
