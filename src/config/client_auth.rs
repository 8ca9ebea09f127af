//! How tollgate authenticates to a provider as an OAuth client, for every kind of request
//! (`[[client]]`, `[login]`, `[issuer.introspection]`): the settings, validated.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey};

use super::validate::Check;
use super::*;
use crate::secret::Secret;

/// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
pub(super) fn client_auth(
    c: &mut Check,
    at: &str,
    method: Option<&str>,
    secret: Option<String>,
    key_file: Option<&str>,
    base_dir: &Path,
) -> ClientAuth {
    let need_secret = |c: &mut Check, secret: Option<String>| {
        secret.map(Secret::new).unwrap_or_else(|| {
            c.err(format!("{at}.client_secret"), "required (or client_secret_file)");
            Secret::new("")
        })
    };
    match method {
        None | Some("client_secret_basic") => ClientAuth::ClientSecretBasic(need_secret(c, secret)),
        Some("client_secret_post") => ClientAuth::ClientSecretPost(need_secret(c, secret)),
        Some("private_key_jwt") => {
            let Some(file) = key_file else {
                c.err(format!("{at}.private_key_file"), "required with auth_method = \"private_key_jwt\"");
                return ClientAuth::ClientSecretBasic(Secret::new(""));
            };
            match read_private_key(&base_dir.join(file)) {
                Ok(k) => ClientAuth::PrivateKeyJwt(k),
                Err(e) => {
                    c.err(format!("{at}.private_key_file"), e);
                    ClientAuth::ClientSecretBasic(Secret::new(""))
                }
            }
        }
        Some(other) => {
            c.err(
                format!("{at}.auth_method"),
                format!("unknown method {other:?}: use client_secret_basic, client_secret_post or private_key_jwt"),
            );
            ClientAuth::ClientSecretBasic(Secret::new(""))
        }
    }
}

fn read_private_key(path: &Path) -> Result<PrivateKey, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (key, alg) = if let Ok(k) = EncodingKey::from_rsa_pem(&pem) {
        (k, Algorithm::RS256)
    } else if let Ok(k) = EncodingKey::from_ec_pem(&pem) {
        (k, Algorithm::ES256)
    } else if let Ok(k) = EncodingKey::from_ed_pem(&pem) {
        (k, Algorithm::EdDSA)
    } else {
        return Err(format!("{}: not an RSA, EC P-256 or Ed25519 private key in PEM", path.display()));
    };
    Ok(PrivateKey { key: Arc::new(key), alg })
}
