//! The web console on the admin address: the approvals waiting (with the arguments a person
//! approves), the decisions as they happen, the limits and the policy in force.
//!
//! A person logs in with the admin token and gets a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` when served over TLS, or behind a TLS proxy that says `X-Forwarded-Proto: https`).
//! Every POST made with the cookie carries the session's CSRF token (a form field, or the
//! `X-CSRF-Token` header for the JSON API); scripts keep using `Authorization: Bearer`. The
//! agents' tokens open nothing here: only the admin token does.
//!
//! Pages are rendered on the server ([`pages`]); the live view reads an SSE stream of
//! [`decisions`].

pub mod decisions;
mod highlight;
pub mod pages;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Form;
use axum::extract::{Path, Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use serde::Deserialize;
use warden_tower::Answer;

use crate::admin::Admin;

/// The session cookie's name.
pub const COOKIE: &str = "warden_console";
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Logged-in people.
#[derive(Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// One login: its CSRF token and when it ends.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) csrf: String,
    expires: Instant,
}

/// 256 random bits as hex (two v4 UUIDs: 244 bits from a CSPRNG).
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Sessions {
    fn open(&self) -> (String, Session) {
        let id = random_token();
        let s = Session {
            csrf: random_token(),
            expires: Instant::now() + SESSION_TTL,
        };
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The session a request's cookie names, if it is live.
    pub(crate) fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.by_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        }
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether this request may go on, as the admin address's gate sees it: the admin token as
/// a bearer, or a live session (whose POSTs outside the console's own forms carry the CSRF
/// header; the forms check their field themselves).
pub(crate) enum Access {
    Token,
    Session,
    /// No credentials: a page is redirected to the login, anything else is 401.
    None,
    /// A session POST without its CSRF token.
    Forged,
}

pub(crate) fn access(admin: &Admin, req: &Request) -> Access {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(warden_tower::bearer_token);
    if let Some(t) = bearer {
        return if crate::auth::digest(t) == admin.token_digest {
            Access::Token
        } else {
            Access::None
        };
    }
    let Some(session) = admin.sessions.of(req.headers()) else {
        return Access::None;
    };
    let form_post = req.uri().path().starts_with("/console/") || req.uri().path() == "/logout";
    if req.method() != Method::GET && !form_post {
        let sent = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok());
        if sent != Some(session.csrf.as_str()) {
            return Access::Forged;
        }
    }
    Access::Session
}

/// Paths anyone may load: the login form itself.
pub(crate) fn is_public(path: &str) -> bool {
    path == "/login"
}

pub(crate) fn router() -> axum::Router<Arc<Admin>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/console/approvals") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route(
            "/console",
            get(|| async { Redirect::to("/console/approvals") }),
        )
        .route("/console/approvals", get(approvals_page))
        .route("/console/approvals/{id}", post(answer_form))
        .route("/console/decisions", get(decisions_page))
        .route("/console/decisions/stream", get(decision_stream))
        .route("/console/limits", get(limits_page))
        .route("/console/policy", get(policy_page))
}

