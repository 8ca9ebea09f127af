//! Talking to identity providers.

pub mod discovery;
pub mod http;
