//! Approvals: a person says yes or no to one exact call.
//!
//! The layer asks an [`Approver`] and waits up to the rule's timeout. A request carries a
//! hash of the grant, tool and canonical arguments, so a yes releases exactly the call it was
//! asked for and cannot be replayed for other arguments.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::grant::short_hash;

/// What a person is asked to decide: the exact call, arguments included (approvers are
/// trusted, and nobody approves a payout without seeing the amount), and the hash that binds
/// the answer to them. Argument values never reach the logs; they live only as long as the
/// request waits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub id: String,
    pub grant: Option<String>,
    pub tool: String,
    pub arg_keys: Vec<String>,
    /// The call's arguments as the agent sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// SHA-256 (16 hex digits) of grant, tool and the canonical JSON of the arguments.
    pub call_hash: String,
    pub rule: String,
    pub timeout_secs: u64,
    /// Seconds since the Unix epoch.
    pub asked_at: u64,
    /// The server the call is for, when the gateway fronts several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Eight hex digits that differ between processes (pid, start time), so request ids made by
/// two replicas never collide in a shared queue.
fn replica_nonce() -> &'static str {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!("{}-{nanos}", std::process::id());
        short_hash(seed.as_bytes())[..8].to_owned()
    })
}

impl ApprovalRequest {
    /// The call hash an id was made with (ids are `<call hash>-<nonce><sequence>`).
    pub fn call_hash_of(id: &str) -> Option<&str> {
        id.split_once('-').map(|(h, _)| h)
    }
}

impl ApprovalRequest {
    /// A request about one call, with a fresh id bound to its grant, tool and arguments.
    pub fn new(
        grant: Option<&str>,
        tool: &str,
        args: Option<&Value>,
        rule: &str,
        timeout: Duration,
    ) -> Self {
        let call_hash = call_hash(grant, tool, args);
        let seq = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        ApprovalRequest {
            // Unique across replicas too: a replica's nonce, then its own sequence.
            id: format!("{call_hash}-{}{seq}", replica_nonce()),
            grant: grant.map(str::to_owned),
            tool: tool.to_owned(),
            arg_keys: crate::observe::arg_keys(args),
            args: args.cloned(),
            call_hash,
            rule: rule.to_owned(),
            timeout_secs: timeout.as_secs(),
            asked_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            server: None,
        }
    }
}

/// The hash that binds an approval to one call.
pub fn call_hash(grant: Option<&str>, tool: &str, args: Option<&Value>) -> String {
    let mut text = String::new();
    text.push_str(grant.unwrap_or(""));
    text.push('\0');
    text.push_str(tool);
    text.push('\0');
    canonical(args.unwrap_or(&Value::Null), &mut text);
    short_hash(text.as_bytes())
}

/// JSON with object keys sorted at every depth, so key order can't change the hash.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(child) = m.get(k) {
                    canonical(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A person's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approved,
    Denied(Option<String>),
}

pub type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Decides approval requests. The layer applies the timeout; an approver only answers.
pub trait Approver: Send + Sync + 'static {
    fn ask(&self, request: ApprovalRequest) -> AnswerFuture;

    /// Whether a person can answer through this approver. An approval asked in the MCP
    /// client is also put to an approver that can (the console answers it too); one that
    /// refuses everything, like [`Refuse`], is left out so it cannot answer first.
    fn waits(&self) -> bool {
        true
    }

    /// Who answers, for traces (`warden.approval.via`): `queue` (a person at the console or
    /// the admin API), `webhook`, `nobody` (refused at once), or the approver's own word.
    fn via(&self) -> &'static str {
        "approver"
    }
}

impl<T: Approver + ?Sized> Approver for Arc<T> {
    fn ask(&self, request: ApprovalRequest) -> AnswerFuture {
        (**self).ask(request)
    }

    fn waits(&self) -> bool {
        (**self).waits()
    }

    fn via(&self) -> &'static str {
        (**self).via()
    }
}

/// A boxed future of an [`ApprovalDesk`].
pub type DeskFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An approver whose pending requests a person can list and answer (the admin address).
pub trait ApprovalDesk: Approver {
    /// Requests waiting for an answer, oldest first.
    fn pending(&self) -> DeskFuture<'_, Result<Vec<ApprovalRequest>, String>>;

