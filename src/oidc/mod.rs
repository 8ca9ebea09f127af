//! Talking to identity providers.

pub mod client_auth;
pub mod discovery;
pub mod http;
pub mod token_client;

/// An identity provider's JSON answer as `T`, only when the whole body is one JSON object
/// that serde_json can hold: serde reads a struct from an array too, by position (`["t",
/// "Bearer"]` was a token), and skips members it ignores without checking them, so a body with
/// `1e999` or a lone surrogate in an unknown member passed as a token or a refusal (found by the
/// `exchange_answer` fuzz target). Repeated members of `T`'s fields stay refused (serde's
/// derive), rather than read last-wins.
pub fn answer_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    serde_json::from_slice::<serde_json::Value>(body).map_err(|e| e.to_string())?;
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// The most of a provider's `error_description` that is repeated in answers and logs.
pub const MAX_DESCRIPTION: usize = 200;

/// At most [`MAX_DESCRIPTION`] characters, control characters replaced: the text is the
/// provider's and goes into response bodies and logs.
pub fn printable(s: &str) -> String {
    s.chars().take(MAX_DESCRIPTION).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::token_client::{parse_response, TokenError};
    use http::StatusCode;

    #[test]
    fn an_answer_is_one_json_object_serde_can_hold() {
        let ok = br#"{"access_token":"t","token_type":"Bearer"}"#;
        assert!(parse_response(StatusCode::OK, ok).is_ok());
        for body in [
            &br#"["t","Bearer"]"#[..],                                     // a struct read from an array
            br#"{"access_token":"t","token_type":"Bearer","x":1e999}"#,    // skipped, never held
            br#"{"access_token":"t","token_type":"Bearer","x":"\ud800"}"#, // a lone surrogate
            br#"{"access_token":"t","access_token":"u","token_type":"Bearer"}"#, // repeated
        ] {
            let got = parse_response(StatusCode::OK, body);
            assert!(matches!(got, Err(TokenError::Invalid(_))), "{}", String::from_utf8_lossy(body));
        }
        let refused = parse_response(StatusCode::BAD_REQUEST, br#"{"error":"invalid_grant","x":1e999}"#);
        assert!(matches!(refused, Err(TokenError::Refused { error, .. }) if error == "HTTP 400 Bad Request"));
        let line = parse_response(StatusCode::BAD_REQUEST, b"{\"error\":\"e\",\"error_description\":\"a\\nb\"}");
        assert!(matches!(refused_description(line).as_deref(), Some("a b")), "control characters replaced");
    }

    fn refused_description(r: Result<super::token_client::TokenResponse, TokenError>) -> Option<String> {
        match r {
            Err(TokenError::Refused { description, .. }) => description,
            _ => None,
        }
    }
}
