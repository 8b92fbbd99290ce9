//! The results page, `/dashboard`: one static page (HTML, CSS and JS in one file, embedded in the
//! binary) that reads the `/v1` JSON in the browser. Signing in posts the API key once and sets a
//! session cookie (HttpOnly, SameSite=Strict) that the JSON reads accept instead of `x-api-key`.
//! The cookie holds an expiry and its HMAC-SHA256 under the API key, not the key: no server-side
//! state, every replica accepts it, and rotating the key ends every session.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;

use crate::server::{AppState, constant_time_eq};

/// Where the page is served.
pub const DASHBOARD_PATH: &str = "/dashboard";
/// Where the sign-in form posts (form field [`KEY_FIELD`]).
pub const LOGIN_PATH: &str = "/dashboard/login";
/// Where the sign-out button posts.
pub const LOGOUT_PATH: &str = "/dashboard/logout";
/// The sign-in form's field holding the API key.
pub const KEY_FIELD: &str = "key";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "abstore_session";
/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;
/// What the HMAC signs besides the expiry, so the MAC means nothing elsewhere.
const SESSION_CONTEXT: &[u8] = b"abstore-api dashboard session\0";

const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
const LOGIN_HTML: &str = include_str!("../assets/login.html");
/// Where the sign-in page shows why the last attempt failed.
const ERROR_SLOT: &str = "<!--ERROR-->";

/// The session token valid until `expires` (unix seconds): `<expires>.<hex HMAC>`.
pub fn session_token(api_key: &str, expires: i64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, api_key.as_bytes());
    format!(
        "{expires}.{}",
        hex::encode(ring::hmac::sign(&key, &signed(expires)).as_ref())
    )
}

fn signed(expires: i64) -> Vec<u8> {
    let mut message = SESSION_CONTEXT.to_vec();
    message.extend_from_slice(expires.to_string().as_bytes());
    message
}

/// Whether `token` is a session of `api_key` that has not expired at `now` (the MAC compared in
/// constant time by `ring`).
pub fn valid_session(api_key: &str, token: &str, now: i64) -> bool {
    let Some((expires, mac)) = token.split_once('.') else {
        return false;
    };
    let (Ok(expires), Ok(mac)) = (expires.parse::<i64>(), hex::decode(mac)) else {
        return false;
    };
    if expires <= now || expires > now + SESSION_SECONDS {
        return false;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, api_key.as_bytes());
    ring::hmac::verify(&key, &signed(expires), &mac).is_ok()
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request carries a valid session cookie (never without a configured key).
pub fn has_session(state: &AppState, headers: &HeaderMap) -> bool {
    match (state.api_key.get(), session_cookie(headers)) {
        (Some(key), Some(token)) => valid_session(&key, token, chrono::Utc::now().timestamp()),
        _ => false,
    }
}

/// A Content-Security-Policy allowing exactly the page's own inline scripts and styles (by
/// hash), fetches to this origin, and nothing else: no CDN, no injected script runs.
pub fn content_security_policy(html: &str) -> String {
    let hashes = |open: &str, close: &str| -> String {
        let mut out = String::new();
        let mut rest = html;
        while let Some(start) = rest.find(open) {
            let body = &rest[start + open.len()..];
            let Some(end) = body.find(close) else { break };
            let digest = ring::digest::digest(&ring::digest::SHA256, &body.as_bytes()[..end]);
            out.push_str(&format!(
                " 'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
            ));
            rest = &body[end..];
        }
        out
    };
    format!(
        "default-src 'none'; script-src{}; style-src{}; connect-src 'self'; img-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        hashes("<script>", "</script>"),
        hashes("<style>", "</style>"),
    )
}

fn page(status: StatusCode, html: String) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(both_pages())) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Both pages' inline blocks, so one policy serves either page.
fn both_pages() -> &'static str {
    static BOTH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOTH.get_or_init(|| format!("{DASHBOARD_HTML}{LOGIN_HTML}"))
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let message = error
        .map(|e| format!(r#"<p class="error" data-testid="login-error">{e}</p>"#))
        .unwrap_or_default();
    page(status, LOGIN_HTML.replace(ERROR_SLOT, &message))
}

/// `GET /dashboard`: the page with a valid session, else the sign-in form.
pub async fn dashboard(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if has_session(&state, &headers) {
        page(StatusCode::OK, DASHBOARD_HTML.to_owned())
    } else {
        login_page(StatusCode::OK, None)
    }
}

/// `POST /dashboard/login` (form field `key`): with the right key, the session cookie and a
/// redirect to the page; else 403 and the form again.
pub async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if state.api_key.get().is_none() {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("This API has no key configured (--api-key-file): the page is off."),
        );
    }
    let form = crate::server::form_pairs(&body).unwrap_or_default();
    let given = form.get(KEY_FIELD).map(String::as_str).unwrap_or_default();
    let Some(api_key) = state
        .api_key
        .get()
        .filter(|key| constant_time_eq(key.as_bytes(), given.as_bytes()))
    else {
        tracing::info!("dashboard sign-in refused: wrong API key");
        return login_page(StatusCode::FORBIDDEN, Some("Wrong API key."));
    };
    let expires = chrono::Utc::now().timestamp() + SESSION_SECONDS;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict{}",
        session_token(&api_key, expires),
        secure_attribute(&headers)
    );
    with_cookie(Redirect::to(DASHBOARD_PATH).into_response(), &cookie)
}

/// `POST /dashboard/logout`: the cookie cleared, back to the sign-in form.
pub async fn logout(headers: HeaderMap) -> Response {
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure_attribute(&headers)
    );
    with_cookie(Redirect::to(DASHBOARD_PATH).into_response(), &cookie)
}

/// `; Secure` when the client reached us over HTTPS (a TLS-terminating ingress says so in
/// `X-Forwarded-Proto`); plain HTTP on loopback keeps a cookie the browser will send back.
fn secure_attribute(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if https { "; Secure" } else { "" }
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    match HeaderValue::from_str(cookie) {
        Ok(value) => {
            response.headers_mut().insert(header::SET_COOKIE, value);
            response
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_under_its_key() {
        let token = session_token("k1", 1_000 + SESSION_SECONDS);
        assert!(valid_session("k1", &token, 1_000));
        assert!(!valid_session("k2", &token, 1_000), "another key");
        assert!(
            !valid_session("k1", &token, 1_000 + SESSION_SECONDS),
            "expired"
        );
        // A later expiry with the old MAC, a changed MAC, garbage: refused.
        let (_, mac) = token.split_once('.').unwrap_or_default();
        assert!(!valid_session(
            "k1",
            &format!("{}.{mac}", 999 + SESSION_SECONDS),
            1_000
        ));
        let mut tampered = token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert!(!valid_session("k1", &tampered, 1_000));
        assert!(!valid_session("k1", "nonsense", 1_000));
        assert!(!valid_session("k1", "", 1_000));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; abstore_session=123.abc; b=2"),
        );
        assert_eq!(session_cookie(&headers), Some("123.abc"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn the_policy_allows_the_pages_own_scripts_and_styles_only() {
        let csp = content_security_policy("<style>a{}</style><script>1</script>");
        // sha256("1") and sha256("a{}"), base64.
        assert!(
            csp.contains("script-src 'sha256-a4ayc/80/OGda4BO/1o/V0etpOqiLx1JwB5S3beHW0s='"),
            "{csp}"
        );
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(DASHBOARD_HTML.matches("<script>").count(), 1);
    }
}
