//! Optional leader election with a `coordination.k8s.io/v1` Lease, so that only one of several
//! operator replicas reconciles. The decision (take, renew, follow) is a pure function; the
//! loop around it reads and writes the Lease with optimistic concurrency (resourceVersion).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Default name of the Lease.
pub const DEFAULT_LEASE_NAME: &str = "abstore-operator-leader";
/// How long a Lease stays valid without renewal: after this a standby may take over.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The leader stops reconciling when it has not renewed for this long — shorter than the
/// Lease duration, so it stops before anyone else can start.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the leader renews and a standby retries.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Whether this replica may reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Not yet decided (before the first Lease round-trip).
    Unknown,
    /// This replica holds the Lease.
    Leading,
    /// Another replica holds the Lease (its identity, when known).
    Following { holder: Option<String> },
}

/// What to do with the Lease, given what it says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds a live Lease: wait.
    Follow { holder: String },
}

/// Decides what to do with the Lease. A Lease without a duration is judged with ours.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return Decision::TakeOver;
    };
    let duration = spec
        .lease_duration_seconds
        .map(|seconds| SignedDuration::from_secs(i64::from(seconds)))
        .unwrap_or_else(|| SignedDuration::from_secs(LEASE_DURATION.as_secs() as i64));
    let expired = renewed
        .0
        .checked_add(duration)
        .map(|expiry| expiry <= now)
        .unwrap_or(true);
    if expired {
        Decision::TakeOver
    } else {
        Decision::Follow {
            holder: holder.to_owned(),
        }
    }
}

