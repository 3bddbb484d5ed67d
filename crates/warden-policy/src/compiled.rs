//! [`CompiledPolicy`]: a validated policy indexed for fast, allocation-free decisions.

use std::collections::{HashMap, HashSet};

use crate::condition::{ArgPath, CompiledCondition};
use crate::glob::{Glob, GlobMatcher};
use crate::model::*;
use crate::pointer::{child, index};
use crate::problem::{Problem, Problems};
use crate::{Error, validate};

/// Dense index of a named counter within one compiled policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterId(pub usize);

/// `max` cells per `window_secs`: the data a rate limiter needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    pub max: u64,
    pub window_secs: u64,
}

/// One limit of the policy, ready to be charged.
#[derive(Debug, Clone)]
pub struct CompiledLimit {
    /// Position in [`CompiledPolicy::limits`], so limiters can keep state per limit.
    pub index: usize,
    /// Where the limit is written, e.g. `/tools/create_instance/limits/0`.
    pub pointer: String,
    pub counter: CounterId,
    pub counter_name: String,
    pub quota: Quota,
    pub scope: Scope,
    pub(crate) cost: Option<(String, ArgPath)>,
    /// With [`Scope::Claim`]: the claim's name and its path into the claims.
    pub(crate) claim: Option<(String, ArgPath)>,
    /// What the agent reads when this limit refuses a call (the policy's own words).
    pub on_deny: Option<String>,
    /// Give the charge back when the server answers the call with a JSON-RPC error.
    pub refund_on_error: bool,
}

impl CompiledLimit {
    /// The argument path whose value this limit charges, if it is weighted.
    pub fn cost_path(&self) -> Option<&str> {
        self.cost.as_ref().map(|(p, _)| p.as_str())
    }

    /// With [`Scope::Claim`]: the claim that keys the bucket.
    pub fn claim(&self) -> Option<&str> {
        self.claim.as_ref().map(|(c, _)| c.as_str())
    }

    /// Whose bucket `call` charges: the grant, session id, client address, claim value, or
    /// `""` (global). `None` when the call has no such key (the decision then denies).
    pub fn scope_key(&self, call: &crate::Call<'_>) -> Option<String> {
        match self.scope {
            Scope::Grant => call.grant.map(str::to_owned),
            Scope::Session => call.session.map(str::to_owned),
            Scope::Ip => call.ip.map(|ip| ip.to_string()),
            Scope::Global => Some(String::new()),
            Scope::Claim => {
                let (_, path) = self.claim.as_ref()?;
                match path.resolve(call.claims)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                        Some(v.to_string())
                    }
                    // A list or an object names no single bucket.
                    _ => None,
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) pointer: String,
    pub(crate) message: String,
    pub(crate) conditions: Vec<(String, CompiledCondition)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The `tools` key: an exact name or a glob.
    pub(crate) key: String,
    pub(crate) pointer: String,
    pub(crate) deny_if: Vec<CompiledRule>,
    pub(crate) require: Vec<CompiledRule>,
    /// Indices into `CompiledPolicy::limits`: the tool's own, then `all_tools`.
    pub(crate) limits: Vec<usize>,
    pub(crate) approval: Option<Approval>,
    pub(crate) shadow: bool,
    /// Known at compile time for exact names, so the hot path skips the hide lookup.
    pub(crate) hidden: bool,
}

/// One kind's entries (tools, resources, prompts, other methods, server requests), indexed.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub(crate) default_allow: bool,
    hidden_exact: HashSet<String>,
    hidden_globs: GlobMatcher<()>,
    pub(crate) exact: HashMap<String, usize>,
    pub(crate) globs: GlobMatcher<usize>,
    pub(crate) entries: Vec<Entry>,
    /// `all_tools` limits, for tools that only `default: allow` lets through.
    pub(crate) default_limits: Vec<usize>,
    /// `all_tools` rules, for the same tools (entries hold their own copy, after theirs).
    pub(crate) default_deny_if: Vec<CompiledRule>,
    pub(crate) default_require: Vec<CompiledRule>,
}

impl Section {
    pub(crate) fn is_hidden(&self, name: &str) -> bool {
        self.hidden_exact.contains(name) || self.hidden_globs.find(name).is_some()
    }

    pub(crate) fn hidden_by(&self, name: &str) -> Option<&str> {
        self.hidden_exact
            .get(name)
            .map(String::as_str)
            .or_else(|| self.hidden_globs.find(name).map(|(g, _)| g.as_str()))
    }

    /// The entry that governs `name`: exact, else the most specific glob.
    pub(crate) fn entry(&self, name: &str) -> Option<&Entry> {
        let i = match self.exact.get(name) {
            Some(&i) => i,
            None => *self.globs.find(name)?.1,
        };
        Some(&self.entries[i])
    }
}

