//! Stores shared between replicas.

pub mod redis;
