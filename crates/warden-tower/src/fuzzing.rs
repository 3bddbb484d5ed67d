//! Entry points for the fuzz targets in `tests/fuzz` (`cargo fuzz`): the layer's readers of
//! outsiders' bytes, reachable without a server. Not a stable API.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use warden_policy::{CompiledPolicy, Kind};

use crate::body::Body;
use crate::inspect::{self, Message};
use crate::methods::{self, Ruled};
use crate::view::{List, ListCache, Scanned, View};

/// What the layer read of one message of a POST body.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    /// The request's method (`None` for responses and notifications).
    pub method: Option<String>,
    /// For `tools/call`: the tool name and arguments it is decided on.
    pub call: Option<(String, Option<Value>)>,
    /// For a request: what `methods::rule` makes of it.
    pub rule: Option<Rule>,
}

/// `Ruled`, owned: what the gate does with one client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Decided by the policy as `kind`, by `name`, with `args`.
    Decide {
        kind: Kind,
        name: String,
        args: Option<Value>,
    },
    /// `completion/complete` of the prompt or resource `name`.
    Completes { kind: Kind, name: String },
    /// `subscriptions/listen` for these resources.
    Listens(Vec<Value>),
    /// A request of `kind` whose params name nothing to decide on.
    Malformed { kind: Kind },
    /// A list, filtered per caller.
    List(List),
    /// Carries nothing to rule.
    Pass,
}

impl Rule {
    fn of(r: Ruled<'_>) -> Rule {
        match r {
            Ruled::Decide { kind, name, args } => Rule::Decide {
                kind,
                name: name.to_owned(),
                args: args.cloned(),
            },
            Ruled::Completes { kind, name } => Rule::Completes {
                kind,
                name: name.to_owned(),
            },
            Ruled::Listens(uris) => Rule::Listens(uris.to_vec()),
            Ruled::Malformed { kind, .. } => Rule::Malformed { kind },
            Ruled::List(l) => Rule::List(l),
            Ruled::Pass => Rule::Pass,
        }
    }

    /// The rule without the arguments (which are read only when something looks at them).
    fn named(&self) -> Rule {
        match self {
            Rule::Decide { kind, name, .. } => Rule::Decide {
                kind: *kind,
                name: name.clone(),
                args: None,
            },
            other => other.clone(),
        }
    }
}

/// What the layer read from a POST body, per message. `Err`: the body is refused before
/// any decision.
///
/// The body is also read without keeping arguments (as the layer does when nothing looks
/// at them); that reading must accept, refuse, name and rule exactly the same, or this
/// panics.
pub fn inspect(body: &[u8]) -> Result<Vec<Read>, String> {
    let kept = reading(inspect::parse(body, true));
    let unkept = reading(inspect::parse(body, false));
    assert_eq!(
        names(&kept),
        names(&unkept),
        "reading a body with and without its arguments differs"
    );
    kept
}

/// A reading without its arguments.
fn names(r: &Result<Vec<Read>, String>) -> Result<Vec<Read>, String> {
    r.clone().map(|ms| {
        ms.into_iter()
            .map(|m| Read {
                call: m.call.map(|(n, _)| (n, None)),
                rule: m.rule.as_ref().map(Rule::named),
                method: m.method,
            })
            .collect()
    })
}

fn reading(parsed: Result<inspect::Body<'_>, inspect::Refusal>) -> Result<Vec<Read>, String> {
    let parsed = parsed.map_err(|r| format!("{r:?}"))?;
    Ok(parsed
        .messages
        .iter()
        .map(|m| match m {
            Message::Request { method, params, .. } => {
                let call = m.tool_call().map(|(_, p)| {
                    let name = p.name.as_deref().unwrap_or_default();
                    (name.to_owned(), p.arguments().cloned())
                });
                Read {
                    method: Some(method.clone()),
                    call,
                    rule: Some(Rule::of(methods::rule(method, params.as_ref()))),
                }
            }
            _ => Read {
                method: None,
                call: None,
                rule: None,
            },
        })
        .collect())
}

