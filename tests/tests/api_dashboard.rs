//! The results page (`/dashboard`) in a real headless Chromium, driven over WebDriver
//! (Debian's `chromedriver`, plain HTTP JSON calls): redis-server and the `abstore-api` binary,
//! a known event stream tracked over HTTP (and earlier hours of today written by the `abstore`
//! recorder, since the API stamps events with its own clock), then sign-in through the form
//! and every number the page shows — participants, conversions, rates, intervals, p-values, the
//! hourly chart's points — compared with the `/v1` JSON and with the stream. Also: the page
//! without a session is the sign-in form, a wrong key is refused, the cookie is HttpOnly and
//! SameSite=Strict and authorizes the JSON reads, a forged one does not.
//!
//! `ABSTORE_UPDATE_SCREENSHOT=1` writes the page as docs/images/dashboard.png. Without chromium
//! and chromedriver the test says so and passes, unless `ABSTORE_E2E_REQUIRED=1` (CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use abstore_tests::api::{API_KEY, ApiProcess, HourTally, PARTICIPATE};
use abstore_tests::k8s::{REQUIRED_ENV, poll};
use abstore_tests::{LOOPBACK, RedisServer, free_port, repo_root};
use serde_json::{Value, json};

/// Set to 1: write the screenshot into the docs.
const UPDATE_SCREENSHOT_ENV: &str = "ABSTORE_UPDATE_SCREENSHOT";
const SCREENSHOT: &str = "docs/images/dashboard.png";
/// WebDriver's key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const SESSION_COOKIE: &str = "abstore_session";
/// How long the page may take to show what it is waiting for.
const PAGE_DEADLINE: Duration = Duration::from_secs(20);
const HOUR: i64 = 3600;

/// `name` on the PATH.
fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Chromium and chromedriver, or `None` after saying why the test is skipped (a failure when
/// [`REQUIRED_ENV`] is set).
fn browser(test: &str) -> Option<(PathBuf, PathBuf)> {
    match (find_tool("chromium"), find_tool("chromedriver")) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ => {
            let reason = "chromium or chromedriver is not installed (apt-get install chromium chromium-driver; scripts/install-test-deps.sh does)";
            if std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "1" || v == "true") {
                panic!("{test}: {reason}, and {REQUIRED_ENV} is set");
            }
            eprintln!("skipped {test}: {reason}");
            None
        }
    }
}

/// A chromedriver process on loopback, in a process group of its own with the browsers it
/// starts: dropped (a failed test too), the group is killed, so no browser outlives the test.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(binary: &PathBuf, client: &reqwest::Client) -> Driver {
        let port = free_port().unwrap();
        let child = Command::new(binary)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let base = format!("http://{LOOPBACK}:{port}");
        poll("chromedriver to be ready", PAGE_DEADLINE, || async {
            let status: Value = client
                .get(format!("{base}/status"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if status["value"]["ready"] == true {
                Ok(())
            } else {
                Err(status.to_string())
            }
        })
        .await
        .unwrap();
        Driver { child, base }
    }
}

/// One browser session: the WebDriver commands the test needs.
struct Session {
    client: reqwest::Client,
    /// `<driver>/session/<id>`.
    url: String,
    _profile: tempfile::TempDir,
}

impl Session {
    async fn new(driver: &Driver, chromium: &PathBuf, client: &reqwest::Client) -> Session {
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-crash-reporter", "--disable-breakpad",
                    "--window-size=1280,2100", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let response: Value = client
            .post(format!("{}/session", driver.base))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {response}"));
        Session {
            client: client.clone(),
            url: format!("{}/session/{id}", driver.base),
            _profile: profile,
        }
    }

