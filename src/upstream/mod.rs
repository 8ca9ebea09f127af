//! The upstream side: header hygiene and forwarding.

pub mod challenge;
pub mod credentials;
pub mod exchange;
pub mod grpc;
mod h2;
pub mod headers;
pub mod proxy;
pub mod tunnel;