/// A server's message `bytes` as the list filter leaves it for a caller with `grant` who
/// asked for `list` with each of `ids`, under `policy` (`None`: it stands as it is).
///
/// Panics where the readings disagree: the scanned filter ([`View::filter_bytes`]) against
/// the list cache, fresh and hit (also with the id swapped for another of `ids`), and,
/// whenever serde_json reads `bytes` as JSON with no repeated key, against the general
/// filter ([`View::filter`]) on that reading: one removes something exactly when the other
/// does, and then the scanned text is JSON (no repeated key) equal to the general result.
pub fn list_filter(
    bytes: &[u8],
    list: List,
    ids: Vec<Value>,
    policy: Arc<CompiledPolicy>,
    grant: Option<&str>,
) -> Option<String> {
    let ids_text: Vec<String> = ids.iter().map(Value::to_string).collect();
    let view = View::new(
        policy,
        ids.into_iter().map(|id| (id, list)).collect(),
        grant,
    );
    let scanned = view.filter_bytes(bytes);

    let joined = |p: Option<(Bytes, Bytes)>| {
        p.map(|(head, rest)| String::from_utf8_lossy(&[head, rest].concat()).into_owned())
    };
    let cache = ListCache::default();
    let shared = Bytes::copy_from_slice(bytes);
    assert_eq!(
        joined(cache.filter(&view, 0, &shared)),
        scanned,
        "the list cache, fresh"
    );
    assert_eq!(
        joined(cache.filter(&view, 0, &shared)),
        scanned,
        "the list cache, again"
    );
    // The same answer to another of the requests: from the cache, as if scanned afresh.
    if let Scanned::Filtered(f) = view.filter_scanned(bytes) {
        for other in &ids_text {
            let mut swapped = bytes[..f.id.start].to_vec();
            swapped.extend_from_slice(other.as_bytes());
            swapped.extend_from_slice(&bytes[f.id.end..]);
            let want = view.filter_bytes(&swapped);
            let got = joined(cache.filter(&view, 0, &Bytes::from(swapped.clone())));
            assert_eq!(
                got,
                want,
                "the list cache with the id {other}: {:?}",
                String::from_utf8_lossy(&swapped)
            );
        }
    }

    // No repeated key: serde_json's reading is the one reading.
    if let Ok(mut general) = warden_policy::strict_json::from_slice(bytes) {
        let removed = view.filter(&mut general);
        let text = String::from_utf8_lossy(bytes);
        match &scanned {
            Some(s) => {
                let back = warden_policy::strict_json::from_str(s);
                assert!(
                    back.is_ok(),
                    "the scanned filter wrote what is not JSON ({:?}):\n{text}\n->\n{s}",
                    back.as_ref().err()
                );
                assert!(
                    removed,
                    "only the scanned filter removed something:\n{text}\n->\n{s}"
                );
                assert_eq!(back.ok(), Some(general), "the filters disagree on:\n{text}");
            }
            None => assert!(
                !removed,
                "only the general filter removed something:\n{text}\n->\n{general}"
            ),
        }
    }
    scanned
}

/// An SSE body, delivered in `chunks`, as it leaves the `tools/list` filter for the requests
/// `ids` under `policy`.
pub async fn sse_filter(chunks: Vec<Bytes>, ids: Vec<Value>, policy: Arc<CompiledPolicy>) -> Bytes {
    server_stream(chunks, ids, policy, None).await.0
}

/// A server's SSE stream, delivered in `chunks`, as it reaches a client with `grant` through
/// the guard of the server's requests (and the `tools/list` filter for the requests `ids`)
/// under `policy`; and the error answers the server got, in its client's place, for the
/// requests the policy refused.
pub async fn server_requests(
    chunks: Vec<Bytes>,
    ids: Vec<Value>,
    policy: Arc<CompiledPolicy>,
    grant: Option<&str>,
) -> (Bytes, Vec<Value>) {
    server_stream(chunks, ids, policy, Some(grant)).await
}

async fn server_stream(
    chunks: Vec<Bytes>,
    ids: Vec<Value>,
    policy: Arc<CompiledPolicy>,
    guarded: Option<Option<&str>>,
) -> (Bytes, Vec<Value>) {
    let (tx, rx) = tokio::sync::mpsc::channel(chunks.len().max(1));
    for c in chunks {
        let _ = tx.try_send(c);
    }
    drop(tx);
    let ids = ids.into_iter().map(|id| (id, List::Tools)).collect();
    let view = Arc::new(View::new(policy, ids, guarded.flatten()));
    let (refused_tx, mut refused_rx) = tokio::sync::mpsc::unbounded_channel();
    let body = match guarded {
        Some(_) => Body::sse_guarded(Body::channel(rx), view, Some(refused_tx)),
        None => Body::sse_filtered(Body::channel(rx), view),
    };
    let out = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut refusals = Vec::new();
    while let Ok(r) = refused_rx.try_recv() {
        refusals.push(r);
    }
    (out, refusals)
}
