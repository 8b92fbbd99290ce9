//! `abstore-jobs`: backup, restore, verify, list and prune of ABStore data, run by the
//! operator's CronJobs, by hand, or against managed Redis (SCAN only: no SYNC, CONFIG or KEYS).
//!
//! Each command is a module with an options struct and a `run` returning a summary:
//! [`backup::run`], [`restore::run`], [`verify::run`], [`list::run`], [`prune::run`]. [`cli`] is
//! the binary.

pub mod archive;
pub mod backup;
pub mod cli;
pub mod error;
pub mod format;
pub mod list;
pub mod progress;
pub mod prune;
pub mod redis;
pub mod restore;
pub mod storage;
pub mod summary;
pub mod verify;

pub use error::{JobError, Result};
