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

    /// Drops what this caller may not see from a list result (or a batch of them) that
    /// answers one of the ids. True if anything was removed.
    pub fn filter(&self, msg: &mut Value) -> bool {
        match msg {
            Value::Array(items) => items.iter_mut().fold(false, |changed, m| self.filter(m) | changed),
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
        assert_eq!(names(&v, 1, "tools", "name", &["echo", "admin", "add"]), ["echo"]);
        assert_eq!(
            names(&v, 2, "resources", "uri", &["demo://resource/static/a", "file:///etc/passwd"]),
            ["demo://resource/static/a"]
        );
        assert_eq!(
            names(&v, 3, "resourceTemplates", "uriTemplate", &[
                "demo://resource/static/{name}",
                "demo://resource/dynamic/{id}"
            ]),
            ["demo://resource/static/{name}"]
        );
        assert_eq!(
            names(&v, 4, "prompts", "name", &["simple-prompt", "complex_prompt"]),
            ["simple-prompt"]
        );
        // An answer to another request is left alone.
        assert_eq!(names(&v, 9, "tools", "name", &["admin"]), ["admin"]);
    }

    #[test]
    fn templates_follow_the_resource_default_and_hide() {
        let open = view(
            json!({"version": "1", "default": "deny", "defaults": {"resources": "allow"},
                "hide_resources": ["secret://*"]}),
            "g",
        );
        assert_eq!(
            names(&open, 3, "resourceTemplates", "uriTemplate", &["a://{x}", "secret://{k}"]),
            ["a://{x}"]
        );
        let all = view(json!({"version": "1", "default": "deny", "lists": "all"}), "g");
        assert_eq!(names(&all, 3, "resourceTemplates", "uriTemplate", &["a://{x}"]), ["a://{x}"]);
        assert_eq!(names(&all, 1, "tools", "name", &["t"]), ["t"]);
    }
}