    /// One command; its `value`, or the WebDriver error.
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(body["value"].clone())
        } else {
            Err(format!("{method} {path}: {status} {body}"))
        }
    }

    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await
            .unwrap();
    }

    async fn find(&self, css: &str) -> Result<String, String> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no element reference in {found}"))
    }

    /// The element matching `css`, polled for until the deadline (then the page's text).
    async fn wait_for(&self, css: &str) -> String {
        let found = poll(&format!("the page to show {css}"), PAGE_DEADLINE, || {
            self.find(css)
        })
        .await;
        match found {
            Ok(element) => element,
            Err(error) => {
                let text = self
                    .command(
                        reqwest::Method::POST,
                        "/execute/sync",
                        Some(json!({"script": "return document.body.innerText;", "args": []})),
                    )
                    .await;
                panic!("{error}\nthe page says: {text:?}")
            }
        }
    }

    async fn exists(&self, css: &str) -> bool {
        let found = self
            .command(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .unwrap();
        !found.as_array().unwrap().is_empty()
    }

    async fn click(&self, element: &str) {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            None,
        )
        .await
        .unwrap();
    }

    async fn type_into(&self, element: &str, text: &str) {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            None,
        )
        .await
        .unwrap();
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await
        .unwrap();
    }

    async fn text(&self, element: &str) -> String {
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// Every element with a `data-testid`: its `data-value` and its text.
    async fn numbers(&self) -> BTreeMap<String, (String, String)> {
        let script = "return Array.from(document.querySelectorAll('[data-testid]')).map(e => \
                      [e.getAttribute('data-testid'), e.getAttribute('data-value'), e.textContent]);";
        let rows = self
            .command(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": script, "args": []})),
            )
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for row in rows.as_array().unwrap() {
            let id = row[0].as_str().unwrap().to_owned();
            let value = row[1].as_str().unwrap_or_default().to_owned();
            let text = row[2].as_str().unwrap_or_default().to_owned();
            assert!(
                out.insert(id.clone(), (value, text)).is_none(),
                "data-testid {id} appears twice"
            );
        }
        out
    }

    async fn cookies(&self) -> Vec<Value> {
        self.command(reqwest::Method::GET, "/cookie", None)
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let data = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap()
    }

    async fn close(self) {
        let _ = self
            .client
            .delete(&self.url)
            .send()
            .await
            .map_err(|e| eprintln!("closing the browser session: {e}"));
    }
}

/// The number a page element carries: its exact value and the text shown.
fn shown<'a>(numbers: &'a BTreeMap<String, (String, String)>, id: &str) -> &'a (String, String) {
    numbers
        .get(id)
        .unwrap_or_else(|| panic!("the page shows no {id}; it has {:?}", numbers.keys()))
}

/// A count on the page equals `expected` (value and text).
fn assert_count(numbers: &BTreeMap<String, (String, String)>, id: &str, expected: u64) {
    let (value, text) = shown(numbers, id);
    assert_eq!(value, &expected.to_string(), "{id} value");
    assert_eq!(text, &expected.to_string(), "{id} text");
}

/// Two readings of one JSON number: the browser's parse is exact, serde_json's default one
/// may be an ulp off (it trades the last bit for speed without `float_roundtrip`).
fn same_number(a: f64, b: f64) -> bool {
    (a - b).abs() <= a.abs().max(b.abs()) * 4.0 * f64::EPSILON
}

/// A fraction on the page equals the JSON's and shows it as a percentage to 2 places.
fn assert_percent(numbers: &BTreeMap<String, (String, String)>, id: &str, expected: f64) {
    let (value, text) = shown(numbers, id);
    let value: f64 = value.parse().unwrap();
    assert!(
        same_number(value, expected),
        "{id} value: {value} against {expected}"
    );
    let shown: f64 = text.trim_end_matches(" %").parse().unwrap();
    assert!(
        (shown - expected * 100.0).abs() <= 0.005 + 1e-9,
        "{id}: shows {text} for {expected}"
    );
}

