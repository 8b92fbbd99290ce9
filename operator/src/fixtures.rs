//! Test-only: kube-rs's mock API server pattern (`tower_test::mock::pair` → `kube::Client`).
//! `ApiServer` scripts one exchange at a time (assert the request, answer it); `FakeCluster`
//! answers every request like an API server holding a few objects, and records them all.
//! Compiled as `crate::fixtures` for unit tests and included by path in `tests/reconcile.rs`,
//! so it names only external crates.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

/// How long a test waits for a request it expects before failing: far longer than any
/// request takes, short enough that a missing call fails fast.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The other end of the mocked client.
pub type ApiServerHandle = Handle<Request<Body>, Response<Body>>;

/// A client whose requests arrive at the returned [`ApiServer`].
pub fn mock_client() -> (kube::Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), ApiServer { handle })
}

/// The API server side of a mocked client.
#[derive(Debug)]
pub struct ApiServer {
    handle: ApiServerHandle,
}

/// One request, decoded, with the means to answer it.
#[derive(Debug)]
pub struct Exchange {
    /// Request method.
    pub method: Method,
    /// URI path (no query).
    pub path: String,
    /// Query parameters, decoded.
    pub query: BTreeMap<String, String>,
    /// Body as JSON (`Null` when empty).
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

/// A request as recorded by [`FakeCluster`].
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
}

impl Recorded {
    /// `METHOD path`, for readable sequence assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

impl ApiServer {
    /// The next request, or `None` once every client clone is dropped. Panics when nothing
    /// arrives within [`REQUEST_TIMEOUT`].
    pub async fn next(&mut self) -> Option<Exchange> {
        let next = tokio::time::timeout(REQUEST_TIMEOUT, self.handle.next_request())
            .await
            .expect("the API server waited in vain for a request")?;
        Some(Self::decode(next).await)
    }

    /// The next request however long it takes, or `None` once every client clone is dropped:
    /// for a server that runs beside the operator (followers call it when Sentinel says so).
    pub async fn next_untimed(&mut self) -> Option<Exchange> {
        let next = self.handle.next_request().await?;
        Some(Self::decode(next).await)
    }

    async fn decode((request, send): (Request<Body>, SendResponse<Response<Body>>)) -> Exchange {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request
            .uri()
            .query()
            .map(|query| {
                url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Exchange {
            method,
            path,
            query,
            body,
            send,
        }
    }

    /// The next request, asserting its method and path.
    pub async fn expect(&mut self, method: Method, path: &str) -> Exchange {
        let exchange = self
            .next()
            .await
            .unwrap_or_else(|| panic!("the client went away before {method} {path}"));
        assert_eq!(
            (&exchange.method, exchange.path.as_str()),
            (&method, path),
            "unexpected request"
        );
        exchange
    }

    /// Asserts that no further request comes: the client was dropped without sending one.
    pub async fn done(mut self) {
        if let Some(extra) = self.next().await {
            panic!("unexpected extra request {} {}", extra.method, extra.path);
        }
    }
}

impl Exchange {
    /// Answers with `status` and a JSON body.
    pub fn respond(self, status: u16, body: Value) {
        let response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.send.send_response(response);
    }

    /// Answers 404 NotFound, as the API server does for a missing object.
    pub fn not_found(self) {
        self.respond(404, failure_status(404, "NotFound", "not found"));
    }

    /// Answers 404 with a plain-text body, as the API server does for a path it does not serve
    /// (an API group whose CRDs are not installed): not a JSON `Status`.
    pub fn not_served(self) {
        let response = Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(b"404 page not found\n".to_vec()))
            .unwrap();
        self.send.send_response(response);
    }

    /// Answers 409 Conflict, as for a write with a stale resourceVersion.
    pub fn conflict(self) {
        self.respond(
            409,
            failure_status(409, "Conflict", "the object has been modified"),
        );
    }

    /// The recorded form of this request.
    pub fn recorded(&self) -> Recorded {
        Recorded {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            body: self.body.clone(),
        }
    }
}

/// A `Status` failure body.
pub fn failure_status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    })
}

