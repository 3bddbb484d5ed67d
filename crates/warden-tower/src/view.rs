//! What one caller is shown of the server's messages.
//!
//! List answers (`tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list`) keep only what this caller could call, and requests the server sends
//! the client (`sampling/createMessage`, `elicitation/create`, `roots/list`) are decided
//! by the policy's `server_requests`: a refused one never reaches the client, and the
//! server is answered with a JSON-RPC error instead.
//!
//! An entry stays when [`CompiledPolicy::visible`] says the caller could ever be allowed to
//! use it: hidden, default-denied and always-denied entries go, and so do entries denied by
//! a condition on the caller that is false for this caller. Entries whose fate depends on
//! arguments stay, so the agent learns the rule when it calls. `lists: all` in the policy
//! keeps everything but hidden entries.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;
use warden_policy::{Call, CompiledPolicy, Glob, Kind, Policy};

pub use crate::methods::List;

/// The list requests of one body (or none, for a standalone stream) and who sent them:
/// enough to filter their answers and to decide the server's requests.
#[derive(Debug, Clone)]
pub struct View {
    policy: Arc<CompiledPolicy>,
    ids: Vec<(Value, List)>,
    grant: Option<Arc<str>>,
    session: Option<String>,
    ip: Option<IpAddr>,
    claims: Option<Arc<Value>>,
}

impl View {
    /// Answers to `ids` as a caller with `grant` (and no other identity) sees them: the stdio
    /// bridge's one client, tests.
    pub fn new(policy: Arc<CompiledPolicy>, ids: Vec<(Value, List)>, grant: Option<&str>) -> Self {
        View {
            policy,
            ids,
            grant: grant.map(Arc::from),
            session: None,
            ip: None,
            claims: None,
        }
    }

    pub(crate) fn of(
        policy: Arc<CompiledPolicy>,
        ids: Vec<(Value, List)>,
        caller: &crate::service::Caller,
    ) -> Self {
        View {
            policy,
            ids,
            grant: caller.grant.clone(),
            session: caller.session.as_deref().map(str::to_owned),
            ip: caller.ip,
            claims: caller.claims.clone(),
        }
    }

    /// Whether the server's requests are decided at all (else [`View::refuses`] is `None`).
    pub(crate) fn guards_server_requests(&self) -> bool {
        self.policy.rules_server_requests()
    }

    /// If `msg` is a request from the server that the policy refuses for this caller: its
    /// id and the reason, for the error the server is answered with.
    pub fn refuses(&self, msg: &Value) -> Option<(Value, String)> {
        if !self.policy.rules_server_requests() {
            return None;
        }
        let m = msg.as_object()?;
        let method = m.get("method")?.as_str()?;
        // A notification asks nothing of the client.
        let id = m.get("id")?;
        let mut call = self.call(Kind::ServerRequest, method);
        call.args = m.get("params");
        let d = self.policy.decide(&call);
        let refused = d.is_deny() && !d.is_shadow();
        crate::observe::server_request(self.grant.as_deref(), method, &d);
        refused.then(|| (id.clone(), d.message().to_owned()))
    }

    /// What the guard of the server's requests makes of `text`, one message from the server
    /// (an SSE event's data, a line of `warden stdio`): the requests this caller's policy
    /// refuses, a batch's among them, are taken out. The message is read as clients may
    /// read it: where serde_json refuses what JavaScript's `JSON.parse` takes (a lone
    /// surrogate, a number beyond f64), as JavaScript does; a message that may hold a
    /// request but cannot be read with certainty (a repeated key, or text no reader takes)
    /// does not reach the client.
    pub fn guard(&self, text: &str) -> Guarded {
        if !self.guards_server_requests() || text.trim_matches([' ', '\t', '\n', '\r']).is_empty() {
            return Guarded::Pass;
        }
        let Some(msg) = crate::scan::lenient(text.as_bytes()) else {
            // An answer (an object without a `method`) goes on to the list filter.
            return if crate::scan::is_response(text.as_bytes()) {
                Guarded::Pass
            } else {
                Guarded::Dropped
            };
        };
        let mut refused = Vec::new();
        let mut refuse = |m: &Value| match self.refuses(m) {
            Some(r) => {
                refused.push(r);
                false
            }
            None => true,
        };
        let has_method = |m: &Value| m.get("method").is_some();
        let (rest, requests) = match msg {
            Value::Array(items) => {
                let requests = items.iter().any(has_method);
                let kept: Vec<Value> = items.into_iter().filter(|m| refuse(m)).collect();
                ((!kept.is_empty()).then_some(Value::Array(kept)), requests)
            }
            one => {
                let requests = has_method(&one);
                (refuse(&one).then_some(one), requests)
            }
        };
        if !refused.is_empty() {
            return Guarded::Refused(refused, rest);
        }
        // A repeated key (or text only a lenient reader takes): which `method` a client
        // reads is its own business.
        if requests && warden_policy::strict_json::from_str(text).is_err() {
            return Guarded::Dropped;
        }
        Guarded::Pass
    }