/// The users reported for a stream of `actual` distinct users (HyperLogLog: 0.81 % standard
/// error; three allowed).
fn assert_users(reported: u64, actual: u64, what: &str) {
    assert!(
        reported.abs_diff(actual) as f64 <= (actual as f64 * 0.0243).max(1.0),
        "{what}: {reported} users reported, {actual} sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_numbers_of_the_api_behind_a_sign_in() {
    let test = "the_dashboard_shows_the_numbers_of_the_api_behind_a_sign_in";
    let Some((chromium, chromedriver)) = browser(test) else {
        return;
    };
    let redis = RedisServer::start_default().unwrap();
    let api = ApiProcess::start(&redis, &["--rate-limit", "1000000"]).await;
    let client = reqwest::Client::new();

    // The stream: `checkout` (control and treatment, goals `buy` and `signup`) and `banner`.
    let mut tally = HourTally::default();
    let mut users: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let plan = [("control", 160, 16, 40), ("treatment", 160, 29, 44)];
    for (variant, participants, buyers, signups) in plan {
        for user in 0..participants {
            let uuid = format!("{variant}-{user}");
            let mut events = vec![PARTICIPATE];
            if user < buyers {
                events.push("buy");
            }
            if user >= participants - signups {
                events.push("signup");
            }
            for event in events {
                api.track(
                    &client,
                    &mut tally,
                    ("alephbet", "checkout"),
                    (variant, event, &uuid),
                )
                .await;
                *users.entry((variant, event)).or_default() += 1;
            }
        }
    }
    let mut banner = HourTally::default();
    for user in 0..6 {
        let variant = if user % 2 == 0 { "blue" } else { "green" };
        api.track(
            &client,
            &mut banner,
            ("alephbet", "banner"),
            (variant, PARTICIPATE, &format!("b-{user}")),
        )
        .await;
    }
    // Earlier hours of today (up to 8), as `track` would have written them then: a chart with
    // a shape, and numbers the page must place in the right hours.
    let conn =
        abstore::connection::Connection::open(&format!("redis://{LOOPBACK}:{}", redis.port()))
            .await
            .unwrap();
    let recorder = abstore::counters::Recorder::new(
        conn,
        abstore::counters::RecorderConfig {
            env: Some(abstore::keys::Env::new("alephbet").unwrap()),
            ..abstore::counters::RecorderConfig::default()
        },
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let today = now - now.rem_euclid(86_400);
    for back in 1..=8i64 {
        let at = now - back * HOUR;
        if at < today {
            break;
        }
        for (i, variant) in ["control", "treatment"].into_iter().enumerate() {
            let participants = 20 + 7 * ((back as u64 + i as u64 * 3) % 4);
            let buyers = participants / 10 + i as u64 * 2;
            for user in 0..participants {
                let uuid = format!("{variant}-h{back}-{user}");
                let mut events = vec![
                    abstore::counters::Event::evaluation("checkout", variant, &uuid, at)
                        .with_event_id(format!("{uuid}-p")),
                ];
                if user < buyers {
                    events.push(
                        abstore::counters::Event::goal("checkout", "buy", variant, &uuid, at)
                            .with_event_id(format!("{uuid}-b")),
                    );
                }
                for event in events {
                    recorder.record(&event).await.unwrap();
                }
            }
            tally.add_known(PARTICIPATE, variant, at, participants);
            tally.add_known("buy", variant, at, buyers);
            *users.entry((variant, PARTICIPATE)).or_default() += participants;
            *users.entry((variant, "buy")).or_default() += buyers;
        }
    }

    // The API's own answer, which the page must show.
    let read = |path: String, cookie: Option<String>, key: bool| {
        let mut request = client.get(format!("{}{path}", api.base));
        if key {
            request = request.header("x-api-key", API_KEY);
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let results: Value = read("/v1/experiments/checkout".into(), None, true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tally.assert_hours(&results);
    for (variant, totals) in results["variants"].as_object().unwrap() {
        assert_eq!(
            totals["events"].as_u64().unwrap(),
            tally.total(PARTICIPATE, variant)
        );
        assert_users(
            totals["users"].as_u64().unwrap(),
            users[&(variant.as_str(), PARTICIPATE)],
            variant,
        );
    }

    // Without a session the page is the sign-in form, and nothing else.
    let anonymous = read("/dashboard".into(), None, false).await.unwrap();
    assert_eq!(anonymous.status(), 200);
    let csp = anonymous.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let body = anonymous.text().await.unwrap();
    assert!(body.contains(r#"data-testid="login""#) && !body.contains(r#"data-testid="results""#));

    let driver = Driver::start(&chromedriver, &client).await;
    let session = Session::new(&driver, &chromium, &client).await;
    let dashboard = format!("{}/dashboard", api.base);
    session.goto(&dashboard).await;
    let key_field = session
        .wait_for("[data-testid=login] [data-testid=login-key]")
        .await;
    assert!(!session.exists("[data-testid=results]").await);

    // A wrong key: refused, the form again with the reason.
    session.type_into(&key_field, "not-the-key").await;
    session
        .click(&session.find("[data-testid=login-submit]").await.unwrap())
        .await;
    let error = session.wait_for("[data-testid=login-error]").await;
    assert_eq!(session.text(&error).await, "Wrong API key.");
    assert!(
        session
            .cookies()
            .await
            .iter()
            .all(|c| c["name"] != SESSION_COOKIE)
    );

    // The key: the page, listing the namespace's experiments.
    let key_field = session.wait_for("[data-testid=login-key]").await;
    session.type_into(&key_field, API_KEY).await;
    session
        .click(&session.find("[data-testid=login-submit]").await.unwrap())
        .await;
    session
        .wait_for("[data-testid=experiments][data-state=ready]")
        .await;
    let listed: Value = read("/v1/experiments".into(), None, true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["experiments"], json!(["banner", "checkout"]));
    let numbers = session.numbers().await;
    for name in ["banner", "checkout"] {
        let (_, text) = shown(&numbers, &format!("experiment-{name}"));
        assert_eq!(text, name);
    }

    // The experiment: every number as the API says, and as the stream says.
    session
        .click(
            &session
                .find("[data-testid=experiment-checkout]")
                .await
                .unwrap(),
        )
        .await;
    session
        .wait_for("[data-testid=results][data-state=ready][data-experiment=checkout]")
        .await;
    let numbers = session.numbers().await;
    assert_eq!(shown(&numbers, "experiment-name").1, "checkout");
    for (variant, totals) in results["variants"].as_object().unwrap() {
        assert_count(
            &numbers,
            &format!("participants-{variant}"),
            totals["users"].as_u64().unwrap(),
        );
        assert_count(
            &numbers,
            &format!("participations-{variant}"),
            tally.total(PARTICIPATE, variant),
        );
    }
    for (goal, per_variant) in results["goals"].as_object().unwrap() {
        for (variant, stats) in per_variant.as_object().unwrap() {
            let id = format!("{goal}-{variant}");
            let conversions = stats["conversions"].as_u64().unwrap();
            assert_count(&numbers, &format!("conversions-{id}"), conversions);
            assert_users(conversions, users[&(variant.as_str(), goal.as_str())], &id);
            assert_count(
                &numbers,
                &format!("goal-events-{id}"),
                tally.total(goal, variant),
            );
            assert_count(
                &numbers,
                &format!("goal-participants-{id}"),
                stats["participants"].as_u64().unwrap(),
            );
            assert_percent(
                &numbers,
                &format!("rate-{id}"),
                stats["rate"].as_f64().unwrap(),
            );
            assert_percent(
                &numbers,
                &format!("interval-low-{id}"),
                stats["interval"][0].as_f64().unwrap(),
            );
            assert_percent(
                &numbers,
                &format!("interval-high-{id}"),
                stats["interval"][1].as_f64().unwrap(),
            );
            let (value, text) = shown(&numbers, &format!("p-value-{id}"));
            match stats["p_value"].as_f64() {
                None => {
                    assert_eq!(Some(variant.as_str()), results["control"].as_str());
                    assert_eq!((value.as_str(), text.as_str()), ("", "—"), "{id}");
                }
                Some(p) => {
                    let value: f64 = value.parse().unwrap();
                    assert!(same_number(value, p), "{id} p-value: {value} against {p}");
                    if p < 0.0001 {
                        assert_eq!(text, "< 0.0001");
                    } else {
                        assert!(
                            (text.parse::<f64>().unwrap() - p).abs() <= 0.00005 + 1e-12,
                            "{id}: {text} for {p}"
                        );
                    }
                }
            }
        }
    }
    // The chart: a point per variant and hour up to now, each the hour's number.
    let mut points = 0;
    let drawn_at = chrono::Utc::now().timestamp();
    for hour in results["hours"].as_array().unwrap() {
        let start = hour["start"].as_i64().unwrap();
        let drawn = numbers.get(&format!("hourly-participations-control-{start}"));
        if start > drawn_at {
            assert!(drawn.is_none(), "a future hour is drawn: {start}");
            continue;
        }
        if start > now {
            continue; // began while the test ran: drawn or not
        }
        for variant in ["control", "treatment"] {
            let id = format!("hourly-participations-{variant}-{start}");
            assert_eq!(
                shown(&numbers, &id).0,
                hour["variants"][variant]["events"].to_string(),
                "{id}"
            );
            for goal in ["buy", "signup"] {
                let id = format!("hourly-conversions-{goal}-{variant}-{start}");
                assert_eq!(
                    shown(&numbers, &id).0,
                    hour["goals"][goal][variant]["conversions"].to_string(),
                    "{id}"
                );
            }
            points += 1;
        }
    }
    assert!(points >= 2, "the chart has the current hour");
    let current = now - now.rem_euclid(HOUR);
    let known_now = tally.known[&(PARTICIPATE.to_owned(), "control".to_owned())]
        .get(&current)
        .copied();
    if let Some(n) = known_now {
        // Nothing straddled the hour: the current hour's point is exactly the HTTP stream's.
        assert_eq!(
            shown(
                &numbers,
                &format!("hourly-participations-control-{current}")
            )
            .0,
            n.to_string()
        );
    }

    let png = session.screenshot().await;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    if std::env::var(UPDATE_SCREENSHOT_ENV).is_ok_and(|v| v == "1") {
        let path = repo_root().join(SCREENSHOT);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, &png).unwrap();
        eprintln!("wrote {}", path.display());
    }

    // The last 7 UTC days: the page asks from 6 days back, and draws those days' hours.
    let picked_at = chrono::Utc::now().timestamp();
    session
        .click(
            &session
                .find(r#"[data-testid=range] option[value="7"]"#)
                .await
                .unwrap(),
        )
        .await;
    session
        .wait_for(r#"[data-testid=results][data-state=ready][data-days="7"]"#)
        .await;
    let numbers = session.numbers().await;
    let first_day: i64 = shown(&numbers, "range-first-day").0.parse().unwrap();
    let day_of = |t: i64| t - t.rem_euclid(86_400);
    let six_back = [
        day_of(picked_at - 6 * 86_400),
        day_of(chrono::Utc::now().timestamp() - 6 * 86_400),
    ];
    assert!(
        six_back.contains(&first_day),
        "first day {first_day}, expected one of {six_back:?}"
    );
    assert_eq!(
        shown(
            &numbers,
            &format!("hourly-participations-control-{first_day}")
        )
        .0,
        "0"
    );
    for (variant, totals) in results["variants"].as_object().unwrap() {
        assert_count(
            &numbers,
            &format!("participations-{variant}"),
            totals["events"].as_u64().unwrap(),
        );
    }

    // The cookie: HttpOnly, SameSite=Strict; it authorizes the JSON reads, a forged one does not.
    let cookies = session.cookies().await;
    let cookie = cookies
        .iter()
        .find(|c| c["name"] == SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    let value = cookie["value"].as_str().unwrap();
    assert!(
        !value.contains(API_KEY),
        "the cookie must not carry the key"
    );
    let with_cookie = read(
        "/v1/experiments/checkout".into(),
        Some(format!("{SESSION_COOKIE}={value}")),
        false,
    )
    .await
    .unwrap();
    assert_eq!(with_cookie.status(), 200);
    let by_cookie: Value = with_cookie.json().await.unwrap();
    assert_eq!(by_cookie["goals"], results["goals"]);
    let (expires, mac) = value.split_once('.').unwrap();
    let forged = [
        format!(
            "{SESSION_COOKIE}={}.{mac}",
            expires.parse::<i64>().unwrap() + 60
        ),
        format!("{SESSION_COOKIE}={expires}.{}", "0".repeat(mac.len())),
        format!("{SESSION_COOKIE}={API_KEY}"),
        format!("{SESSION_COOKIE}="),
    ];
    for cookie in forged {
        for path in [
            "/v1/experiments/checkout",
            "/v1/experiments",
            "/experiment?experiment=checkout",
            "/all",
        ] {
            let response = read(path.into(), Some(cookie.clone()), false)
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{path} with {cookie}");
        }
    }
    // Deleting needs the key itself, never a cookie (it rides along with any request).
    let delete = client
        .post(format!("{}/delete?experiment=checkout", api.base))
        .header("cookie", format!("{SESSION_COOKIE}={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 403);

    // Signing out: the form again.
    session
        .click(&session.find("[data-testid=logout]").await.unwrap())
        .await;
    session.wait_for("[data-testid=login-key]").await;
    assert!(
        session
            .cookies()
            .await
            .iter()
            .all(|c| c["name"] != SESSION_COOKIE)
    );
    session.close().await;
}
