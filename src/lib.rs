//! tollgate: a reverse-proxy gateway that enforces OAuth 2.0 / OpenID Connect tokens.
//!
//! The request pipeline lives in [`gateway`]; see README.md for the picture.

#![forbid(unsafe_code)]

pub mod auth;
pub mod authority;
pub mod body;
pub mod client_cert;
pub mod config;
pub mod cors;
pub mod dev;
pub mod error;
pub mod gateway;
pub mod header_policy;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod oidc;
pub mod path;
pub mod router;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod util;