    /// Who this view is for, as far as lists go: callers with the same grant and claims
    /// see the same lists.
    fn caller_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.grant.hash(&mut h);
        self.claims.as_deref().map(Value::to_string).hash(&mut h);
        h.finish()
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = &Value> {
        self.ids.iter().map(|(id, _)| id)
    }

    fn call<'a>(&'a self, kind: Kind, name: &'a str) -> Call<'a> {
        Call {
            kind,
            tool: name,
            args: None,
            grant: self.grant.as_deref(),
            session: self.session.as_deref(),
            ip: self.ip,
            claims: self.claims.as_deref(),
            counters: None,
        }
    }

    /// Whether this caller's list keeps the entry named `name`.
    pub fn keeps(&self, list: List, name: &str) -> bool {
        match list {
            List::ResourceTemplates => self.keeps_template(name),
            _ => self.policy.visible(&self.call(list.kind(), name)),
        }
    }

    /// A template (`demo://resource/{id}`) builds URIs not known until they are read. It
    /// stays when some URI it can build could be read: under a resource default of allow,
    /// one its pattern matches and nothing hides; else one that a resource entry covers.
    fn keeps_template(&self, template: &str) -> bool {
        let pattern = Glob::new(&uri_template_glob(template));
        // A hide glob that matches the pattern's own text hides every URI it builds.
        if self.policy.is_hidden_as(Kind::Resource, pattern.as_str()) {
            return false;
        }
        if !self.policy.filters_lists() {
            return true;
        }
        let covered = self.policy.policy().resources.iter().flatten();
        let mut examples = covered
            .filter_map(|(key, _)| pattern.common_name(&Glob::new(key)))
            .chain(
                self.policy
                    .default_allows(Kind::Resource)
                    .then(|| pattern.common_name(&pattern))
                    .flatten(),
            );
        examples.any(|uri| self.policy.visible(&self.call(Kind::Resource, &uri)))
    }

    /// [`View::filter`] on one message's bytes, reading only what it must: the envelope,
    /// and each entry's name; kept entries are copied as they were written. `None` when
    /// nothing is removed. A batch, or text the scanner cannot follow, takes the general
    /// path (a full parse).
    pub fn filter_bytes(&self, bytes: &[u8]) -> Option<String> {
        match self.filter_scanned(bytes) {
            Scanned::Untouched => None,
            Scanned::Filtered(f) => f
                .with_id(&bytes[f.id.clone()])
                .map(|(head, rest)| String::from_utf8_lossy(&[head, rest].concat()).into_owned()),
            Scanned::Unreadable => self.filter_read(bytes),
        }
    }

    /// The general path: the whole message read as a client's JSON reader reads it, then
    /// [`View::filter`].
    fn filter_read(&self, bytes: &[u8]) -> Option<String> {
        let mut v = crate::scan::lenient(bytes)?;
        self.filter(&mut v).then(|| v.to_string())
    }

