//! abstore-api: the tracking API (issue 21). A Lamed/Gimel-compatible HTTP endpoint — `track`,
//! `experiment`, `all` — on the ABStore data model, so an Alephbet client switches by changing a
//! URL. Work in progress: see docs/api.md.

pub mod dashboard;
pub mod hourly;
pub mod key;
pub mod lamed;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod stats;
pub mod store;