    /// Answers request `id`; `Ok(false)` if no such request is pending (already answered,
    /// given up, or never asked). An answer releases that one request only.
    fn answer<'a>(&'a self, id: &'a str, answer: Answer) -> DeskFuture<'a, Result<bool, String>>;
}

/// Hosted behaviour: nobody is asked, every approval is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refuse;

impl Approver for Refuse {
    fn ask(&self, _: ApprovalRequest) -> AnswerFuture {
        Box::pin(std::future::ready(Answer::Denied(Some(
            warden_policy::APPROVAL_MESSAGE.to_owned(),
        ))))
    }

    fn waits(&self) -> bool {
        false
    }

    fn via(&self) -> &'static str {
        "nobody"
    }
}

/// A request and the channel its answer goes back on.
type Pending = (ApprovalRequest, oneshot::Sender<Answer>);

/// Pending requests that a person lists and answers (the gateway serves this on its admin
/// address). Cloning shares the queue.
#[derive(Clone, Default)]
pub struct ApprovalQueue {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

impl std::fmt::Debug for ApprovalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalQueue")
            .field("pending", &self.list().len())
            .finish()
    }
}

impl ApprovalQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// The requests waiting for an answer, oldest first. Requests whose caller gave up
    /// (timed out or disconnected) are dropped here.
    pub fn list(&self) -> Vec<ApprovalRequest> {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, tx)| !tx.is_closed());
        let mut out: Vec<ApprovalRequest> = map.values().map(|(r, _)| r.clone()).collect();
        out.sort_by_key(|r| (r.asked_at, r.id.clone()));
        out
    }

    /// Approves request `id`; false if there is no such pending request.
    pub fn approve(&self, id: &str) -> bool {
        self.send_answer(id, Answer::Approved)
    }

    /// Denies request `id` with an optional reason the agent will read.
    pub fn deny(&self, id: &str, reason: Option<String>) -> bool {
        self.send_answer(id, Answer::Denied(reason))
    }

    fn send_answer(&self, id: &str, answer: Answer) -> bool {
        let entry = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        match entry {
            Some((_, tx)) => tx.send(answer).is_ok(),
            None => false,
        }
    }
}

impl Approver for ApprovalQueue {
    fn ask(&self, request: ApprovalRequest) -> AnswerFuture {
        let (tx, rx) = oneshot::channel();
        let id = request.id.clone();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), (request, tx));
        let pending = self.pending.clone();
        Box::pin(async move {
            let answer = rx.await.unwrap_or(Answer::Denied(None));
            pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            answer
        })
    }

    fn via(&self) -> &'static str {
        "queue"
    }
}

impl ApprovalDesk for ApprovalQueue {
    fn pending(&self) -> DeskFuture<'_, Result<Vec<ApprovalRequest>, String>> {
        Box::pin(std::future::ready(Ok(self.list())))
    }

    fn answer<'a>(&'a self, id: &'a str, answer: Answer) -> DeskFuture<'a, Result<bool, String>> {
        Box::pin(std::future::ready(Ok(self.send_answer(id, answer))))
    }
}

/// POSTs each request as JSON to a URL and reads `{"approved": true|false, "reason": "…"}`.
/// Anything else (an error status, an unreadable answer, no connection) is a refusal.
#[derive(Clone)]
pub struct Webhook {
    url: http::Uri,
    client: WebhookClient,
}

#[cfg(feature = "tls")]
type WebhookClient = crate::tls::HttpsClient<http_body_util::Full<bytes::Bytes>>;
#[cfg(not(feature = "tls"))]
type WebhookClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.url).finish()
    }
}

impl Webhook {
    /// An `http://` URL, or (feature `tls`) an `https://` one verified against Mozilla's
    /// roots.
    pub fn new(url: &str) -> Result<Webhook, crate::Error> {
        let url: http::Uri = url
            .parse()
            .map_err(|e| crate::Error::Config(format!("webhook URL {url:?}: {e}")))?;
        match url.scheme_str() {
            Some("http") => {}
            Some("https") if cfg!(feature = "tls") => {}
            _ => {
                return Err(crate::Error::Config(format!(
                    "webhook URL {url}: only {} supported",
                    if cfg!(feature = "tls") {
                        "http:// and https:// are"
                    } else {
                        "http:// is"
                    }
                )));
            }
        }
        #[cfg(feature = "tls")]
        let client = crate::tls::https_client(&crate::tls::ClientTls::default())?;
        #[cfg(not(feature = "tls"))]
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Ok(Webhook { url, client })
    }