    pub(crate) fn filter_scanned(&self, b: &[u8]) -> Scanned {
        use crate::scan;
        use std::ops::Range;
        // One message answers one request: the list it may answer is known before its id
        // is read (the id may come last). Several kinds mean a batch: the general path.
        let Some(list) = self.ids.first().map(|(_, l)| *l) else {
            return Scanned::Untouched;
        };
        if self.ids.iter().any(|(_, l)| *l != list) {
            return Scanned::Unreadable;
        }
        let (key, name_key) = list.keys();
        let mut id_at: Option<Range<usize>> = None;
        let mut top: Vec<(std::borrow::Cow<'_, str>, Range<usize>)> = Vec::new();
        let mut result: Vec<(std::borrow::Cow<'_, str>, Range<usize>)> = Vec::new();
        let mut has_result = false;
        let mut has_entries = false;
        // Each entry and the range of its name's value, if it has one.
        let mut entries: Vec<(Range<usize>, Option<Range<usize>>)> = Vec::new();
        let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(0);
        let end = scan::fields(b, start, |k, at| {
            if k != "result" {
                let end = scan::value_end(b, at)?;
                if k == "id" {
                    id_at = Some(at..end);
                }
                top.push((k, at..end));
                return Some(end);
            }
            has_result = true;
            scan::fields(b, at, |rk, rat| {
                if rk != key {
                    let end = scan::value_end(b, rat)?;
                    result.push((rk, rat..end));
                    return Some(end);
                }
                has_entries = true;
                scan::items(b, rat, |item| {
                    let mut name = None;
                    let end = scan::fields(b, item, |ek, eat| {
                        let end = scan::value_end(b, eat)?;
                        if ek == name_key {
                            // A repeated name key: which one a client reads is its own
                            // business; neither can be vouched for.
                            name = if name.is_none() {
                                Some(Some(eat..end))
                            } else {
                                Some(None)
                            };
                        }
                        Some(end)
                    })?;
                    entries.push((item..end, name.flatten()));
                    Some(end)
                })
            })
        });
        let Some(end) = end.filter(|&e| scan::ends_at(b, e)) else {
            return Scanned::Unreadable;
        };
        let _ = end;
        let Some(id_at) = id_at else {
            return Scanned::Untouched;
        };
        let Ok(id) = serde_json::from_slice::<Value>(&b[id_at.clone()]) else {
            return Scanned::Unreadable;
        };
        if !self.ids.iter().any(|(i, _)| *i == id) || !has_result || !has_entries {
            return Scanned::Untouched;
        }
        let before = entries.len();
        let kept: Vec<&[u8]> = entries
            .into_iter()
            .filter(|(_, name)| {
                let name = name.clone().and_then(|r| scan::string(b, r));
                // An entry we cannot name is one we cannot vouch for.
                name.is_some_and(|n| self.keeps(list, &n))
            })
            .map(|(e, _)| &b[e])
            .collect();
        if kept.len() == before {
            return Scanned::Filtered(Filtered {
                id: id_at,
                list,
                rest: None,
            });
        }
        // `{"id":` and the id come first, so a later answer that differs only in its id
        // can reuse `rest`.
        let mut rest: Vec<u8> =
            Vec::with_capacity(kept.iter().map(|e| e.len() + 1).sum::<usize>() + 64);
        let mut push = |s: &[u8]| rest.extend_from_slice(s);
        for (k, r) in top.iter().filter(|(k, _)| k != "id") {
            push(b",");
            push(Value::String(k.to_string()).to_string().as_bytes());
            push(b":");
            push(&b[r.clone()]);
        }
        push(b",\"result\":{");
        for (k, r) in &result {
            push(Value::String(k.to_string()).to_string().as_bytes());
            push(b":");
            push(&b[r.clone()]);
            push(b",");
        }
        push(Value::String(key.to_owned()).to_string().as_bytes());
        push(b":[");
        for (i, e) in kept.iter().enumerate() {
            if i > 0 {
                push(b",");
            }
            push(e);
        }
        push(b"]}}");
        Scanned::Filtered(Filtered {
            id: id_at,
            list,
            rest: Some(bytes::Bytes::from(rest)),
        })
    }

    /// Drops what this caller may not see from a list result (or a batch of them) that
    /// answers one of the ids. True if anything was removed.
    pub fn filter(&self, msg: &mut Value) -> bool {
        match msg {
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, m| self.filter(m) | changed),
            Value::Object(m) => {
                let Some(list) = m
                    .get("id")
                    .and_then(|id| self.ids.iter().find(|(i, _)| i == id))
                    .map(|(_, l)| *l)
                else {
                    return false;
                };
                let (key, name_key) = list.keys();
                let Some(Value::Array(entries)) = m.get_mut("result").and_then(|r| r.get_mut(key))
                else {
                    return false;
                };
                let before = entries.len();
                entries.retain(|e| match e.get(name_key) {
                    Some(Value::String(name)) => self.keeps(list, name),
                    // An entry we cannot name is one we cannot vouch for.
                    _ => false,
                });
                entries.len() != before
            }
            _ => false,
        }
    }
}

/// What the guard of the server's requests makes of one of its messages ([`View::guard`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Guarded {
    /// Nothing this caller's policy refuses: it goes on, to the list filter.
    Pass,
    /// The requests refused (each one's id, and why), and what is left of the message for
    /// the client (the rest of a batch), if anything.
    Refused(Vec<(Value, String)>, Option<Value>),
    /// It may hold a request but cannot be read with certainty: it does not reach the
    /// client, and has no id to answer.
    Dropped,
}

