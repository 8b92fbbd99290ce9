//! `/metrics` (OpenMetrics text): requests by route and status, request latency by route,
//! events tracked by outcome (counted, duplicate, failed).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "abstore_api";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `counted`, `duplicate` or `failed`.
    pub outcome: &'static str,
}

/// The API's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub events: Family<EventLabels, Counter>,
    /// The route patterns seen (the router's, a fixed few), kept once for the labels.
    routes: std::sync::RwLock<Vec<&'static str>>,
    /// `/track`'s own series, looked up once (each handle shares its series with the family):
    /// every event would otherwise pay three family lookups.
    track: TrackSeries,
}

#[derive(Debug)]
struct TrackSeries {
    ok: Counter,
    latency: Histogram,
    counted: Counter,
    duplicate: Counter,
}

/// `/track`, the route whose series [`Metrics::observe_track`] keeps at hand.
pub const TRACK_ROUTE: &str = "/track";

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn latency_histogram() -> Histogram {
    // 0.1 ms … ~3 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(METRIC_PREFIX);
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests, by route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, by route",
            latency.clone(),
        );
        registry.register(
            "events",
            "Events tracked, by outcome (counted, duplicate, failed)",
            events.clone(),
        );
        // One statement each: a `get_or_create` guard lives to the end of its statement, and a
        // second lookup that creates a series in the same family would wait for it forever.
        let ok = requests
            .get_or_create(&RequestLabels {
                route: TRACK_ROUTE,
                status: 200,
            })
            .clone();
        let track_latency = latency
            .get_or_create(&RouteLabels { route: TRACK_ROUTE })
            .clone();
        let counted = events
            .get_or_create(&EventLabels { outcome: "counted" })
            .clone();
        let duplicate = events
            .get_or_create(&EventLabels {
                outcome: "duplicate",
            })
            .clone();
        let track = TrackSeries {
            ok,
            latency: track_latency,
            counted,
            duplicate,
        };
        Metrics {
            registry,
            requests,
            latency,
            events,
            routes: std::sync::RwLock::new(vec![TRACK_ROUTE]),
            track,
        }
    }

    /// [`Metrics::observe`] for `/track`: a 200 and the latency through the handles kept.
    pub fn observe_track(&self, status: u16, seconds: f64) {
        if status == 200 {
            self.track.ok.inc();
            self.track.latency.observe(seconds);
        } else {
            self.observe(TRACK_ROUTE, status, seconds);
        }
    }

    /// `route` as a label, without allocating per request. Only route patterns come here (the
    /// matched path, never a raw URL), so what is kept is bounded by the router.
    fn route(&self, route: &str) -> &'static str {
        let known = |routes: &[&'static str]| routes.iter().copied().find(|r| *r == route);
        if let Some(found) = known(&self.routes.read().unwrap_or_else(|e| e.into_inner())) {
            return found;
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        known(&routes).unwrap_or_else(|| {
            let kept: &'static str = Box::leak(route.to_owned().into_boxed_str());
            routes.push(kept);
            kept
        })
    }

    /// One answered request; `route` is the matched route pattern.
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        let route = self.route(route);
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
    }

    /// One tracked event's outcome.
    pub fn event(&self, outcome: &'static str) {
        match outcome {
            "counted" => self.track.counted.inc(),
            "duplicate" => self.track.duplicate.inc(),
            _ => self.events.get_or_create(&EventLabels { outcome }).inc(),
        };
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_and_requests_are_rendered() {
        let m = Metrics::new();
        m.event("counted");
        m.event("counted");
        m.observe("/track", 200, 0.001);
        let text = m.render().unwrap();
        assert!(
            text.contains("abstore_api_events_total{outcome=\"counted\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("abstore_api_requests_total{route=\"/track\",status=\"200\"} 1\n"));
    }
}
