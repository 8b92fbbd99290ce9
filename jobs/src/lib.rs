//! `abstore-jobs`: backup, restore, verify, list and prune of ABStore data, run by the
//! operator's CronJobs, by hand, or against managed Redis (SCAN only: no SYNC, CONFIG or KEYS).

pub mod storage;