/// What scanning one message came to.
pub(crate) enum Scanned {
    /// Not an answer to one of the lists, or nothing in it to remove.
    Untouched,
    Filtered(Filtered),
    /// The scanner cannot follow it: a full parse decides.
    Unreadable,
}

/// A list answer, scanned: the id's place in the upstream's text, and the filtered answer
/// after its id (`None`: nothing removed, the upstream's text stands).
#[derive(Debug, Clone)]
pub(crate) struct Filtered {
    pub(crate) id: std::ops::Range<usize>,
    pub(crate) list: List,
    pub(crate) rest: Option<bytes::Bytes>,
}

impl Filtered {
    /// The filtered answer with `id` (its JSON text), if anything was removed: its head
    /// (`{"id":` and the id) and the rest, shared rather than copied.
    pub(crate) fn with_id(&self, id: &[u8]) -> Option<(bytes::Bytes, bytes::Bytes)> {
        let rest = self.rest.clone()?;
        let mut head = Vec::with_capacity(id.len() + 6);
        head.extend_from_slice(b"{\"id\":");
        head.extend_from_slice(id);
        Some((bytes::Bytes::from(head), rest))
    }
}

/// The last list answers filtered, per policy and caller. Agents list the same tools at
/// every session and more: an answer that differs from a cached one only in its id (two
/// comparisons of its bytes) is answered from here instead of scanned again.
#[derive(Debug, Default)]
pub(crate) struct ListCache(std::sync::Mutex<std::collections::VecDeque<Cached>>);

#[derive(Debug)]
struct Cached {
    revision: u64,
    caller: u64,
    upstream: bytes::Bytes,
    filtered: Filtered,
}

impl ListCache {
    const ENTRIES: usize = 32;
    const PER_CALLER: usize = 4;
    /// Upstream answers held at most, in bytes, whatever their number.
    const BYTES: usize = 64 << 20;

    /// `bytes` (one message) filtered for `view` under the policy `revision`, in two
    /// pieces; `None` when it stands as it is.
    pub(crate) fn filter(
        &self,
        view: &View,
        revision: u64,
        bytes: &bytes::Bytes,
    ) -> Option<(bytes::Bytes, bytes::Bytes)> {
        let caller = view.caller_key();
        if let Some(hit) = self.lookup(view, revision, caller, bytes) {
            return hit;
        }
        match view.filter_scanned(bytes) {
            Scanned::Untouched => None,
            Scanned::Unreadable => view
                .filter_read(bytes)
                .map(|v| (bytes::Bytes::from(v), bytes::Bytes::new())),
            Scanned::Filtered(f) => {
                let out = f.with_id(&bytes[f.id.clone()]);
                if let Ok(mut entries) = self.0.lock() {
                    // A few answers per caller (pages of a list), not a flood of one's.
                    let mut mine = 0;
                    entries.retain(|c| {
                        let same = c.revision == revision && c.caller == caller;
                        mine += usize::from(same);
                        !same || mine < Self::PER_CALLER
                    });
                    entries.push_front(Cached {
                        revision,
                        caller,
                        upstream: bytes.clone(),
                        filtered: f,
                    });
                    let mut held = 0;
                    let keep = entries
                        .iter()
                        .take_while(|c| {
                            held += c.upstream.len();
                            held <= Self::BYTES
                        })
                        .count()
                        .clamp(1, Self::ENTRIES);
                    entries.truncate(keep);
                }
                out
            }
        }
    }

