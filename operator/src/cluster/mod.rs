//! Cluster mode (`spec.mode: cluster`, issue 20): the store is a Redis Cluster of
//! `spec.cluster.shards` shards with `replicasPerShard` replicas each. The operator forms and
//! repairs it the way [`crate::heal`] does for Sentinel mode: observe every member, decide purely
//! ([`plan`]), apply (`CLUSTER MEET` / `ADDSLOTSRANGE` / `REPLICATE` / `FORGET`). Failover stays
//! the cluster's own.

pub mod heal;
pub mod kubernetes;
pub mod nodes;
pub mod plan;
pub mod reshard;
pub mod rollout;
