//! Talking to identity providers.

pub mod client_auth;
pub mod discovery;
pub mod http;
pub mod token_client;