/// Errors talking to the Lease API.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("reading Lease {name}: {source}")]
    Read {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing Lease {name}: {source}")]
    Write {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Lease API did not answer within {0:?}")]
    TimedOut(Duration),
}

/// One replica's side of the election.
#[derive(Clone, Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl LeaderElector {
    /// An elector for Lease `name` in `namespace`, identifying this replica as `identity`
    /// (the pod name: it shows who leads in `kubectl get lease`).
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
        }
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One round: read the Lease, decide, write. A write that loses a race (409 Conflict or
    /// AlreadyExists) means another replica won this round: we follow.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<Leadership, LeaderError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| LeaderError::Read {
                name: self.name.clone(),
                source,
            })?;
        let decision = decide(
            current.as_ref().and_then(|lease| lease.spec.as_ref()),
            &self.identity,
            now,
        );
        let duration_seconds = i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(i32::MAX);
        let written = match (decision, current) {
            (Decision::Follow { holder }, _) => {
                return Ok(Leadership::Following {
                    holder: Some(holder),
                });
            }
            (Decision::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_duration_seconds: Some(duration_seconds),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (Decision::Renew, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(duration_seconds);
                // `replace` carries the resourceVersion we read: a concurrent writer makes it fail.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
            (Decision::TakeOver, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.holder_identity = Some(self.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(duration_seconds);
                spec.lease_transitions =
                    Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(Leadership::Leading),
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                Ok(Leadership::Following { holder: None })
            }
            Err(source) => Err(LeaderError::Write {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// Gives the Lease up on shutdown (when we hold it), so a standby takes over at once
    /// instead of waiting for it to expire.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| LeaderError::Read {
                name: self.name.clone(),
                source,
            })?;
        let Some(mut lease) = current else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            // Someone else wrote it meanwhile: it is not ours to release any more.
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(()),
            Err(source) => Err(LeaderError::Write {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// Runs the election until `shutdown` resolves, publishing the outcome on `state`.
    /// Leadership is dropped (state `Following`) when a renewal has not succeeded within
    /// [`RENEW_DEADLINE`], even while the API call is still hanging.
    pub async fn run(self, state: watch::Sender<Leadership>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut last_renewal: Option<Instant> = None;
        loop {
            let round =
                tokio::time::timeout(RETRY_PERIOD, self.try_acquire_or_renew(Timestamp::now()));
            let outcome = tokio::select! {
                () = &mut shutdown => break,
                outcome = round => outcome.unwrap_or(Err(LeaderError::TimedOut(RETRY_PERIOD))),
            };
            match outcome {
                Ok(Leadership::Leading) => {
                    if last_renewal.is_none() {
                        tracing::info!(identity = %self.identity, lease = %self.name, "became leader");
                    }
                    last_renewal = Some(Instant::now());
                    state.send_replace(Leadership::Leading);
                }
                Ok(following) => {
                    if last_renewal.take().is_some() {
                        tracing::warn!(identity = %self.identity, "lost the Lease to another replica");
                    }
                    state.send_replace(following);
                }
                Err(error) => {
                    tracing::warn!(%error, "leader election round failed");
                    if let Some(renewed) = last_renewal
                        && renewed.elapsed() >= RENEW_DEADLINE
                    {
                        tracing::warn!(identity = %self.identity, "could not renew the Lease in time; stepping down");
                        last_renewal = None;
                        state.send_replace(Leadership::Following { holder: None });
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(RETRY_PERIOD) => {}
            }
        }
        if last_renewal.is_some() {
            state.send_replace(Leadership::Following { holder: None });
            if let Err(error) = self.release().await {
                tracing::warn!(%error, "releasing the Lease on shutdown");
            }
        }
    }
}

/// The identity of this replica: `POD_NAME` (set by the chart from the downward API), else
/// `HOSTNAME` (the pod name too, inside a pod), else a random name.
pub fn default_identity() -> String {
    ["POD_NAME", "HOSTNAME"]
        .into_iter()
        .find_map(|key| std::env::var(key).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| format!("abstore-operator-{:016x}", rand::random::<u64>()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures::mock_client;
    use http::Method;
    use serde_json::json;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn held_by(holder: &str, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_is_created() {
        // The first replica ever started creates the Lease.
        assert_eq!(decide(None, "me", at(0)), Decision::Create);
    }

    #[test]
    fn our_own_lease_is_renewed() {
        // Renewal keeps it even when it is about to expire.
        assert_eq!(
            decide(Some(&held_by("me", at(0))), "me", at(14)),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_lease_of_another_replica_is_followed() {
        // Taking over a live Lease would make two leaders.
        assert_eq!(
            decide(Some(&held_by("other", at(0))), "me", at(14)),
            Decision::Follow {
                holder: "other".to_owned()
            }
        );
    }

    #[test]
    fn an_expired_or_released_lease_is_taken_over() {
        // A crashed leader stops renewing; after the lease duration a standby takes over.
        assert_eq!(
            decide(Some(&held_by("other", at(0))), "me", at(15)),
            Decision::TakeOver
        );
        let released = LeaseSpec {
            holder_identity: None,
            ..held_by("other", at(0))
        };
        assert_eq!(decide(Some(&released), "me", at(1)), Decision::TakeOver);
    }

    fn lease_json(holder: &str, renewed: &str, transitions: i32) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "lead", "namespace": "ops", "resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "renewTime": renewed, "leaseDurationSeconds": 15,
                     "leaseTransitions": transitions}
        })
    }

    const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/lead";

    #[tokio::test]
    async fn a_replica_creates_the_missing_lease_and_leads() {
        // Acquire: GET 404 → POST with us as holder.
        let (client, mut server) = mock_client();
        let elector = LeaderElector::new(client, "ops", "lead", "pod-a");
        let verify = tokio::spawn(async move {
            server.expect(Method::GET, LEASE_PATH).await.not_found();
            let create = server
                .expect(
                    Method::POST,
                    "/apis/coordination.k8s.io/v1/namespaces/ops/leases",
                )
                .await;
            assert_eq!(create.body["spec"]["holderIdentity"], "pod-a");
            assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
            let body = create.body.clone();
            create.respond(201, body);
            server.done().await;
        });
        let leadership = elector.try_acquire_or_renew(at(0)).await.unwrap();
        drop(elector);
        assert_eq!(leadership, Leadership::Leading);
        verify.await.unwrap();
    }

    #[tokio::test]
    async fn the_leader_renews_with_the_resource_version_it_read() {
        // Renew: PUT carries resourceVersion, so a concurrent writer cannot be overwritten.
        let (client, mut server) = mock_client();
        let elector = LeaderElector::new(client, "ops", "lead", "pod-a");
        let verify = tokio::spawn(async move {
            server
                .expect(Method::GET, LEASE_PATH)
                .await
                .respond(200, lease_json("pod-a", "2023-11-14T22:13:20.000000Z", 2));
            let renew = server.expect(Method::PUT, LEASE_PATH).await;
            assert_eq!(renew.body["metadata"]["resourceVersion"], "7");
            assert_eq!(renew.body["spec"]["holderIdentity"], "pod-a");
            assert_eq!(renew.body["spec"]["leaseTransitions"], 2);
            assert_ne!(
                renew.body["spec"]["renewTime"],
                "2023-11-14T22:13:20.000000Z"
            );
            let body = renew.body.clone();
            renew.respond(200, body);
            server.done().await;
        });
        let leadership = elector.try_acquire_or_renew(at(5)).await.unwrap();
        drop(elector);
        assert_eq!(leadership, Leadership::Leading);
        verify.await.unwrap();
    }

    #[tokio::test]
    async fn a_standby_takes_over_an_expired_lease_and_counts_the_transition() {
        // The old leader stopped renewing more than 15 s ago.
        let (client, mut server) = mock_client();
        let elector = LeaderElector::new(client, "ops", "lead", "pod-b");
        let verify = tokio::spawn(async move {
            server
                .expect(Method::GET, LEASE_PATH)
                .await
                .respond(200, lease_json("pod-a", "2023-11-14T22:13:20.000000Z", 2));
            let take = server.expect(Method::PUT, LEASE_PATH).await;
            assert_eq!(take.body["spec"]["holderIdentity"], "pod-b");
            assert_eq!(take.body["spec"]["leaseTransitions"], 3);
            let body = take.body.clone();
            take.respond(200, body);
            server.done().await;
        });
        let leadership = elector.try_acquire_or_renew(at(60)).await.unwrap();
        drop(elector);
        assert_eq!(leadership, Leadership::Leading);
        verify.await.unwrap();
    }

    #[tokio::test]
    async fn a_leader_that_loses_the_write_race_follows() {
        // Another replica wrote the Lease between our read and our write (409 Conflict).
        let (client, mut server) = mock_client();
        let elector = LeaderElector::new(client, "ops", "lead", "pod-a");
        let verify = tokio::spawn(async move {
            server
                .expect(Method::GET, LEASE_PATH)
                .await
                .respond(200, lease_json("pod-a", "2023-11-14T22:13:20.000000Z", 2));
            server.expect(Method::PUT, LEASE_PATH).await.conflict();
            server.done().await;
        });
        let leadership = elector.try_acquire_or_renew(at(5)).await.unwrap();
        drop(elector);
        assert_eq!(leadership, Leadership::Following { holder: None });
        verify.await.unwrap();
    }

    #[tokio::test]
    async fn a_live_lease_held_by_another_replica_is_not_written() {
        // A standby only reads; writing would steal a live Lease.
        let (client, mut server) = mock_client();
        let elector = LeaderElector::new(client, "ops", "lead", "pod-b");
        let verify = tokio::spawn(async move {
            server
                .expect(Method::GET, LEASE_PATH)
                .await
                .respond(200, lease_json("pod-a", "2023-11-14T22:13:20.000000Z", 2));
            server.done().await;
        });
        let leadership = elector.try_acquire_or_renew(at(5)).await.unwrap();
        drop(elector);
        assert_eq!(
            leadership,
            Leadership::Following {
                holder: Some("pod-a".to_owned())
            }
        );
        verify.await.unwrap();
    }

    #[tokio::test]
    async fn release_clears_the_holder_only_when_we_hold_it() {
        // On shutdown the leader hands over at once instead of after 15 s.
        let (client, mut server) = mock_client();
        let elector = LeaderElector::new(client, "ops", "lead", "pod-a");
        let verify = tokio::spawn(async move {
            server
                .expect(Method::GET, LEASE_PATH)
                .await
                .respond(200, lease_json("pod-a", "2023-11-14T22:13:20.000000Z", 2));
            let put = server.expect(Method::PUT, LEASE_PATH).await;
            assert!(put.body["spec"].get("holderIdentity").is_none());
            let body = put.body.clone();
            put.respond(200, body);
            server.done().await;
        });
        elector.release().await.unwrap();
        drop(elector);
        verify.await.unwrap();
    }
}
