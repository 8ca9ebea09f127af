//! DPoP (RFC 9449) settings: the `[dpop]` table (server nonces shared by every route) and the
//! `dpop*` keys of a bearer route.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::raw::RawRoute;
use super::validate::Check;
use crate::auth::dpop::NonceKey;

/// Proof algorithms a route accepts unless it lists its own.
const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::ES256, Algorithm::RS256, Algorithm::PS256, Algorithm::EdDSA];

/// `[dpop]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    /// Key for server nonces (or `nonce_secret_file`); replicas that share it accept each
    /// other's nonces. A random key per process when left out.
    pub nonce_secret: Option<String>,
    /// How long one nonce is handed out; it is accepted for twice that.
    pub nonce_rotation: Option<String>,
}

/// What a route does with the `DPoP` scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// DPoP-bound tokens need a proof; unbound tokens still pass as bearer tokens.
    Allowed,
    /// Every token needs a valid proof (and must be bound to its key).
    Required,
    /// The `DPoP` scheme is not looked at (as `Basic` is not); bound tokens are still refused
    /// as bearer tokens, so they never pass here.
    Disabled,
}

/// A bearer route's DPoP settings.
#[derive(Debug, Clone)]
pub struct Dpop {
    pub mode: DpopMode,
    pub algorithms: Vec<Algorithm>,
    /// `algs="..."` of the challenge, made once.
    pub algs: String,
    /// Seconds a proof's `iat` may lie in the past.
    pub max_age: u64,
    /// Seconds a proof's `iat` may lie in the future (clock skew).
    pub leeway: u64,
    /// Server nonces, when the route asks for them.
    pub nonce: Option<Arc<NonceKey>>,
}

impl Default for Dpop {
    fn default() -> Dpop {
        Dpop {
            mode: DpopMode::Allowed,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            algs: algs(DEFAULT_ALGORITHMS),
            max_age: 60,
            leeway: 5,
            nonce: None,
        }
    }
}

impl Dpop {
    /// Seconds a proof's `jti` must be remembered: every `iat` this route accepts.
    pub fn window(&self) -> u64 {
        self.max_age + self.leeway
    }
}

/// The validated `[dpop]` table; the nonce key is made only when a route uses it.
pub(super) struct Global {
    secret: Option<String>,
    rotation: Duration,
    key: Option<Arc<NonceKey>>,
}

pub(super) fn global(c: &mut Check, raw: RawDpop) -> Global {
    let rotation = c.duration("dpop.nonce_rotation", raw.nonce_rotation.as_deref(), Duration::from_secs(300));
    if rotation < Duration::from_secs(1) {
        c.err("dpop.nonce_rotation", "must be at least 1s");
    }
    if raw.nonce_secret.as_ref().is_some_and(|s| s.len() < 32) {
        c.err("dpop.nonce_secret", "must be at least 32 characters (e.g. `openssl rand -hex 32`)");
    }
    Global { secret: raw.nonce_secret, rotation, key: None }
}

impl Global {
    fn nonce_key(&mut self) -> Arc<NonceKey> {
        let (secret, rotation) = (self.secret.as_deref(), self.rotation.as_secs().max(1));
        self.key.get_or_insert_with(|| Arc::new(NonceKey::new(secret, rotation))).clone()
    }
}

/// The `dpop*` keys of bearer route `i`.
pub(super) fn route(c: &mut Check, i: usize, r: &RawRoute, global: &mut Global) -> Dpop {
    let at = |f: &str| format!("route[{i}].{f}");
    let mode = match r.dpop.as_deref() {
        None | Some("allowed") => DpopMode::Allowed,
        Some("required") => DpopMode::Required,
        Some("disabled") => DpopMode::Disabled,
        Some(other) => {
            c.err(at("dpop"), format!("unknown value {other:?}: use \"allowed\", \"required\" or \"disabled\""));
            DpopMode::Allowed
        }
    };
    let algorithms = match &r.dpop_algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(list) => list
            .iter()
            .filter_map(|a| match super::parse_asymmetric_algorithm(a) {
                Ok(alg) => Some(alg),
                Err(e) => {
                    c.err(at("dpop_algorithms"), e);
                    None
                }
            })
            .collect(),
    };
    if algorithms.is_empty() && r.dpop_algorithms.is_some() {
        c.err(at("dpop_algorithms"), "must list at least one algorithm");
    }
    let max_age = c.duration(&at("dpop_max_age"), r.dpop_max_age.as_deref(), Duration::from_secs(60)).as_secs();
    if !(1..=3600).contains(&max_age) {
        c.err(at("dpop_max_age"), "must be between 1s and 1h");
    }
    let leeway = c.duration(&at("dpop_leeway"), r.dpop_leeway.as_deref(), Duration::from_secs(5)).as_secs();
    if leeway > 300 {
        c.err(at("dpop_leeway"), "must be at most 5m");
    }
    let nonce = r.dpop_nonce.unwrap_or(false).then(|| global.nonce_key());
    if mode == DpopMode::Disabled {
        for (set, key) in [
            (r.dpop_algorithms.is_some(), "dpop_algorithms"),
            (r.dpop_max_age.is_some(), "dpop_max_age"),
            (r.dpop_leeway.is_some(), "dpop_leeway"),
            (r.dpop_nonce.is_some(), "dpop_nonce"),
        ] {
            if set {
                c.err(at(key), "has no effect with dpop = \"disabled\"");
            }
        }
    }
    Dpop { mode, algs: algs(&algorithms), algorithms, max_age, leeway, nonce }
}

