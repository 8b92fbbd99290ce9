//! Follows Sentinel's `+switch-master` events so the primary label moves within a second of a
//! failover instead of at the next reconcile.
