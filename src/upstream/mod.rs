//! The upstream side: header hygiene and forwarding.

pub mod headers;
pub mod proxy;
