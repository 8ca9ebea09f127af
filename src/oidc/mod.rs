//! Talking to identity providers.

pub mod discovery;
pub mod http;
pub mod token_client;