/// A validated policy, indexed. Immutable; share it behind an `Arc`.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    policy: Policy,
    pub(crate) shadow: bool,
    /// One per [`Kind`], in [`Kind::ALL`]'s order.
    pub(crate) sections: [Section; 5],
    pub(crate) limits: Vec<CompiledLimit>,
    counter_names: Vec<String>,
    /// Claims that conditions or limits read (`team`, `org.id`, `scope`), for the audit.
    claims_read: Vec<(String, ArgPath)>,
    /// Counters that conditions read (`counter.NAME`), each with a limit that charges it
    /// (its spec says whose bucket the caller's is).
    counters_read: Vec<(String, usize)>,
    /// Whether any condition or limit cost reads `args`.
    reads_arguments: bool,
    /// Whether any entry needs a person's approval.
    asks_approval: bool,
    /// Whether list answers keep only what each caller could call.
    filters_lists: bool,
    /// Whether some server-to-client request can be denied.
    rules_server_requests: bool,
}

impl CompiledPolicy {
    /// Validates and compiles `policy`.
    pub fn new(policy: &Policy) -> Result<CompiledPolicy, Error> {
        let problems = validate(policy);
        if !problems.is_empty() {
            return Err(problems.into());
        }
        Builder::default().build(policy).map_err(Error::from)
    }

