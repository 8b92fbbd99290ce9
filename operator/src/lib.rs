//! The ABStore operator: an `ABStore` resource becomes a Redis primary, replicas and Sentinel
//! with persistence, ACL users, TLS, metrics, PDBs, NetworkPolicy and the backup and prune
//! CronJobs. Reconcile is a pipeline, one module a step: `validate` → `build` → `apply` →
//! `status`; `validate`, `config` and `build` are pure and carry most tests.

pub mod apply;
pub mod build;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod error;
pub mod events;
#[cfg(test)]
pub mod fixtures;
pub mod follow;
pub mod heal;
pub mod job_runs;
pub mod leader;
pub mod local;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod pods;
pub mod render;
pub mod rollout;
pub mod rotation;
pub mod rules;
pub mod status;
pub mod strict;
pub mod telemetry;
pub mod topology;
pub mod validate;
pub mod yaml;
