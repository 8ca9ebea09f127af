//! Reading an upstream's `WWW-Authenticate` (RFC 9110 §11.6.1): does it say the Bearer token
//! tollgate sent is no good (`error="invalid_token"`, RFC 6750 §3.1)? Parsed in place, without
//! allocating, and only for 401 answers.
//!
//! A header value is a comma-separated list of challenges, `scheme [token68 / auth-param *("," auth-param)]`;
//! several header lines are one list (RFC 9110 §5.3), so a challenge's parameters may continue
//! on the next line. Scheme and parameter names are case-insensitive; an error code is not
//! (RFC 6750 §3: it is a fixed string); a value is a token or a quoted string.

use http::header::WWW_AUTHENTICATE;
use http::HeaderMap;

const INVALID_TOKEN: &[u8] = b"invalid_token";

/// A `Bearer` challenge among the headers has `error` = `invalid_token`.
pub fn invalid_token(headers: &HeaderMap) -> bool {
    let mut in_bearer = false;
    headers.get_all(WWW_AUTHENTICATE).iter().any(|v| Cursor { s: v.as_bytes(), i: 0 }.scan(&mut in_bearer))
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Walks one header line's list elements; `in_bearer` carries the current challenge's
    /// scheme from one line to the next.
    fn scan(&mut self, in_bearer: &mut bool) -> bool {
        loop {
            self.skip(|b| b == b',' || is_ws(b));
            if self.i >= self.s.len() {
                return false;
            }
            let name = self.token();
            if name.is_empty() {
                self.skip_element();
                continue;
            }
            self.skip(is_ws);
            let param = if self.peek() == Some(b'=') {
                name
            } else {
                // A new challenge; after it, nothing, a token68 or its first parameter.
                *in_bearer = name.eq_ignore_ascii_case(b"bearer");
                if matches!(self.peek(), None | Some(b',')) {
                    continue;
                }
                let first = self.token();
                self.skip(is_ws);
                if first.is_empty() || self.peek() != Some(b'=') {
                    self.skip_element();
                    continue;
                }
                first
            };
            if self.param_is_invalid_token(param) && *in_bearer {
                return true;
            }
        }
    }

    /// At `=` after the name `name`: reads the value (a token or a quoted string) and says
    /// whether this is `error=invalid_token`. A token68 (`abc==`) or anything malformed is
    /// skipped to the next element.
    fn param_is_invalid_token(&mut self, name: &[u8]) -> bool {
        self.i += 1;
        self.skip(is_ws);
        let is_error = name.eq_ignore_ascii_case(b"error");
        let matched = match self.peek() {
            Some(b'"') => self.quoted_equals(INVALID_TOKEN),
            Some(b) if is_tchar(b) => self.token() == INVALID_TOKEN,
            _ => {
                self.skip_element();
                return false;
            }
        };
        self.skip(is_ws);
        if !matches!(self.peek(), None | Some(b',')) {
            self.skip_element();
            return false;
        }
        is_error && matched
    }

    /// Reads a quoted string (at its opening quote), unescaping as it compares with `want`.
    /// An unterminated string matches nothing.
    fn quoted_equals(&mut self, want: &[u8]) -> bool {
        self.i += 1;
        let mut n = 0;
        let mut same = true;
        while let Some(mut b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => return same && n == want.len(),
                b'\\' => match self.peek() {
                    Some(e) => {
                        self.i += 1;
                        b = e;
                    }
                    None => return false,
                },
                _ => {}
            }
            same &= want.get(n) == Some(&b);
            n += 1;
        }
        false
    }

    fn token(&mut self) -> &'a [u8] {
        let (s, start) = (self.s, self.i);
        self.skip(is_tchar);
        &s[start..self.i]
    }

    /// Past the next comma outside a quoted string, or to the end.
    fn skip_element(&mut self) {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => quoted = !quoted,
                b'\\' if quoted => self.i += 1,
                b',' if !quoted => return,
                _ => {}
            }
        }
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn says(lines: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_str(l).unwrap());
        }
        invalid_token(&h)
    }

    #[test]
    fn bearer_invalid_token_in_its_spellings() {
        assert!(says(&[r#"Bearer error="invalid_token""#]));
        assert!(says(&["Bearer error=invalid_token"]));
        assert!(says(&[r#"bearer realm="api", ERROR = "invalid_token", error_description="expired""#]));
        assert!(says(&[r#"BEARER realm="a,b\"c", error="invalid_token""#]));
        assert!(says(&[r#"Bearer error="invalid\_token""#]), "a quoted-pair is the character itself");
        // Several challenges in one line, Bearer not first.
        assert!(says(&[r#"Basic realm="x", Bearer realm="y", error="invalid_token""#]));
        assert!(says(&[r#"Newauth abc==, Bearer error="invalid_token""#]));
        assert!(says(&["DPoP algs=\"ES256\"", r#"Bearer error="invalid_token""#]));
        // One challenge across two lines (the lines are one list).
        assert!(says(&[r#"Bearer realm="y""#, r#"error="invalid_token""#]));
    }

    #[test]
    fn anything_else_is_not_a_rejected_token() {
        assert!(!says(&[]));
        assert!(!says(&["Bearer"]));
        assert!(!says(&[r#"Bearer realm="api""#]));
        assert!(!says(&[r#"Bearer error="insufficient_scope""#]));
        assert!(!says(&[r#"Bearer error="INVALID_TOKEN""#]), "error codes are case-sensitive");
        assert!(!says(&[r#"Bearer error="invalid_token_x""#]));
        assert!(!says(&[r#"Bearer error="invalid_tok""#]));
        assert!(!says(&[r#"Bearer error_description="invalid_token""#]));
        assert!(!says(&[r#"Bearer realm="error=\"invalid_token\"""#]), "inside a quoted value");
        // Another scheme's parameter, also when Bearer came first.
        assert!(!says(&[r#"DPoP error="invalid_token""#]));
        assert!(!says(&[r#"Bearer realm="a", DPoP error="invalid_token""#]));
        assert!(!says(&[r#"Bearer realm="a""#, r#"DPoP error="invalid_token""#]));
        assert!(!says(&["Bearer abc=="]));
        // Malformed: unterminated, stray bytes; never a panic.
        assert!(!says(&[r#"Bearer error="invalid_token"#]));
        assert!(!says(&[r#"Bearer error="invalid_token" x"#]));
        assert!(!says(&["Bearer error="]));
        assert!(!says(&["=,=,\"\\"]));
        assert!(!says(&[r#"Bearer error="\"#]));
    }
}