/// An API server with a few objects: answers lists (equality label selectors), gets,
/// server-side applies (echoing the object, as the server returns the result), deletes and
/// creates; records every request.
#[derive(Clone, Debug, Default)]
pub struct FakeCluster {
    /// Objects that exist (each with apiVersion, kind, metadata.name/namespace/labels).
    pub objects: Vec<Value>,
    /// API groups whose CRDs are not installed: every request to them is answered 404.
    pub absent_groups: Vec<String>,
    /// API groups the client may not use: every request to them is answered 403.
    pub forbidden_groups: Vec<String>,
    /// `status` the server reports on applied StatefulSets (by name); none when absent.
    pub stateful_set_status: BTreeMap<String, Value>,
    /// Receives every request as it is answered, for tests that watch the cluster while the
    /// operator runs (a follower relabelling pods, say).
    pub live: Option<tokio::sync::mpsc::UnboundedSender<(std::time::Instant, Recorded)>>,
    /// Play the StatefulSet controller with update strategy OnDelete: a deleted pod of a
    /// StatefulSet in `stateful_set_status` comes back at once, labelled with the set's
    /// `updateRevision` (its readiness is left as it was).
    pub recreate_deleted_pods: bool,
    /// Keep what server-side apply sends, merged into the stored object (or added), as a real
    /// API server does: for tests whose later reconciles read back what earlier ones applied.
    pub store_applied: bool,
    /// Server-side applies refused by `<plural>/<name>` (a webhook, an immutable field), with
    /// the status code and message of the refusal.
    pub refused_applies: BTreeMap<String, (u16, String)>,
}

/// Parts of a resource path.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourcePath {
    /// `""` for the core group.
    pub group: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Splits `/api/v1/namespaces/ns/secrets/x` or `/apis/g/v/namespaces/ns/plural/x/status`.
pub fn parse_path(path: &str) -> Option<ResourcePath> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match *parts.first()? {
        "api" => (String::new(), parts.get(2..)?),
        "apis" => ((*parts.get(1)?).to_owned(), parts.get(3..)?),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() > 2 {
        (Some(rest.get(1)?.to_string()), rest.get(2..)?)
    } else {
        (None, rest)
    };
    Some(ResourcePath {
        group,
        namespace,
        plural: rest.first()?.to_string(),
        name: rest.get(1).map(|name| name.to_string()),
        subresource: rest.get(2).map(|sub| sub.to_string()),
    })
}

/// The group of a discovery path `/apis/<group>/<version>`.
fn discovery_group(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["apis", group, _version] => Some((*group).to_owned()),
        _ => None,
    }
}

/// The plural resource name of a kind, as the API server spells it for our kinds.
pub fn plural_of(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{lower}s"),
    }
}

fn group_of(api_version: &str) -> &str {
    match api_version.split_once('/') {
        Some((group, _)) => group,
        None => "",
    }
}

fn matches_selector(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector
        .split(',')
        .filter(|term| !term.is_empty())
        .all(|term| match term.split_once('=') {
            Some((key, value)) => labels[key].as_str() == Some(value),
            None => !labels[term].is_null(),
        })
}

impl FakeCluster {
    fn located(&self, path: &ResourcePath) -> impl Iterator<Item = (usize, &Value)> {
        self.objects.iter().enumerate().filter(move |(_, object)| {
            group_of(object["apiVersion"].as_str().unwrap_or_default()) == path.group
                && plural_of(object["kind"].as_str().unwrap_or_default()) == path.plural
                && object["metadata"]["namespace"].as_str() == path.namespace.as_deref()
        })
    }

    fn recreate(&mut self, mut pod: Value) {
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some((set, _)) = name.rsplit_once('-') else {
            return;
        };
        let Some(revision) = self
            .stateful_set_status
            .get(set)
            .and_then(|status| status["updateRevision"].as_str())
        else {
            return;
        };
        pod["metadata"]["labels"]["controller-revision-hash"] = json!(revision);
        self.objects.push(pod);
    }

    /// Answers requests until the client is dropped; returns them in order.
    pub async fn serve(mut self, mut server: ApiServer) -> Vec<Recorded> {
        let mut recorded = Vec::new();
        let untimed = self.live.is_some();
        loop {
            let next = if untimed {
                server.next_untimed().await
            } else {
                server.next().await
            };
            let Some(exchange) = next else { break };
            let request = exchange.recorded();
            recorded.push(request.clone());
            self.answer(exchange);
            if let Some(live) = &self.live {
                let _ = live.send((std::time::Instant::now(), request));
            }
        }
        recorded
    }

    /// Discovery of a group: the Prometheus Operator's kinds when its group is installed, a
    /// plain-text 404 when it is absent (as the real server answers).
    fn answer_discovery(&self, exchange: Exchange, group: &str) {
        if self.absent_groups.iter().any(|absent| absent == group) {
            exchange.not_served();
            return;
        }
        let resources: Vec<Value> = match group {
            "monitoring.coreos.com" => ["ServiceMonitor", "PrometheusRule"]
                .iter()
                .map(|kind| {
                    json!({"name": plural_of(kind), "kind": kind, "namespaced": true,
                    "singularName": kind.to_ascii_lowercase(), "verbs": ["get", "list", "patch"]})
                })
                .collect(),
            _ => Vec::new(),
        };
        let version = exchange
            .path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        exchange.respond(
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": format!("{group}/{version}"), "resources": resources}),
        );
    }