    /// The same webhook, verifying an `https://` URL as `tls` says (a private CA).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: &crate::tls::ClientTls) -> Result<Webhook, crate::Error> {
        self.client = crate::tls::https_client(tls)?;
        Ok(self)
    }
}

impl Approver for Webhook {
    fn ask(&self, request: ApprovalRequest) -> AnswerFuture {
        let this = self.clone();
        Box::pin(async move {
            let refuse = |why: &str| Answer::Denied(Some(format!("approval webhook: {why}")));
            let Ok(body) = serde_json::to_vec(&request) else {
                return refuse("cannot encode the request");
            };
            let Ok(req) = http::Request::post(this.url.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            else {
                return refuse("cannot build the request");
            };
            let resp = match this.client.request(req).await {
                Ok(r) => r,
                Err(e) => {
                    // A certificate problem is worth naming: someone has to fix it.
                    #[cfg(feature = "tls")]
                    if let Some(why) = crate::tls::explain(&e) {
                        return refuse(&format!("unreachable ({why})"));
                    }
                    let _ = e;
                    return refuse("unreachable");
                }
            };
            if !resp.status().is_success() {
                return refuse(&format!("answered {}", resp.status()));
            }
            let Ok(body) = http_body_util::BodyExt::collect(http_body_util::Limited::new(
                resp.into_body(),
                64 * 1024,
            ))
            .await
            else {
                return refuse("unreadable answer");
            };
            let v: Value = serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null);
            match v.get("approved") {
                Some(Value::Bool(true)) => Answer::Approved,
                Some(Value::Bool(false)) => {
                    Answer::Denied(v.get("reason").and_then(Value::as_str).map(str::to_owned))
                }
                _ => refuse("answer has no boolean `approved`"),
            }
        })
    }

    fn via(&self) -> &'static str {
        "webhook"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_binds_grant_tool_and_arguments_but_not_key_order() {
        let a = json!({"amount": 5, "to": {"iban": "X", "name": "Y"}});
        let b = json!({"to": {"name": "Y", "iban": "X"}, "amount": 5});
        let c = json!({"amount": 6, "to": {"iban": "X", "name": "Y"}});
        assert_eq!(
            call_hash(Some("g"), "pay", Some(&a)),
            call_hash(Some("g"), "pay", Some(&b))
        );
        assert_ne!(
            call_hash(Some("g"), "pay", Some(&a)),
            call_hash(Some("g"), "pay", Some(&c))
        );
        assert_ne!(
            call_hash(Some("g"), "pay", Some(&a)),
            call_hash(Some("h"), "pay", Some(&a))
        );
        assert_ne!(
            call_hash(Some("g"), "pay", Some(&a)),
            call_hash(Some("g"), "refund", Some(&a))
        );
    }

    #[tokio::test]
    async fn the_queue_answers_exactly_the_request_it_was_given() {
        let q = ApprovalQueue::new();
        let args = json!({"amount": 5});
        let r1 = ApprovalRequest::new(
            Some("g"),
            "pay",
            Some(&args),
            "/tools/pay",
            Duration::from_secs(5),
        );
        let r2 = ApprovalRequest::new(
            Some("g"),
            "pay",
            Some(&args),
            "/tools/pay",
            Duration::from_secs(5),
        );
        let (id1, id2) = (r1.id.clone(), r2.id.clone());
        let f1 = q.ask(r1);
        let f2 = q.ask(r2);
        assert_eq!(q.list().len(), 2);
        assert!(q.approve(&id1));
        assert!(!q.approve(&id1), "an answer is used once");
        assert!(q.deny(&id2, Some("no".into())));
        assert_eq!(f1.await, Answer::Approved);
        assert_eq!(f2.await, Answer::Denied(Some("no".into())));
        assert!(q.list().is_empty());
        assert!(!q.approve("nope"));
    }
}
