//! The HTTP routes: Lamed's `track`, `experiment` and `all` (same parameters, same JSON), plus
//! `/v1` results, the `/dashboard` page, `/healthz` and `/readyz`. Reads need the API key
//! (`x-api-key`, as Lamed's API Gateway keys) or the dashboard's session cookie; `delete` the key
//! itself; `track` is public.

use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Value, json};

use abstore::keys::Env;

use crate::dashboard;
use crate::lamed::{ParamError, Params, Track, TrackParams, namespace, parse_params};
use crate::store::{StoreError, TrackingStore};

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Seconds a client is told to wait when Redis cannot be reached.
const RETRY_AFTER_SECONDS: &str = "1";

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub store: TrackingStore,
    /// The key reads require, followed from its file; none refuses every read (never open by
    /// accident).
    pub api_key: crate::key::ApiKey,
    pub metrics: crate::metrics::Metrics,
    /// Per-client limit of `track`.
    pub limiter: crate::limits::RateLimiter,
    /// Browser origins allowed to call `track` (CORS); none: no cross-origin calls.
    pub allowed_origins: Vec<String>,
}

/// Largest request body accepted (a `track` form is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every `track` answer, preflight or not, depends on besides its URL (CORS): the Vary
/// that tower-http's CORS layer sends by default.
const CORS_VARY: &str = "origin, access-control-request-method, access-control-request-headers";

/// The `track` route's pattern (its metrics label).
pub const TRACK_PATH: &str = crate::metrics::TRACK_ROUTE;

/// The browser origins allowed to call `track`, as header values (shared, never copied).
fn allowed_origins(state: &AppState) -> Arc<[HeaderValue]> {
    state
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect()
}

/// The router over `state`: every route but `GET`/`POST /track`, which [`Api`] serves
/// before it. Its `/track` answers CORS preflights (tower-http's layer) and refuses other
/// methods with 405.
pub fn router(state: Arc<AppState>) -> Router {
    let origins = allowed_origins(&state);
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::predicate(
            move |origin: &HeaderValue, _: &axum::http::request::Parts| origins.contains(origin),
        ))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        // The layer would build its Vary value anew for every answer; the same value is set
        // below from a static one.
        .vary([]);
    let track = Router::new()
        .route(
            TRACK_PATH,
            axum::routing::any(|| async {
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    [(header::ALLOW, "GET,POST")],
                )
            }),
        )
        .layer(
            tower::ServiceBuilder::new()
                .layer(tower_http::set_header::SetResponseHeaderLayer::appending(
                    header::VARY,
                    HeaderValue::from_static(CORS_VARY),
                ))
                .layer(cors),
        );
    // Sign-in attempts are limited per client like `track` (guessing the key is slow).
    let login = Router::new()
        .route(dashboard::LOGIN_PATH, axum::routing::post(dashboard::login))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit,
        ));
    Router::new()
        .merge(login)
        .route("/experiment", get(experiment))
        .route("/v1/experiments", get(v1_experiments))
        .route("/v1/experiments/{experiment}", get(v1_experiment))
        .route(dashboard::DASHBOARD_PATH, get(dashboard::dashboard))
        .route(
            dashboard::LOGOUT_PATH,
            axum::routing::post(dashboard::logout),
        )
        .route("/all", get(all))
        .route("/delete", axum::routing::post(delete).delete(delete))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), measure))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .merge(track)
}

/// What `abstore-api` serves. `GET` and `POST /track` — every browser event — go straight to
/// `track`: no router, no layers. Through the router each layer re-boxes the route and clones
/// it per request, and the router adds its extensions; serving them here cut the API's
/// instructions per event by about a sixth (docs/benchmarks.md, "The tracking API over HTTP").
/// CORS is answered as the router's layer answers it (the origin when allowed, and `Vary`),
/// and a body is capped at [`MAX_BODY_BYTES`]. Everything else goes through [`router`].
#[derive(Clone, Debug)]
pub struct Api(Arc<ApiInner>);

#[derive(Debug)]
struct ApiInner {
    state: Arc<AppState>,
    origins: Arc<[HeaderValue]>,
    router: Router,
}

impl Api {
    pub fn new(state: Arc<AppState>) -> Api {
        Api(Arc::new(ApiInner {
            origins: allowed_origins(&state),
            router: router(Arc::clone(&state)),
            state,
        }))
    }

    /// The service of one connection from `client` (its address: the rate limit's key).
    pub fn connection(&self, client: std::net::SocketAddr) -> Connection {
        Connection {
            api: self.clone(),
            client,
        }
    }
}