async fn login_page() -> Html<String> {
    Html(pages::login(None).into_string())
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if crate::auth::digest(&f.token) != admin.token_digest {
        tracing::warn!(target: "warden::gateway", "console login refused: wrong token");
        metrics::counter!("warden_console_login_refused_total").increment(1);
        return (
            StatusCode::UNAUTHORIZED,
            Html(pages::login(Some("That is not this gateway's admin token.")).into_string()),
        )
            .into_response();
    }
    let (id, _) = admin.sessions.open();
    let tls = admin.tls
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if tls { "; Secure" } else { "" }
    );
    tracing::info!(target: "warden::gateway", "console login");
    let mut r = Redirect::to("/console/approvals").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if admin
        .sessions
        .of(&headers)
        .is_some_and(|s| s.csrf == f.csrf)
    {
        admin.sessions.close(&headers);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("warden_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// The session of a console page (the gate let it through, so there is one unless the
/// admin token was used as a bearer; then the page has no forms to protect).
fn nav_csrf(admin: &Admin, headers: &HeaderMap) -> String {
    admin
        .sessions
        .of(headers)
        .map(|s| s.csrf)
        .unwrap_or_default()
}

async fn approvals_page(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let csrf = nav_csrf(&admin, &headers);
    let (pending, error) = match &admin.desk {
        None => (
            Vec::new(),
            Some("This gateway refuses every approval: no queue to answer.".to_owned()),
        ),
        Some(desk) => match desk.pending().await {
            Ok(p) => (p, None),
            Err(why) => (
                Vec::new(),
                Some(format!("The approval queue is unavailable: {why}")),
            ),
        },
    };
    let nav = pages::Nav {
        active: "Approvals",
        csrf: &csrf,
    };
    Html(pages::approvals(nav, &pending, error.as_deref()).into_string()).into_response()
}

#[derive(Deserialize)]
struct AnswerForm {
    csrf: String,
    answer: String,
    #[serde(default)]
    note: String,
}

async fn answer_form(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<AnswerForm>,
) -> Response {
    let Some(session) = admin.sessions.of(&headers) else {
        return (StatusCode::UNAUTHORIZED, "log in first\n").into_response();
    };
    if session.csrf != f.csrf {
        return (
            StatusCode::FORBIDDEN,
            "stale or forged form: reload the page\n",
        )
            .into_response();
    }
    let note = f.note.trim();
    let note = (!note.is_empty()).then(|| note.chars().take(500).collect::<String>());
    let answer = match f.answer.as_str() {
        "approve" => Answer::Approved,
        "deny" => Answer::Denied(note.clone()),
        _ => return (StatusCode::BAD_REQUEST, "answer is approve or deny\n").into_response(),
    };
    match crate::admin::answer(&admin, &id, answer, "console", note.as_deref()).await {
        Ok(true) => Redirect::to("/console/approvals").into_response(),
        Ok(false) => {
            let nav = pages::Nav {
                active: "Approvals",
                csrf: &session.csrf,
            };
            let pending = match &admin.desk {
                Some(d) => d.pending().await.unwrap_or_default(),
                None => Vec::new(),
            };
            let page = pages::approvals(
                nav,
                &pending,
                Some("That request was already answered, or its caller gave up."),
            );
            (StatusCode::NOT_FOUND, Html(page.into_string())).into_response()
        }
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the approval queue is unavailable: {why}\n"),
        )
            .into_response(),
    }
}

async fn decisions_page(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Html<String> {
    let csrf = nav_csrf(&admin, &headers);
    let counts = decisions::feed().counts(5);
    Html(
        pages::decisions(
            pages::Nav {
                active: "Decisions",
                csrf: &csrf,
            },
            &counts,
        )
        .into_string(),
    )
}

/// The buffered decisions as one `backlog` event, then each new one as a `decision` event.
async fn decision_stream() -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let feed = decisions::feed();
    // Subscribe first: nothing falls between the backlog and the live events.
    let rx = feed.subscribe();
    let held = feed.recent();
    let recent: Vec<&decisions::Decision> = held.iter().map(|d| d.as_ref()).collect();
    let backlog = serde_json::to_string(&recent).unwrap_or_else(|_| "[]".into());
    let first =
        futures_util::stream::once(
            async move { Ok(Event::default().event("backlog").data(backlog)) },
        );
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(d) => {
                    let data = serde_json::to_string(&*d).unwrap_or_default();
                    return Some((Ok(Event::default().event("decision").data(data)), rx));
                }
                // A slow browser misses some; it keeps the rest.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures_util::StreamExt;
    Sse::new(first.chain(live)).keep_alive(KeepAlive::default())
}

async fn limits_page(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Html<String> {
    let csrf = nav_csrf(&admin, &headers);
    let compiled = admin.live.handle.current();
    let rows = limit_rows(compiled.policy());
    let store = admin.live.handle.store_health().store;
    let live = admin.live.handle.counters(10);
    Html(
        pages::limits(
            pages::Nav {
                active: "Limits",
                csrf: &csrf,
            },
            &rows,
            &live,
            store,
        )
        .into_string(),
    )
}

/// Every counter the policy names, with the tools that charge it.
fn limit_rows(policy: &warden_policy::Policy) -> Vec<pages::LimitRow> {
    use serde_json::Value;
    let doc = policy.to_value();
    let mut entries: Vec<(String, &Value)> = Vec::new();
    if let Some(all) = doc.get("all_tools") {
        entries.push(("all tools".to_owned(), all));
    }
    if let Some(tools) = doc.get("tools").and_then(Value::as_object) {
        entries.extend(tools.iter().map(|(t, e)| (t.clone(), e)));
    }
    let mut rows: Vec<pages::LimitRow> = Vec::new();
    for (tool, entry) in entries {
        for l in entry
            .get("limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = |k: &str| l.get(k).and_then(Value::as_str);
            let counter = text("counter").unwrap_or(&tool).to_owned();
            let max = l.get("max").and_then(Value::as_u64).unwrap_or(0);
            let scope = match (text("scope"), text("claim")) {
                (Some("claim"), Some(c)) => format!("claim {c}"),
                (Some(s), _) => s.to_owned(),
                (None, _) => "grant".to_owned(),
            };
            match rows.iter_mut().find(|r| r.counter == counter) {
                Some(r) => {
                    r.tools.push_str(", ");
                    r.tools.push_str(&tool);
                }
                None => rows.push(pages::LimitRow {
                    counter,
                    tools: tool.clone(),
                    quota: format!("{max} per {}", text("window").unwrap_or("?")),
                    scope,
                }),
            }
        }
    }
    rows.sort_by(|a, b| a.counter.cmp(&b.counter));
    rows
}

async fn policy_page(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Html<String> {
    let csrf = nav_csrf(&admin, &headers);
    let status = admin.live.status();
    let ago = |t: SystemTime| {
        SystemTime::now()
            .duration_since(t)
            .map_or(0, |d| d.as_secs())
    };
    let source = admin.live.source();
    let path = admin.live.path.display().to_string();
    let view = pages::PolicyView {
        path: &path,
        source: &source,
        loaded_ago_secs: ago(status.loaded_at),
        refused: status.refused.as_ref().map(|(t, d)| (ago(*t), d.as_str())),
    };
    Html(
        pages::policy(
            pages::Nav {
                active: "Policy",
                csrf: &csrf,
            },
            &view,
        )
        .into_string(),
    )
}