    /// The policy this was compiled from.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub(crate) fn section(&self, kind: Kind) -> &Section {
        &self.sections[kind as usize]
    }

    /// Whether `tool` is hidden: dropped from `tools/list` and denied when called.
    pub fn is_hidden(&self, tool: &str) -> bool {
        self.section(Kind::Tool).is_hidden(tool)
    }

    /// Whether a name of `kind` is hidden (a tool name, a resource URI, a prompt name).
    pub fn is_hidden_as(&self, kind: Kind, name: &str) -> bool {
        self.section(kind).is_hidden(name)
    }

    /// The `hide` pattern that hides `tool`, if any.
    pub fn hidden_by(&self, tool: &str) -> Option<&str> {
        self.section(Kind::Tool).hidden_by(tool)
    }

    /// The `tools` key whose entry governs `tool`: its exact name, else the most specific
    /// matching glob. Hiding is not considered.
    pub fn entry_key(&self, tool: &str) -> Option<&str> {
        self.entry_key_as(Kind::Tool, tool)
    }

    /// The key of the entry of `kind` that governs `name`.
    pub fn entry_key_as(&self, kind: Kind, name: &str) -> Option<&str> {
        self.section(kind).entry(name).map(|e| e.key.as_str())
    }

    /// Whether the policy says anything of `kind` beyond "allow all": a deny default, an
    /// entry or a hide pattern. A request of that kind the gate cannot read a name from is
    /// refused then, and passes otherwise.
    pub fn rules_kind(&self, kind: Kind) -> bool {
        let s = self.section(kind);
        !s.default_allow
            || !s.entries.is_empty()
            || !s.hidden_exact.is_empty()
            || !s.hidden_globs.is_empty()
            || (kind == Kind::Tool && !s.default_limits.is_empty())
    }

    /// Whether a list of `kind` can lose an entry to this policy: it hides some, or it
    /// filters lists and rules that kind. When not, list answers pass untouched.
    pub fn may_drop_from_lists(&self, kind: Kind) -> bool {
        let s = self.section(kind);
        !s.hidden_exact.is_empty()
            || !s.hidden_globs.is_empty()
            || (self.filters_lists && self.rules_kind(kind))
    }

    /// Whether a name no entry covers is allowed, for `kind`.
    pub fn default_allows(&self, kind: Kind) -> bool {
        self.section(kind).default_allow
    }

    /// Whether list answers keep only what each caller could call (`lists: callable`, the
    /// default), rather than everything but hidden entries.
    pub fn filters_lists(&self) -> bool {
        self.filters_lists
    }

    /// Whether any server-to-client request can be denied: when not, the layer need not
    /// read the server's messages.
    pub fn rules_server_requests(&self) -> bool {
        self.rules_server_requests
    }

    /// Every limit in the policy, in document order.
    pub fn limits(&self) -> &[CompiledLimit] {
        &self.limits
    }

    /// The distinct counter names; a [`CounterId`] indexes this list.
    pub fn counter_names(&self) -> &[String] {
        &self.counter_names
    }

    /// Whether the whole policy is in shadow mode.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// The counters conditions read (`counter.NAME`), each with the index of a limit that
    /// charges it: a caller's value is that limit's bucket for the caller's scope key. The
    /// layer reads them from its counter store before deciding.
    pub fn counters_read(&self) -> &[(String, usize)] {
        &self.counters_read
    }

    /// Whether any decision reads the call's arguments (an `args.*` condition or a limit's
    /// `cost`). When not, [`CompiledPolicy::decide`] gives the same answer without them, so
    /// a caller may skip building them.
    pub fn reads_arguments(&self) -> bool {
        self.reads_arguments
    }

    /// Whether any tool's calls need a person's approval (who is shown the arguments).
    pub fn asks_approval(&self) -> bool {
        // Known when compiled: the layer asks this on every call.
        self.asks_approval
    }

    /// The claims the policy reads (`caller.claims.*`, `caller.scopes`, `per claim`).
    pub fn claims_read(&self) -> impl Iterator<Item = &str> {
        self.claims_read.iter().map(|(name, _)| name.as_str())
    }

    /// The values of just the claims the policy reads, for an audit line: the other claims
    /// of a token (email, name, ...) stay out of the logs. `None` when there are none.
    pub fn read_claims(
        &self,
        claims: Option<&serde_json::Value>,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let mut out = serde_json::Map::new();
        for (name, path) in &self.claims_read {
            if let Some(v) = path.resolve(claims) {
                out.insert(name.clone(), v.clone());
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

#[derive(Default)]
struct Builder {
    limits: Vec<CompiledLimit>,
    counters: HashMap<String, CounterId>,
    counter_names: Vec<String>,
    claims_read: Vec<(String, ArgPath)>,
    /// Counter names conditions read, resolved to limits once every limit is known.
    counters_wanted: Vec<String>,
    reads_arguments: bool,
    problems: Vec<Problem>,
}

impl Builder {
    /// Notes a claim the policy reads (once), for the audit's claim values.
    fn reads_claim(&mut self, name: &str) {
        if !self.claims_read.iter().any(|(n, _)| n == name) {
            if let Some(path) = ArgPath::segments(name) {
                self.claims_read.push((name.to_owned(), path));
            }
        }
    }

    fn build(mut self, p: &Policy) -> Result<CompiledPolicy, Problems> {
        let all = p.all_tools.as_ref();
        let all_limits = all.and_then(|a| a.limits.as_deref()).unwrap_or(&[]);
        let default_limits = self.limits(all_limits, "/all_tools/limits");
        let default_deny_if =
            self.rules(all.and_then(|a| a.deny_if.as_deref()), "/all_tools/deny_if");
        let default_require =
            self.rules(all.and_then(|a| a.require.as_deref()), "/all_tools/require");
        let tools = self.section(
            p,
            Kind::Tool,
            default_limits,
            default_deny_if,
            default_require,
        );
        let [resources, prompts, methods, server_requests] = [
            Kind::Resource,
            Kind::Prompt,
            Kind::Method,
            Kind::ServerRequest,
        ]
        .map(|kind| self.section(p, kind, Vec::new(), Vec::new(), Vec::new()));
        if !self.problems.is_empty() {
            return Err(Problems(self.problems));
        }
        let counters_read = self
            .counters_wanted
            .iter()
            .filter_map(|name| {
                let i = self.limits.iter().position(|l| &l.counter_name == name)?;
                Some((name.clone(), i))
            })
            .collect();
        let sections = [tools, resources, prompts, methods, server_requests];
        let asks_approval = sections
            .iter()
            .flat_map(|s| &s.entries)
            .any(|e| e.approval.is_some());
        let rules_server_requests = {
            let s = &sections[Kind::ServerRequest as usize];
            !s.default_allow || !s.entries.is_empty()
        };
        Ok(CompiledPolicy {
            policy: p.clone(),
            shadow: p.mode == Some(Mode::Shadow),
            sections,
            limits: self.limits,
            counters_read,
            counter_names: self.counter_names,
            claims_read: self.claims_read,
            reads_arguments: self.reads_arguments,
            asks_approval,
            filters_lists: p.filters_lists(),
            rules_server_requests,
        })
    }

    /// Indexes one kind's entries; `default_*` are what every entry adds after its own
    /// (`all_tools`, for tools).
    fn section(
        &mut self,
        p: &Policy,
        kind: Kind,
        default_limits: Vec<usize>,
        default_deny_if: Vec<CompiledRule>,
        default_require: Vec<CompiledRule>,
    ) -> Section {
        let mut hidden_exact = HashSet::new();
        let mut hidden_globs = Vec::new();
        for name in p.hidden(kind) {
            if Glob::is_glob(name) {
                hidden_globs.push((Glob::new(name), ()));
            } else {
                hidden_exact.insert(name.clone());
            }
        }
        let hidden_globs = GlobMatcher::new(hidden_globs);
        let is_hidden = |n: &str| hidden_exact.contains(n) || hidden_globs.find(n).is_some();
        let section = format!("/{}", kind.section());
        let mut entries = Vec::new();
        let mut exact = HashMap::new();
        let mut globs = Vec::new();
        for (key, rule) in p.entries(kind).into_iter().flatten() {
            let pointer = child(&section, key);
            let mut limits = self.limits(
                rule.limits.as_deref().unwrap_or(&[]),
                &child(&pointer, "limits"),
            );
            limits.extend_from_slice(&default_limits);
            let mut deny_if = self.rules(rule.deny_if.as_deref(), &child(&pointer, "deny_if"));
            deny_if.extend_from_slice(&default_deny_if);
            let mut require = self.rules(rule.require.as_deref(), &child(&pointer, "require"));
            require.extend_from_slice(&default_require);
            let entry = Entry {
                key: key.clone(),
                deny_if,
                require,
                pointer,
                limits,
                approval: rule.approval.clone(),
                // An entry's own mode wins over the policy's, both ways.
                shadow: rule
                    .mode
                    .map_or(p.mode == Some(Mode::Shadow), |m| m == Mode::Shadow),
                hidden: !Glob::is_glob(key) && is_hidden(key),
            };
            if Glob::is_glob(key) {
                globs.push((Glob::new(key), entries.len()));
            } else {
                exact.insert(key.clone(), entries.len());
            }
            entries.push(entry);
        }
        Section {
            default_allow: p.default_for(kind) == DefaultAction::Allow,
            hidden_exact,
            hidden_globs,
            exact,
            globs: GlobMatcher::new(globs),
            entries,
            default_limits,
            default_deny_if,
            default_require,
        }
    }

    fn limits(&mut self, limits: &[Limit], at: &str) -> Vec<usize> {
        let mut out = Vec::with_capacity(limits.len());
        for (i, l) in limits.iter().enumerate() {
            let next = CounterId(self.counter_names.len());
            let counter = *self.counters.entry(l.counter.clone()).or_insert(next);
            if counter == next {
                self.counter_names.push(l.counter.clone());
            }
            let pointer = index(at, i);
            let cost = match &l.cost {
                None => None,
                Some(path) => match ArgPath::parse(path) {
                    Some(parsed) => {
                        self.reads_arguments = true;
                        Some((path.clone(), parsed))
                    }
                    None => {
                        self.problems.push(Problem::new(
                            child(&pointer, "cost"),
                            "invalid argument path",
                        ));
                        None
                    }
                },
            };
            if let Some(claim) = &l.claim {
                self.reads_claim(claim);
            }
            out.push(self.limits.len());
            self.limits.push(CompiledLimit {
                index: self.limits.len(),
                pointer,
                counter,
                counter_name: l.counter.clone(),
                quota: Quota {
                    max: l.max,
                    window_secs: l.window.as_secs(),
                },
                scope: l.scope(),
                cost,
                claim: l
                    .claim
                    .as_ref()
                    .and_then(|c| Some((c.clone(), ArgPath::segments(c)?))),
                on_deny: l.on_deny.clone(),
                refund_on_error: l.refund_on_error,
            });
        }
        out
    }

    fn rules(&mut self, rules: Option<&[Rule]>, at: &str) -> Vec<CompiledRule> {
        let mut out = Vec::new();
        for (i, rule) in rules.unwrap_or(&[]).iter().enumerate() {
            let pointer = index(at, i);
            let mut conditions = Vec::with_capacity(rule.conditions.len());
            for (j, c) in rule.conditions.iter().enumerate() {
                let c_at = index(&child(&pointer, "conditions"), j);
                match CompiledCondition::new(c) {
                    Some(compiled) => {
                        for name in compiled.claims_read() {
                            self.reads_claim(&name);
                        }
                        self.reads_arguments |= compiled.reads_arguments();
                        if let Some(name) = compiled.counter_read() {
                            if !self.counters_wanted.iter().any(|n| n == name) {
                                self.counters_wanted.push(name.to_owned());
                            }
                        }
                        conditions.push((c_at, compiled));
                    }
                    // validate() refuses these first; keep failing closed regardless.
                    None => self
                        .problems
                        .push(Problem::new(c_at, "condition cannot be compiled")),
                }
            }
            let message = rule
                .on_deny
                .clone()
                .unwrap_or_else(|| format!("denied by rule {pointer}"));
            out.push(CompiledRule {
                pointer,
                message,
                conditions,
            });
        }
        out
    }
}