    /// `Some(answer)` when a cached answer is this one but for its id.
    fn lookup(
        &self,
        view: &View,
        revision: u64,
        caller: u64,
        b: &[u8],
    ) -> Option<Option<(bytes::Bytes, bytes::Bytes)>> {
        let entries = self.0.lock().ok()?;
        entries.iter().find_map(|c| {
            if c.revision != revision || c.caller != caller {
                return None;
            }
            let (start, end) = (c.filtered.id.start, c.filtered.id.end);
            let old = &c.upstream[..];
            let new_end = crate::scan::value_end(b, start)?;
            let (new_rest, old_rest) = (b.get(new_end..)?, old.get(end..)?);
            // Cheap looks first, so that a list that keeps changing costs little here.
            if new_rest.len() != old_rest.len() || !samples_agree(new_rest, old_rest) {
                return None;
            }
            if b.get(..start)? != old.get(..start)? || new_rest != old_rest {
                return None;
            }
            let id: Value = serde_json::from_slice(&b[start..new_end]).ok()?;
            let list = view.ids.iter().find(|(i, _)| *i == id).map(|(_, l)| *l)?;
            (list == c.filtered.list).then(|| c.filtered.with_id(&b[start..new_end]))
        })
    }
}

/// Whether two texts of one length agree at a few places: their ends and 16 windows
/// between (a changed list usually shows it there).
fn samples_agree(a: &[u8], b: &[u8]) -> bool {
    const W: usize = 64;
    let n = a.len();
    if n <= 32 * W {
        return true;
    }
    (0..=16).all(|k| {
        let at = (n - W) * k / 16;
        a[at..at + W] == b[at..at + W]
    })
}

/// The lists each session was last answered, and under which policy revision, so that a
/// standalone stream opened after a reload can be told at once to list again.
#[derive(Debug, Default)]
pub(crate) struct Listed(std::sync::Mutex<std::collections::HashMap<String, (u64, Vec<List>)>>);

impl Listed {
    /// Sessions remembered at most; past it the book starts afresh (a stream then misses
    /// one early notice, never a decision).
    const SESSIONS: usize = 100_000;

    pub(crate) fn note(&self, session: &str, revision: u64, lists: impl Iterator<Item = List>) {
        let Ok(mut book) = self.0.lock() else {
            return;
        };
        if book.len() >= Self::SESSIONS && !book.contains_key(session) {
            book.clear();
        }
        let entry = book
            .entry(session.to_owned())
            .or_insert_with(|| (revision, Vec::new()));
        if entry.0 != revision {
            *entry = (revision, Vec::new());
        }
        for l in lists {
            let l = match l {
                List::ResourceTemplates => List::Resources,
                l => l,
            };
            if !entry.1.contains(&l) {
                entry.1.push(l);
            }
        }
    }

