//! The A/B-testing data model on Redis: the key schema, counters with event dedup, reads,
//! deterministic assignment, and connections that follow Sentinel failover.
//!
//! Every other ABStore component (operator, jobs) goes through this crate to name, write and read
//! A/B data, so the key layout is defined exactly once: in [`keys`].

pub mod assignment;
pub mod batching;
pub mod cluster;
pub mod connection;
pub mod counters;
pub mod crypto;
pub mod error;
pub mod keys;
pub mod reads;
pub mod sticky;

pub use error::{Error, Result};
