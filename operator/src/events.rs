//! Events on ABStores (events.k8s.io/v1). Like kube's `Recorder`, a repeat of the same Event
//! within a few minutes becomes a series (one object, `count` and `lastObservedTime` updated)
//! instead of a new object; unlike it, the note is part of what makes two Events the same. kube
//! keys a series on type, reason and action only, so "restarting shop-redis-1", "…-2", "…-0"
//! became one Event saying "shop-redis-1" ×3, and "applied … for generation 1" kept saying
//! generation 1 for every later generation.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use tokio::sync::Mutex;

/// How long an Event stays the head of its series: a repeat after this is a new Event.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// One Event to publish.
#[derive(Clone, Debug)]
pub struct Event<'a> {
    pub type_: EventType,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: String,
    /// A second object the Event is about (the pod restarted, say).
    pub related: Option<ObjectReference>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    regarding: (Option<String>, Option<String>, Option<String>),
    related: Option<(Option<String>, Option<String>)>,
    type_: &'static str,
    reason: String,
    action: String,
    note: String,
}

/// Publishes Events as `controller` / `instance` (the pod name).
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<HashMap<SeriesKey, K8sEvent>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

impl Publisher {
    pub fn new(client: Client, controller: &str, instance: &str) -> Publisher {
        Publisher {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the Event, or counts one more of an identical one published within
    /// [`SERIES_WINDOW`].
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        event: Event<'_>,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = SeriesKey {
            regarding: (
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
            ),
            related: event
                .related
                .as_ref()
                .map(|related| (related.kind.clone(), related.name.clone())),
            type_: type_name(event.type_),
            reason: event.reason.to_owned(),
            action: event.action.to_owned(),
            note: event.note.clone(),
        };
        let window = k8s_openapi::jiff::SignedDuration::try_from(SERIES_WINDOW).unwrap_or_default();
        let mut series = self.series.lock().await;
        series.retain(|_, head| {
            let last = head
                .series
                .as_ref()
                .map(|series| series.last_observed_time.0)
                .or(head.event_time.as_ref().map(|time| time.0));
            last.is_some_and(|last| last + window > now)
        });
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let published = match series.get(&key) {
            Some(head) => {
                let mut repeated = head.clone();
                repeated.series = Some(EventSeries {
                    count: head.series.as_ref().map_or(2, |series| series.count + 1),
                    last_observed_time: MicroTime(now),
                });
                let name = repeated.metadata.name.clone().unwrap_or_default();
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&repeated))
                    .await?;
                repeated
            }
            None => {
                let created = K8sEvent {
                    action: Some(event.action.to_owned()),
                    reason: Some(event.reason.to_owned()),
                    event_time: Some(MicroTime(now)),
                    regarding: Some(regarding.clone()),
                    related: event.related,
                    note: Some(event.note),
                    metadata: ObjectMeta {
                        namespace: Some(namespace.clone()),
                        name: Some(format!(
                            "{}.{:x}",
                            regarding.name.as_deref().unwrap_or(&self.controller),
                            now.as_nanosecond()
                        )),
                        ..ObjectMeta::default()
                    },
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    type_: Some(type_name(event.type_).to_owned()),
                    ..K8sEvent::default()
                };
                api.create(&PostParams::default(), &created).await?;
                created
            }
        };
        series.insert(key, published);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fixtures::mock_client;
    use http::Method;

    fn store() -> ObjectReference {
        ObjectReference {
            kind: Some("ABStore".to_owned()),
            name: Some("shop".to_owned()),
            namespace: Some("shop".to_owned()),
            ..ObjectReference::default()
        }
    }

    fn restart(pod: &str) -> Event<'static> {
        Event {
            type_: EventType::Normal,
            reason: "RollingRestart",
            action: "Rollout",
            note: format!("restarting {pod}"),
            related: None,
        }
    }

    #[tokio::test]
    async fn events_with_different_notes_are_separate_and_a_repeat_is_counted() {
        // Three pods restarted must read as three Events, not "shop-redis-1" x3; the same
        // failure repeated must not pile up new objects.
        let (client, mut server) = mock_client();
        let publisher = Publisher::new(client, "abstore-operator", "pod-0");
        let answer = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let exchange = server.next().await.unwrap();
                seen.push((
                    exchange.method.clone(),
                    exchange.body["note"].clone(),
                    exchange.body["series"]["count"].clone(),
                ));
                let body = exchange.body.clone();
                exchange.respond(201, body);
            }
            seen
        });
        publisher
            .publish(&store(), restart("shop-redis-1"))
            .await
            .unwrap();
        publisher
            .publish(&store(), restart("shop-redis-2"))
            .await
            .unwrap();
        publisher
            .publish(&store(), restart("shop-redis-1"))
            .await
            .unwrap();
        drop(publisher);
        let seen = answer.await.unwrap();
        assert_eq!(seen[0].0, Method::POST);
        assert_eq!(seen[1].0, Method::POST);
        assert_eq!(seen[1].1, "restarting shop-redis-2");
        assert_eq!(
            seen[2].0,
            Method::PATCH,
            "a repeat is counted in its series"
        );
        assert_eq!(seen[2].2, 2);
    }
}