    /// The lists `session` holds from a policy other than `revision` (taken: told once).
    pub(crate) fn stale(&self, session: &str, revision: u64) -> Vec<List> {
        let Ok(mut book) = self.0.lock() else {
            return Vec::new();
        };
        match book.get(session) {
            Some((r, _)) if *r != revision => {
                book.remove(session).map(|(_, l)| l).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }
}

/// Tells open standalone streams which lists a reload changed.
#[derive(Debug, Clone)]
pub(crate) struct Changes(Arc<tokio::sync::watch::Sender<Vec<List>>>);

impl Default for Changes {
    fn default() -> Self {
        Changes(Arc::new(tokio::sync::watch::channel(Vec::new()).0))
    }
}

impl Changes {
    pub(crate) fn send(&self, lists: Vec<List>) {
        if !lists.is_empty() {
            self.0.send_replace(lists);
        }
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<Vec<List>> {
        self.0.subscribe()
    }
}

/// The lists whose entries `new` may rule differently from `old`: a kind's section, hide
/// list or default changed, or what lists show. A client told of a change lists again.
pub(crate) fn changed_lists(old: &Policy, new: &Policy) -> Vec<List> {
    let mut out = Vec::new();
    let shown = (old.lists, old.mode) != (new.lists, new.mode);
    for (list, kind) in [
        (List::Tools, Kind::Tool),
        (List::Resources, Kind::Resource),
        (List::Prompts, Kind::Prompt),
    ] {
        let mut differs = shown
            || old.default_for(kind) != new.default_for(kind)
            || old.hidden(kind) != new.hidden(kind)
            || old.entries(kind) != new.entries(kind);
        if kind == Kind::Tool {
            differs |= old.all_tools != new.all_tools;
        }
        if differs {
            out.push(list);
        }
    }
    out
}

/// The notification that tells a client to list `list` again.
pub(crate) fn list_changed(list: List) -> &'static str {
    match list {
        List::Tools => r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
        List::Resources | List::ResourceTemplates => {
            r#"{"jsonrpc":"2.0","method":"notifications/resources/list_changed"}"#
        }
        List::Prompts => r#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#,
    }
}

/// The JSON-RPC error a server gets for a request the policy refused.
pub fn refusal(id: &Value, why: &str) -> Value {
    crate::answer::rpc_error(
        id,
        crate::answer::POLICY_DENIED_CODE,
        &format!("{} {why}", crate::answer::DENIED_PREFIX),
    )
}

/// An RFC 6570 URI template as a glob: each `{...}` expression becomes `*`.
fn uri_template_glob(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut in_expr = false;
    for c in template.chars() {
        match (c, in_expr) {
            ('{', false) => {
                in_expr = true;
                out.push('*');
            }
            ('}', true) => in_expr = false,
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(policy: Value, grant: &str) -> View {
        let p = warden_policy::Policy::from_value(&policy).unwrap();
        let ids = vec![
            (json!(1), List::Tools),
            (json!(2), List::Resources),
            (json!(3), List::ResourceTemplates),
            (json!(4), List::Prompts),
        ];
        View::new(Arc::new(CompiledPolicy::new(&p).unwrap()), ids, Some(grant))
    }

    fn names(v: &View, id: u64, key: &str, name: &str, entries: &[&str]) -> Vec<String> {
        let list: Vec<Value> = entries.iter().map(|n| json!({name: n})).collect();
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "result": {key: list}});
        v.filter(&mut msg);
        msg["result"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[name].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn each_list_keeps_what_the_caller_could_call() {
        let v = view(
            json!({"version": "1", "default": "deny",
                "tools": {"echo": {}, "admin": {"require": [{"conditions": [
                    {"path": "caller.grant", "op": "eq", "value": "root"}]}]}},
                "resources": {"demo://resource/static/*": {}},
                "prompts": {"simple-prompt": {}}}),
            "alice",
        );
        assert_eq!(
            names(&v, 1, "tools", "name", &["echo", "admin", "add"]),
            ["echo"]
        );
        assert_eq!(
            names(
                &v,
                2,
                "resources",
                "uri",
                &["demo://resource/static/a", "file:///etc/passwd"]
            ),
            ["demo://resource/static/a"]
        );
        assert_eq!(
            names(
                &v,
                3,
                "resourceTemplates",
                "uriTemplate",
                &[
                    "demo://resource/static/{name}",
                    "demo://resource/dynamic/{id}"
                ]
            ),
            ["demo://resource/static/{name}"]
        );
        assert_eq!(
            names(
                &v,
                4,
                "prompts",
                "name",
                &["simple-prompt", "complex_prompt"]
            ),
            ["simple-prompt"]
        );
        // An answer to another request is left alone.
        assert_eq!(names(&v, 9, "tools", "name", &["admin"]), ["admin"]);
    }

    #[test]
    fn the_scanned_filter_gives_what_the_general_one_gives() {
        let v = view(
            json!({"version": "1", "default": "deny", "hide": ["h*"],
                "tools": {"a\"b": {}, "keep": {}, "h1": {}}}),
            "g",
        );
        let answers = [
            // id last, escapes in a name, a name of the wrong type, a tool without one.
            r#"{"result": {"tools": [{"name": "a\"b"}, {"name": 7}, {"x": 1}, {"name": "keep",
               "inputSchema": {"d": "}]\\"}}], "nextCursor": "c"}, "jsonrpc": "2.0", "id": 1}"#,
            // Pretty-printed, and a hidden tool.
            "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"result\": {\n    \"tools\": [\n      {\"name\": \"h1\"},\n      {\"name\": \"keep\"}\n    ]\n  }\n}",
            // A repeated name key: neither is vouched for.
            r#"{"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "keep", "name": "h1"}, {"name": "keep"}]}}"#,
        ];
        for text in answers {
            let scanned = v.filter_bytes(text.as_bytes()).expect("something removed");
            let scanned: Value = serde_json::from_str(&scanned).unwrap();
            let mut general: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if general.is_null() {
                // serde_json refuses the repeated key; the scanner keeps only the plain entry.
                assert_eq!(scanned["result"]["tools"], json!([{"name": "keep"}]));
                continue;
            }
            assert!(v.filter(&mut general));
            assert_eq!(scanned, general, "{text}");
        }
        // Not an answer to a list request, or nothing to remove: untouched.
        assert!(
            v.filter_bytes(br#"{"jsonrpc":"2.0","id":9,"result":{"tools":[]}}"#)
                .is_none()
        );
        assert!(
            v.filter_bytes(br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"keep"}]}}"#)
                .is_none()
        );
    }

    /// Found by tests/fuzz (server_requests): a refused request in a batch, or in JSON that
    /// serde_json refuses but JavaScript's `JSON.parse` takes (a lone surrogate, a number
    /// beyond f64), or with a repeated key, reached the client.
    #[test]
    fn the_guard_reads_batches_and_what_clients_read() {
        let v = view(
            json!({"version": "1", "default": "allow",
                "server_requests": {"sampling/createMessage": {"deny_if": [{"conditions": []}]}}}),
            "g",
        );
        let refused = |g: Guarded| match g {
            Guarded::Refused(r, rest) => {
                (r.into_iter().map(|(id, _)| id).collect::<Vec<_>>(), rest)
            }
            other => panic!("{other:?}"),
        };
        let (ids, rest) = refused(v.guard(
            r#"[{"jsonrpc":"2.0","id":6,"method":"sampling/createMessage"},{"jsonrpc":"2.0","method":"notifications/message"},{"jsonrpc":"2.0","id":7,"method":"roots/list"}]"#,
        ));
        assert_eq!(ids, [json!(6)]);
        assert_eq!(
            rest,
            Some(
                json!([{"jsonrpc":"2.0","method":"notifications/message"},{"jsonrpc":"2.0","id":7,"method":"roots/list"}])
            )
        );
        let (ids, rest) =
            refused(v.guard(r#"[{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}]"#));
        assert_eq!((ids, rest), (vec![json!(1)], None));
        for text in [
            r#"{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{"systemPrompt":"\ud800"}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{"maxTokens":1e400}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"roots/list","method":"sampling/createMessage"}"#,
        ] {
            assert_eq!(refused(v.guard(text)), (vec![json!(3)], None), "{text}");
        }
        // Which method a client reads is not known: not passed on a guess.
        for text in [
            r#"{"jsonrpc":"2.0","id":4,"method":"sampling/createMessage","method":"roots/list"}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"roots/list","params":{"a":1,"a":2}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"roots/list","params":{"x":"\ud800"}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"sampling/createMessage","params":{"x":tru}}"#,
        ] {
            assert_eq!(v.guard(text), Guarded::Dropped, "{text}");
        }
        for text in [
            r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"a","name":"b"}]}}"#,
            r#"{"jsonrpc":"2.0","id":5,"result":{"x":tru}}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"roots/list"}"#,
            "",
            " \n",
        ] {
            assert_eq!(v.guard(text), Guarded::Pass, "{text}");
        }
        // Answers that only JavaScript reads are filtered as it reads them.
        let lists = view(
            json!({"version": "1", "default": "allow", "hide": ["secret"]}),
            "g",
        );
        let text = r#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"},{"name":"ok","d":"\udc00"}]}}]"#;
        let out: Value =
            serde_json::from_str(&lists.filter_bytes(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            out[0]["result"]["tools"],
            json!([{"name": "ok", "d": "\u{fffd}"}])
        );
    }

    #[test]
    fn templates_follow_the_resource_default_and_hide() {
        let open = view(
            json!({"version": "1", "default": "deny", "defaults": {"resources": "allow"},
                "hide_resources": ["secret://*"]}),
            "g",
        );
        assert_eq!(
            names(
                &open,
                3,
                "resourceTemplates",
                "uriTemplate",
                &["a://{x}", "secret://{k}"]
            ),
            ["a://{x}"]
        );
        let all = view(
            json!({"version": "1", "default": "deny", "lists": "all"}),
            "g",
        );
        assert_eq!(
            names(&all, 3, "resourceTemplates", "uriTemplate", &["a://{x}"]),
            ["a://{x}"]
        );
        assert_eq!(names(&all, 1, "tools", "name", &["t"]), ["t"]);
    }
}