    fn answer(&mut self, exchange: Exchange) {
        if let Some(group) = discovery_group(&exchange.path) {
            self.answer_discovery(exchange, &group);
            return;
        }
        let Some(path) = parse_path(&exchange.path) else {
            exchange.not_served();
            return;
        };
        if self.absent_groups.contains(&path.group) {
            exchange.not_served();
            return;
        }
        if self.forbidden_groups.contains(&path.group) {
            exchange.respond(403, failure_status(403, "Forbidden", "forbidden"));
            return;
        }
        match (exchange.method.clone(), &path.name) {
            (Method::GET, None) => {
                let selector = exchange.query.get("labelSelector");
                let items: Vec<Value> = self
                    .located(&path)
                    .map(|(_, object)| object)
                    .filter(|object| matches_selector(object, selector))
                    .cloned()
                    .collect();
                exchange.respond(
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                );
            }
            (Method::GET, Some(name)) => {
                let found = self
                    .located(&path)
                    .find(|(_, object)| object["metadata"]["name"].as_str() == Some(name))
                    .map(|(_, object)| object.clone());
                match found {
                    Some(object) => exchange.respond(200, object),
                    None => exchange.not_found(),
                }
            }
            (Method::PATCH, Some(name)) if path.subresource.as_deref() == Some("status") => {
                // The server answers a status patch with the whole object.
                let found = self
                    .located(&path)
                    .find(|(_, object)| object["metadata"]["name"].as_str() == Some(name))
                    .map(|(index, _)| index);
                match found {
                    Some(index) => {
                        self.objects[index]["status"] = exchange.body["status"].clone();
                        let object = self.objects[index].clone();
                        exchange.respond(200, object);
                    }
                    None => exchange.not_found(),
                }
            }
            (Method::PATCH, Some(name)) if !exchange.query.contains_key("fieldManager") => {
                // A JSON merge patch (server-side apply always names its field manager): merged
                // into the stored object, which the server returns.
                let found = self
                    .located(&path)
                    .find(|(_, object)| object["metadata"]["name"].as_str() == Some(name))
                    .map(|(index, _)| index);
                match found {
                    Some(index) => {
                        merge_patch(&mut self.objects[index], &exchange.body);
                        let object = self.objects[index].clone();
                        exchange.respond(200, object);
                    }
                    None => exchange.not_found(),
                }
            }
            (Method::PATCH, Some(name))
                if path.subresource.is_none()
                    && self
                        .refused_applies
                        .contains_key(&format!("{}/{name}", path.plural)) =>
            {
                let (code, message) =
                    self.refused_applies[&format!("{}/{name}", path.plural)].clone();
                exchange.respond(code, failure_status(code, "Invalid", &message));
            }
            (Method::PATCH, Some(name)) => {
                let mut object = exchange.body.clone();
                if path.subresource.is_none() {
                    object["metadata"]["uid"] = json!(format!("uid-{name}"));
                    object["metadata"]["resourceVersion"] = json!("2");
                    object["metadata"]["generation"] = json!(1);
                    if object["kind"] == "StatefulSet"
                        && let Some(status) = self.stateful_set_status.get(name)
                    {
                        object["status"] = status.clone();
                    }
                }
                if self.store_applied && path.subresource.is_none() {
                    if object["metadata"]["namespace"].is_null() {
                        object["metadata"]["namespace"] = json!(path.namespace);
                    }
                    let found = self
                        .located(&path)
                        .find(|(_, stored)| stored["metadata"]["name"].as_str() == Some(name))
                        .map(|(index, _)| index);
                    object = match found {
                        Some(index) => {
                            merge_patch(&mut self.objects[index], &object);
                            self.objects[index].clone()
                        }
                        None => {
                            self.objects.push(object.clone());
                            object
                        }
                    };
                }
                exchange.respond(200, object);
            }
            (Method::DELETE, Some(name)) => {
                let found = self
                    .located(&path)
                    .find(|(_, object)| object["metadata"]["name"].as_str() == Some(name))
                    .map(|(index, _)| index);
                match found {
                    Some(index) => {
                        let removed = self.objects.remove(index);
                        if self.recreate_deleted_pods && path.plural == "pods" {
                            self.recreate(removed);
                        }
                        exchange.respond(
                            200,
                            json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success", "code": 200}),
                        );
                    }
                    None => exchange.not_found(),
                }
            }
            (Method::POST, None) => {
                let body = exchange.body.clone();
                exchange.respond(201, body);
            }
            (Method::PUT, Some(_)) => {
                let body = exchange.body.clone();
                exchange.respond(200, body);
            }
            _ => exchange.not_found(),
        }
    }
}

/// RFC 7386 JSON merge patch: objects merge key by key, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(fields) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            fields.remove(key);
        } else {
            merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}
