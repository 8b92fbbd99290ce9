//! Follows Sentinel's `+switch-master` events so the primary label moves within a second of a
//! failover instead of at the next reconcile.
//!
//! Every sentinel publishes `+switch-master <master> <old-host> <old-port> <new-host> <new-port>`
//! on its Pub/Sub channel of that name when it has switched to a new primary. The follower keeps
//! one subscription per sentinel (any one of them is enough; all of them means a sentinel that is
//! down or partitioned does not hide the event) and hands each event for the store's master name
//! to the caller, which relabels the pods. A sentinel that cannot be reached is retried with a
//! backoff; the reconcile's own heal pass labels the primary too, so an event missed while no
//! subscription was up is repaired at the next reconcile.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::heal::{Endpoint, HealTarget, IO_TIMEOUT, client_for};

/// Sentinel's event channel for a completed switch to a new primary.
pub const SWITCH_MASTER_CHANNEL: &str = "+switch-master";
/// First retry after a sentinel could not be subscribed to; doubled up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest wait between attempts to subscribe to a sentinel.
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// One `+switch-master` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchMaster {
    /// The master name.
    pub master: String,
    /// The primary Sentinel switched away from.
    pub from: Endpoint,
    /// The new primary.
    pub to: Endpoint,
    /// The sentinel that published it.
    pub sentinel: Endpoint,
}

/// Parses the payload `<master> <old-host> <old-port> <new-host> <new-port>`.
pub fn parse_switch_master(payload: &str, sentinel: &Endpoint) -> Option<SwitchMaster> {
    let mut parts = payload.split_ascii_whitespace();
    let master = parts.next()?.to_owned();
    let from = Endpoint::new(parts.next()?, parts.next()?.parse().ok()?);
    let to = Endpoint::new(parts.next()?, parts.next()?.parse().ok()?);
    if parts.next().is_some() {
        return None;
    }
    Some(SwitchMaster {
        master,
        from,
        to,
        sentinel: sentinel.clone(),
    })
}

/// Subscribes to `+switch-master` on every sentinel of `target` and sends each event about
/// `target.master_name` to `events` (one per sentinel that saw the switch: receivers act
/// idempotently). Runs until `events` is closed; a lost or refused subscription is retried after
/// [`RETRY_MIN`], doubling up to [`RETRY_MAX`].
pub async fn subscribe_switches(target: HealTarget, events: mpsc::Sender<SwitchMaster>) {
    let followers = target
        .sentinels
        .iter()
        .map(|sentinel| follow_sentinel(&target, sentinel, &events));
    futures::future::join_all(followers).await;
}

async fn follow_sentinel(
    target: &HealTarget,
    sentinel: &Endpoint,
    events: &mpsc::Sender<SwitchMaster>,
) {
    let mut retry = RETRY_MIN;
    while !events.is_closed() {
        match subscribe_once(target, sentinel, events).await {
            Ok(()) => {
                // The subscription was up and ended (the sentinel restarted or the link broke):
                // try again soon.
                retry = RETRY_MIN;
                tracing::debug!(%sentinel, "+switch-master subscription ended; resubscribing");
            }
            Err(error) => {
                tracing::debug!(%sentinel, %error, retry_in = ?retry, "subscribing to +switch-master");
            }
        }
        if events.is_closed() {
            return;
        }
        // A retry backoff, not synchronisation: nothing to wait for but the sentinel.
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// One subscription: `Ok` when it was established and later ended, `Err` when it could not be.
async fn subscribe_once(
    target: &HealTarget,
    sentinel: &Endpoint,
    events: &mpsc::Sender<SwitchMaster>,
) -> Result<(), String> {
    let client = client_for(target, sentinel, target.operator_sentinel_auth.as_ref())?;
    let mut pubsub = tokio::time::timeout(IO_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| format!("no connection within {IO_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(IO_TIMEOUT, pubsub.subscribe(SWITCH_MASTER_CHANNEL))
        .await
        .map_err(|_| format!("SUBSCRIBE not answered within {IO_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    tracing::debug!(%sentinel, "subscribed to +switch-master");
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        match parse_switch_master(&payload, sentinel) {
            Some(event) if event.master == target.master_name => {
                tracing::info!(%sentinel, from = %event.from, to = %event.to, "+switch-master");
                if events.send(event).await.is_err() {
                    return Ok(());
                }
            }
            Some(_) => {}
            None => tracing::warn!(%sentinel, %payload, "unreadable +switch-master payload"),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn switch_master_payloads_are_parsed_and_malformed_ones_refused() {
        let sentinel = Endpoint::new("s", 26379);
        let event = parse_switch_master(
            "shop shop-redis-0.h.ns.svc.cluster.local 6379 shop-redis-1.h.ns.svc.cluster.local 6379",
            &sentinel,
        )
        .unwrap();
        assert_eq!(event.master, "shop");
        assert_eq!(
            event.from,
            Endpoint::new("shop-redis-0.h.ns.svc.cluster.local", 6379)
        );
        assert_eq!(
            event.to,
            Endpoint::new("shop-redis-1.h.ns.svc.cluster.local", 6379)
        );
        assert_eq!(event.sentinel, sentinel);
        for bad in [
            "",
            "shop 127.0.0.1 6379 127.0.0.1",
            "shop 127.0.0.1 port 127.0.0.1 6380",
            "shop 127.0.0.1 6379 127.0.0.1 6380 extra",
        ] {
            assert_eq!(parse_switch_master(bad, &sentinel), None, "{bad:?}");
        }
    }
}
