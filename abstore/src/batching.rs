//! Batch speed for callers that record one event at a time (an HTTP handler per request).
//!
//! [`BatchingRecorder::record`] queues one event and resolves with that event's own outcome. A
//! background task gathers queued events into batches — up to [`BatchingConfig::max_batch`]
//! events, or whatever arrived within [`BatchingConfig::linger`] of the first — and writes each
//! with [`Recorder::record_batch`], keeping up to [`BatchingConfig::max_in_flight`] batches on the
//! wire. While that many are in flight the next batch keeps filling, so batches grow with the load
//! and a lone event waits at most `linger` plus one round trip.
//!
//! The queue is bounded: when it is full, [`BatchingRecorder::record`] waits for room
//! (back-pressure on the callers) and [`BatchingRecorder::try_record`] refuses at once with
//! [`Error::Overloaded`], for a server that would rather answer 503 than queue.
//! With [`crate::counters::RecorderConfig::wait_for_replicas`], an event whose batch was not
//! acknowledged by the requested replicas before the timeout gets [`Error::NotReplicated`]: it is
//! on the primary but not yet safe, and resending it (with its event id) is harmless.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::counters::{BatchResult, Event, MAX_EVENTS_PER_CALL, Outcome, Recorder};
use crate::error::{Error, Result};

/// How a [`BatchingRecorder`] gathers events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchingConfig {
    /// Most events in one batch (1 ..= 10 000). Default 256, one script call.
    pub max_batch: usize,
    /// How long the first event of a batch waits for company (at most 1 s). Default 1 ms.
    /// Zero sets no timer: a batch takes what the tasks that were ready together queued (one
    /// yield to the scheduler), so a lone event waits only for its round trip — for servers
    /// whose callers each wait for their answer (an HTTP handler per request).
    pub linger: Duration,
    /// Events that may wait in the queue before callers are held back (at least 1). Default 16 384.
    pub queue: usize,
    /// Batches on the wire at once (at least 1). Default 8.
    pub max_in_flight: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_batch: MAX_EVENTS_PER_CALL,
            linger: Duration::from_millis(1),
            queue: 16_384,
            max_in_flight: 8,
        }
    }
}

impl BatchingConfig {
    fn validate(&self) -> Result<()> {
        let invalid = |field, reason: &str| {
            Err(Error::InvalidArgument {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(1..=10_000).contains(&self.max_batch) {
            return invalid("max_batch", "must be between 1 and 10000 events");
        }
        if self.linger > Duration::from_secs(1) {
            return invalid("linger", "must be at most 1 s");
        }
        if self.queue == 0 {
            return invalid("queue", "must hold at least one event");
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight", "must allow at least one batch");
        }
        Ok(())
    }
}

/// One queued event and where its outcome goes.
struct Queued {
    event: Event,
    done: oneshot::Sender<Result<Outcome>>,
}

/// Records single events at batch speed; see the [module docs](self).
#[derive(Debug)]
pub struct BatchingRecorder {
    queue: mpsc::Sender<Queued>,
    capacity: usize,
    worker: JoinHandle<()>,
}

impl BatchingRecorder {
    /// Starts the gathering task on the current Tokio runtime.
    pub fn new(recorder: Recorder, config: BatchingConfig) -> Result<Self> {
        config.validate()?;
        let (queue, events) = mpsc::channel(config.queue);
        let worker = tokio::spawn(gather(recorder, config, events));
        Ok(Self {
            queue,
            capacity: config.queue,
            worker,
        })
    }

    /// Records `event`, waiting for room in the queue if it is full, and returns its outcome.
    pub async fn record(&self, event: Event) -> Result<Outcome> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Queued { event, done })
            .await
            .map_err(|_| Error::Closed)?;
        outcome.await.map_err(|_| Error::Closed)?
    }

    /// Queues `event` if there is room, and returns the future of its outcome; refuses at once
    /// with [`Error::Overloaded`] when the queue is full.
    pub fn try_record(
        &self,
        event: Event,
    ) -> Result<impl Future<Output = Result<Outcome>> + Send + 'static> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .try_send(Queued { event, done })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Overloaded {
                    queue: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => Error::Closed,
            })?;
        Ok(async move { outcome.await.map_err(|_| Error::Closed)? })
    }

    /// Stops taking events and returns once every queued event has its outcome.
    pub async fn shutdown(self) {
        drop(self.queue);
        // The task only ends after writing what was queued; a panic in it is already reported
        // to every waiting caller as `Closed`.
        let _ = self.worker.await;
    }
}

/// The background task: gathers batches until every sender is gone, then drains.
async fn gather(recorder: Recorder, config: BatchingConfig, mut events: mpsc::Receiver<Queued>) {
    let slots = Arc::new(Semaphore::new(config.max_in_flight));
    let mut in_flight = JoinSet::new();
    while let Some(first) = events.recv().await {
        let linger_until = Instant::now() + config.linger;
        // While every slot is busy, events keep queueing: the batch taken next is bigger.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let mut batch = Vec::with_capacity(config.max_batch.min(1024));
        batch.push(first);
        if config.linger.is_zero() {
            // Let the tasks that are ready now (the other requests of this turn) queue theirs:
            // a batch then holds what arrived together, at no wait beyond that turn.
            tokio::task::yield_now().await;
        }
        while batch.len() < config.max_batch {
            match events.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        // No timer for a zero linger: tokio's timers round up to the next millisecond, so even
        // an elapsed deadline would hold every batch for up to 1 ms.
        while !config.linger.is_zero() && batch.len() < config.max_batch {
            match tokio::time::timeout_at(linger_until, events.recv()).await {
                Ok(Some(queued)) => batch.push(queued),
                Ok(None) | Err(_) => break,
            }
        }
        let recorder = recorder.clone();
        in_flight.spawn(async move {
            write(&recorder, batch).await;
            drop(slot);
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

/// Writes one batch and hands every caller its event's outcome.
async fn write(recorder: &Recorder, batch: Vec<Queued>) {
    let (events, done): (Vec<Event>, Vec<_>) = batch.into_iter().map(|q| (q.event, q.done)).unzip();
    match recorder.record_batch(&events).await {
        Ok(result) => {
            let outcomes = per_event(recorder, result);
            for (done, outcome) in done.into_iter().zip(outcomes) {
                // A caller that stopped waiting dropped its receiver; nothing to tell it.
                let _ = done.send(outcome);
            }
        }
        Err(e) => {
            let reason = e.to_string();
            for done in done {
                let _ = done.send(Err(Error::BatchFailed {
                    reason: reason.clone(),
                }));
            }
        }
    }
}

/// Each event's outcome, with a short `WAIT` acknowledgement turned into [`Error::NotReplicated`]
/// for the events it covers (one place, shared with [`Recorder::record`]).
pub(crate) fn per_event(recorder: &Recorder, result: BatchResult) -> Vec<Result<Outcome>> {
    let requested = recorder.config().wait_for_replicas.map(|w| w.replicas);
    let acknowledged = result.replicas_acknowledged.unwrap_or(0);
    result
        .outcomes
        .into_iter()
        .map(|outcome| match (outcome, requested) {
            (Ok(Outcome::Counted | Outcome::Duplicate), Some(requested))
                if acknowledged < requested =>
            {
                Err(Error::NotReplicated {
                    requested,
                    acknowledged,
                })
            }
            (outcome, _) => outcome,
        })
        .collect()
}