/// For `axum::serve`: each accepted connection gets [`Api::connection`].
impl<L> tower::Service<axum::serve::IncomingStream<'_, L>> for Api
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    type Response = Connection;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Connection, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: axum::serve::IncomingStream<'_, L>) -> Self::Future {
        std::future::ready(Ok(self.connection(*incoming.remote_addr())))
    }
}

/// One connection's service (see [`Api`]).
#[derive(Clone, Debug)]
pub struct Connection {
    api: Api,
    client: std::net::SocketAddr,
}

impl tower::Service<axum::extract::Request> for Connection {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: axum::extract::Request) -> Self::Future {
        let api = self.api.clone();
        let client = self.client;
        if request.uri().path() == TRACK_PATH
            && matches!(*request.method(), Method::GET | Method::POST)
        {
            return Box::pin(async move { Ok(api.track(client, request).await) });
        }
        request.extensions_mut().insert(ConnectInfo(client));
        Box::pin(tower::ServiceExt::oneshot(api.0.router.clone(), request))
    }
}

impl Api {
    /// `GET`/`POST /track`: a POST's form body (at most [`MAX_BODY_BYTES`]) read first, then
    /// [`track`], then CORS.
    async fn track(
        &self,
        client: std::net::SocketAddr,
        request: axum::extract::Request,
    ) -> Response {
        let ApiInner { state, origins, .. } = &*self.0;
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .filter(|origin| origins.contains(origin))
            .cloned();
        let (parts, body) = request.into_parts();
        let query = parts.uri.query();
        let mut response = if parts.method == Method::POST {
            match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
                Ok(form) => track(state, client, query, Ok(Some(&form))).await,
                Err(error) => track(state, client, query, Err(body_refused(error))).await,
            }
        } else {
            track(state, client, query, Ok(None)).await
        };
        let headers = response.headers_mut();
        if let Some(origin) = origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        }
        headers.append(header::VARY, HeaderValue::from_static(CORS_VARY));
        response
    }
}

/// A body that could not be read: 413 over [`MAX_BODY_BYTES`] (refused from its
/// `Content-Length` before it is read), else 400; the words of axum's own extractor.
fn body_refused(error: axum::Error) -> Response {
    let error = error.into_inner();
    let status = if error.is::<http_body_util::LengthLimitError>() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        format!("Failed to buffer the request body: {error}"),
    )
        .into_response()
}

/// 429 with `Retry-After` for a client past its rate (by its address; behind a proxy, the
/// proxy's: rate-limit there, or run one API per ingress path).
async fn rate_limit(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.limiter.check(client.ip(), std::time::Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => too_many_requests(wait),
    }
}

fn too_many_requests(wait: std::time::Duration) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": "too many requests from this client"})),
    )
        .into_response();
    let seconds = wait.as_secs().max(1).to_string();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Counts every request by route (the matched path, never the raw URL) and status, and times it.
async fn measure(
    State(state): State<Arc<AppState>>,
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.metrics.observe(
        matched.as_ref().map_or("unmatched", |m| m.as_str()),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn bad_request(error: &ParamError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error.to_string(), "parameter": error.param()})),
    )
        .into_response()
}

/// A store failure: 503 with `Retry-After` when Redis (or a primary) cannot be reached — the
/// event was not recorded, and the client may send it again (the uuid dedups it) — else 500.
fn store_error(error: &StoreError) -> Response {
    tracing::warn!(%error, "request failed");
    // Not recorded, or not known to be (nor replicated as asked): the client sends it again and
    // the uuid's dedup makes that safe. Never a 200 for an event that may be lost.
    let unavailable = matches!(
        error,
        StoreError::Abstore(
            abstore::Error::NoPrimary { .. }
                | abstore::Error::Redis { .. }
                | abstore::Error::OutcomeUnknown { .. }
                | abstore::Error::NotReplicated { .. }
                | abstore::Error::BatchFailed { .. }
                | abstore::Error::Overloaded { .. }
                | abstore::Error::Closed
        )
    );
    if unavailable {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": error.to_string()})),
        )
            .into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
        response
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": error.to_string()})),
        )
            .into_response()
    }
}

/// `None` when a read carries the API key or the dashboard's session cookie, else the 403 to
/// answer.
/// What every report starts with: the key (or a dashboard session), then the namespace.
fn read_scope(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Env, Box<Response>> {
    if let Some(refusal) = refused(state, headers) {
        return Err(Box::new(refusal));
    }
    namespace(params).map_err(|error| Box::new(bad_request(&error)))
}

/// The `experiment` parameter, present and not empty.
fn experiment_param(params: &Params) -> Result<&str, Box<Response>> {
    params
        .get("experiment")
        .map(String::as_str)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            Box::new(bad_request(&ParamError::Missing {
                param: "experiment",
            }))
        })
}