/// `ES256 RS256 …`, as the challenge's `algs` parameter lists them.
fn algs(list: &[Algorithm]) -> String {
    let names: Vec<String> = list.iter().map(|a| format!("{a:?}")).collect();
    names.join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::config::{Config, LoadError, RouteAuth};

    fn load(extra: &str, route: &str) -> Result<Config, LoadError> {
        let toml = format!(
            "{extra}\n[[issuer]]\nurl = \"https://a.example\"\naudiences = [\"api\"]\n\n\
             [[route]]\nauth = \"bearer\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n{route}\n"
        );
        Config::from_str(&toml, std::path::Path::new("t.toml"), &|_| None)
    }

    fn errors(extra: &str, route: &str) -> String {
        load(extra, route).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_settings() {
        let c = load("", "").unwrap();
        let RouteAuth::Bearer(b) = &c.routes[0].auth else { panic!() };
        assert_eq!(b.dpop.mode, super::DpopMode::Allowed);
        assert_eq!(b.dpop.algs, "ES256 RS256 PS256 EdDSA");
        assert_eq!((b.dpop.max_age, b.dpop.leeway, b.dpop.nonce.is_none()), (60, 5, true));
        let c = load(
            "[dpop]\nnonce_secret = \"0123456789abcdef0123456789abcdef\"\n",
            "dpop = \"required\"\ndpop_algorithms = [\"ES384\"]\ndpop_max_age = \"2m\"\ndpop_nonce = true",
        )
        .unwrap();
        let RouteAuth::Bearer(b) = &c.routes[0].auth else { panic!() };
        assert_eq!((b.dpop.mode, b.dpop.algs.as_str(), b.dpop.max_age), (super::DpopMode::Required, "ES384", 120));
        assert!(b.dpop.nonce.is_some());
    }

    #[test]
    fn nonce_secret_from_a_file() {
        let dir = std::env::temp_dir().join(format!("tollgate-dpop-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nonce"), "0123456789abcdef0123456789abcdef\n").unwrap();
        let file = dir.join("t.toml");
        let toml = |dpop: &str| {
            format!(
                "[dpop]\n{dpop}\n[[issuer]]\nurl = \"https://a.example\"\naudiences = [\"api\"]\n\n\
                 [[route]]\nauth = \"bearer\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\ndpop_nonce = true\n"
            )
        };
        let c = Config::from_str(&toml("nonce_secret_file = \"nonce\""), &file, &|_| None).unwrap();
        let RouteAuth::Bearer(b) = &c.routes[0].auth else { panic!() };
        assert!(b.dpop.nonce.is_some());
        let e = Config::from_str(&toml("nonce_secret_file = \"absent\""), &file, &|_| None).unwrap_err().to_string();
        assert!(e.contains("dpop.nonce_secret_file") && e.contains("absent"), "{e}");
        std::fs::write(dir.join("short"), "short\n").unwrap();
        let e = Config::from_str(&toml("nonce_secret_file = \"short\""), &file, &|_| None).unwrap_err().to_string();
        assert!(e.contains("dpop.nonce_secret"), "{e}");
        let both = "nonce_secret = \"0123456789abcdef0123456789abcdef\"\nnonce_secret_file = \"nonce\"";
        let e = Config::from_str(&toml(both), &file, &|_| None).unwrap_err().to_string();
        assert!(e.contains("dpop.nonce_secret_file") && e.contains("not both"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(errors("", "dpop = \"sometimes\"").contains("route[0].dpop"));
        for alg in ["HS256", "none"] {
            assert!(
                errors("", &format!("dpop_algorithms = [\"{alg}\"]")).contains("route[0].dpop_algorithms"),
                "{alg}"
            );
        }
        assert!(errors("", "dpop_algorithms = []").contains("route[0].dpop_algorithms"));
        assert!(errors("", "dpop_max_age = \"2h\"").contains("route[0].dpop_max_age"));
        assert!(errors("", "dpop_leeway = \"10m\"").contains("route[0].dpop_leeway"));
        assert!(errors("", "dpop = \"disabled\"\ndpop_nonce = true").contains("route[0].dpop_nonce"));
        assert!(errors("[dpop]\nnonce_secret = \"short\"\n", "").contains("dpop.nonce_secret"));
        assert!(errors("[dpop]\nnonce_rotation = \"0s\"\n", "").contains("dpop.nonce_rotation"));
        assert!(errors("[dpop]\nunknown = 1\n", "").contains("unknown"));
    }
}