/// A store failure about one experiment: a name the key schema refuses is the parameter's 400.
fn experiment_error(error: &StoreError) -> Response {
    match error {
        StoreError::Key(error) => bad_request(&ParamError::Invalid {
            param: "experiment",
            reason: error.to_string(),
        }),
        error => store_error(error),
    }
}

fn refused(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    if dashboard::has_session(state, headers) {
        return None;
    }
    refused_without_key(state, headers)
}

/// `None` when the request carries the API key itself (what changes data needs: a cookie rides
/// along with requests the user did not mean to send), else the 403 to answer.
fn refused_without_key(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let given = headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok());
    match (state.api_key.get(), given) {
        (Some(key), Some(given)) if constant_time_eq(key.as_bytes(), given.as_bytes()) => None,
        _ => Some(
            (
                StatusCode::FORBIDDEN,
                Json(json!({"error": format!("a valid {API_KEY_HEADER} header is required")})),
            )
                .into_response(),
        ),
    }
}

/// Compares without returning early on the first difference (a timing side channel).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `track`: the client's rate first (its parameters are not parsed past it; a POST's body, at
/// most 16 KiB, has been read by then), then the event; counted in the metrics under its route
/// like every other request. The parameters are read borrowed ([`TrackParams`]): no map and no
/// copies on the hot path.
async fn track(
    state: &AppState,
    client: std::net::SocketAddr,
    query: Option<&str>,
    form: Result<Option<&[u8]>, Response>,
) -> Response {
    let started = std::time::Instant::now();
    let response = match (state.limiter.check(client.ip(), started), form) {
        (Err(wait), _) => too_many_requests(wait),
        (Ok(()), Err(refusal)) => refusal,
        (Ok(()), Ok(form)) => {
            let mut params = TrackParams::default();
            params.read(query.unwrap_or_default().as_bytes());
            // A body that is not UTF-8 is no form: ignored, as by `form_pairs`.
            if let Some(form) = form.filter(|form| std::str::from_utf8(form).is_ok()) {
                params.read(form);
            }
            record(state, &params).await
        }
    };
    state
        .metrics
        .observe_track(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

pub(crate) fn form_pairs(body: &[u8]) -> Result<Params, ()> {
    std::str::from_utf8(body).map_err(|_| ())?;
    Ok(parse_params(body))
}

/// The query string's parameters (none: empty). Never refuses: the handlers name a missing or
/// bad parameter themselves.
pub(crate) struct QueryParams(pub Params);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(QueryParams(parse_params(
            parts.uri.query().unwrap_or_default().as_bytes(),
        )))
    }
}

/// `null` as JSON, the body of every recorded `track`: static, nothing serialized.
fn null_response() -> Response {
    let mut response = Response::new(axum::body::Body::from("null"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn record(state: &AppState, params: &TrackParams<'_>) -> Response {
    let track = match Track::parse(params) {
        Ok(track) => track,
        Err(error) => return bad_request(&error),
    };
    match state
        .store
        .track(track, chrono::Utc::now().timestamp())
        .await
    {
        // Lamed's track returns nothing: `null`.
        Ok(outcome) => {
            state.metrics.event(match outcome {
                abstore::counters::Outcome::Counted => "counted",
                abstore::counters::Outcome::Duplicate => "duplicate",
                abstore::counters::Outcome::Expired => "expired",
            });
            null_response()
        }
        Err(error) => {
            state.metrics.event("failed");
            store_error(&error)
        }
    }
}

async fn experiment(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams,
) -> Response {
    let ns = match read_scope(&state, &headers, &params) {
        Ok(ns) => ns,
        Err(refusal) => return *refusal,
    };
    let name = match experiment_param(&params) {
        Ok(name) => name,
        Err(refusal) => return *refusal,
    };
    match state
        .store
        .experiment(&ns, name, chrono::Utc::now().timestamp(), unique(&params))
        .await
    {
        Ok(goals) => Json(goals).into_response(),
        Err(error) => experiment_error(&error),
    }
}

/// `unique=true` (or `1`): Gimel's numbers, unique uuids, instead of Lamed's counts.
fn unique(params: &Params) -> bool {
    params
        .get("unique")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Lamed's `all`: `[{"meta": {"scope": <scope or null>}}, {"experiment", "goals"}…]`.
async fn all(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams,
) -> Response {
    let ns = match read_scope(&state, &headers, &params) {
        Ok(ns) => ns,
        Err(refusal) => return *refusal,
    };
    let scope = params.get("scope").filter(|s| !s.is_empty());
    let experiments = match scope {
        Some(scope) => scope.split(',').map(str::to_owned).collect(),
        None => match state.store.experiments(&ns).await {
            Ok(experiments) => experiments,
            Err(error) => return store_error(&error),
        },
    };
    let now = chrono::Utc::now().timestamp();
    let mut out = vec![json!({"meta": {"scope": scope}})];
    for name in experiments {
        match state
            .store
            .experiment(&ns, &name, now, unique(&params))
            .await
        {
            Ok(goals) => out.push(json!({"experiment": name, "goals": goals})),
            Err(StoreError::Key(error)) => {
                return bad_request(&ParamError::Invalid {
                    param: "scope",
                    reason: error.to_string(),
                });
            }
            Err(error) => return store_error(&error),
        }
    }
    Json(out).into_response()
}

/// Lamed's `delete` (`DELETE` or `POST /delete?experiment=…&namespace=…`, or a form body):
/// the experiment's counters and registry go. Answers `null`, as Lamed; 404 when there is no
/// such experiment.
async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    QueryParams(mut params): QueryParams,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = refused_without_key(&state, &headers) {
        return refusal;
    }
    if let Ok(form) = form_pairs(&body) {
        params.extend(form);
    }
    let ns = match namespace(&params) {
        Ok(ns) => ns,
        Err(error) => return bad_request(&error),
    };
    let name = match experiment_param(&params) {
        Ok(name) => name,
        Err(refusal) => return *refusal,
    };
    match state
        .store
        .delete(&ns, name, chrono::Utc::now().timestamp())
        .await
    {
        Ok(true) => Json(Value::Null).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no experiment {name:?} in namespace {ns}")})),
        )
            .into_response(),
        Err(error) => experiment_error(&error),
    }
}

/// `GET /v1/experiments?namespace=…`: the namespace's experiments, sorted.
async fn v1_experiments(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams,
) -> Response {
    let ns = match read_scope(&state, &headers, &params) {
        Ok(ns) => ns,
        Err(refusal) => return *refusal,
    };
    match state.store.experiments(&ns).await {
        Ok(experiments) => Json(crate::store::ExperimentList {
            namespace: ns.to_string(),
            experiments,
        })
        .into_response(),
        Err(error) => store_error(&error),
    }
}

/// `GET /v1/experiments/{experiment}?namespace=…&from=…&to=…&control=…`: participations per
/// variant (events and unique users) in total, per day and per hour, per goal each variant's
/// conversions per day and per hour, and over the range each variant's
/// conversion (unique users), its 95 % Wilson interval and the z-test against the control.
async fn v1_experiment(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(name): axum::extract::Path<String>,
    QueryParams(params): QueryParams,
) -> Response {
    let ns = match read_scope(&state, &headers, &params) {
        Ok(ns) => ns,
        Err(refusal) => return *refusal,
    };
    let time = |param: &'static str| -> Result<Option<i64>, ParamError> {
        params
            .get(param)
            .map(|v| {
                v.parse::<i64>().map_err(|e| ParamError::Invalid {
                    param,
                    reason: format!("unix seconds expected: {e}"),
                })
            })
            .transpose()
    };
    let (from, to) = match (time("from"), time("to")) {
        (Ok(from), Ok(to)) => (from, to.unwrap_or_else(|| chrono::Utc::now().timestamp())),
        (Err(error), _) | (_, Err(error)) => return bad_request(&error),
    };
    match state
        .store
        .results(
            &ns,
            &name,
            (from, to),
            params.get("control").map(String::as_str),
        )
        .await
    {
        Ok(Some(results)) => Json(results).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no experiment {name:?} in namespace {ns}")})),
        )
            .into_response(),
        Err(StoreError::Key(error)) => bad_request(&ParamError::Invalid {
            param: "experiment",
            reason: error.to_string(),
        }),
        Err(StoreError::Abstore(abstore::Error::InvalidArgument { field, reason })) => {
            bad_request(&ParamError::Invalid {
                param: if field == "to" { "to" } else { "from" },
                reason,
            })
        }
        Err(error) => store_error(&error),
    }
}

/// Ready when Redis answers.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut pipe = redis::pipe();
    pipe.cmd("PING");
    match state
        .store
        .connection()
        .exec::<(String,)>(&pipe, abstore::connection::Retry::Idempotent, "readiness")
        .await
    {
        Ok(_) => "ready".into_response(),
        Err(error) => store_error(&StoreError::from(error)),
    }
}
