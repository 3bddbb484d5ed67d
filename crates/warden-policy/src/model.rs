//! The policy model: one Rust value per `policy.json` construct.
//!
//! Optional fields are `Option`s, so a document serializes back exactly as it was written
//! (key order aside): an absent key stays absent and an empty list stays an empty list.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// A whole policy document.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Warden policy",
    description = "A policy.json document: the hosted PolicyLayer format plus Warden's extensions."
)]
pub struct Policy {
    /// Format version; only `"1"` exists.
    pub version: String,
    /// What happens to a tool that no entry names. Absent means `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<DefaultAction>,
    /// Warden extension: `shadow` decides and logs every call but blocks none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Tools removed from `tools/list` answers and denied at call time. `"*"` hides all;
    /// Warden also accepts globs (`delete_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hide: Option<Vec<String>>,
    /// Limits charged on every allowed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_tools: Option<AllTools>,
    /// Per-tool entries, keyed by exact name or (Warden extension) glob such as `list_*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<IndexMap<String, ToolRule>>,
    /// Warden extension: a default per kind, over `default` (`{"resources": "allow"}` keeps
    /// resources open while tools stay default deny).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// Warden extension: what list answers show. `callable` (the default) drops every entry
    /// the caller could never call; `all` shows everything but hidden entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lists: Option<Lists>,
    /// Warden extension: resource URIs (globs) removed from resource lists and denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hide_resources: Option<Vec<String>>,
    /// Warden extension: prompt names (globs) removed from `prompts/list` and denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hide_prompts: Option<Vec<String>>,
    /// Warden extension: resource entries keyed by URI or URI glob (`file:///srv/docs/*`),
    /// for `resources/read`, `resources/subscribe` and completions of a resource template.
    /// `args.uri` is the URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<IndexMap<String, ToolRule>>,
    /// Warden extension: prompt entries keyed by name or glob, for `prompts/get` (`args.*`
    /// are the prompt's `arguments`) and completions of a prompt's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<IndexMap<String, ToolRule>>,
    /// Warden extension: requests the server sends the client (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`), keyed by method. Allowed unless an entry or
    /// `defaults.server_requests` says otherwise; `args.*` are the request's params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_requests: Option<IndexMap<String, ToolRule>>,
}

/// Warden extension: a default action per kind of message. An absent key takes the
/// policy's `default`, except `server_requests`, which is `allow` unless set here.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<DefaultAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<DefaultAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<DefaultAction>,
    /// Client-to-server methods the gate does not know (a later protocol's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<DefaultAction>,
    /// Server-to-client requests no `server_requests` entry names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_requests: Option<DefaultAction>,
}

/// The kinds of message a policy decides, each with its own section and default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `tools/call`, by tool name.
    #[default]
    Tool,
    /// `resources/read` and `resources/subscribe`, by URI.
    Resource,
    /// `prompts/get`, by prompt name.
    Prompt,
    /// A client-to-server method the gate does not know, by method name.
    Method,
    /// A request from the server to the client, by method name.
    ServerRequest,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Tool,
        Kind::Resource,
        Kind::Prompt,
        Kind::Method,
        Kind::ServerRequest,
    ];

    /// The key of this kind's entries in policy.json (and in `defaults`).
    pub fn section(self) -> &'static str {
        match self {
            Kind::Tool => "tools",
            Kind::Resource => "resources",
            Kind::Prompt => "prompts",
            Kind::Method => "methods",
            Kind::ServerRequest => "server_requests",
        }
    }

    /// The word for one thing of this kind, in messages: "tool `x` is not allowed".
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Resource => "resource",
            Kind::Prompt => "prompt",
            Kind::Method => "method",
            Kind::ServerRequest => "server request",
        }
    }

    /// The hide key of this kind, where it has one.
    pub fn hide_key(self) -> Option<&'static str> {
        match self {
            Kind::Tool => Some("hide"),
            Kind::Resource => Some("hide_resources"),
            Kind::Prompt => Some("hide_prompts"),
            Kind::Method | Kind::ServerRequest => None,
        }
    }
}

impl Kind {
    /// Whether this is [`Kind::Tool`] (recorded calls leave the kind out then).
    pub fn is_tool(&self) -> bool {
        *self == Kind::Tool
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.noun())
    }
}

/// The server-to-client requests a `server_requests` entry can name.
pub const SERVER_REQUESTS: &[&str] =
    &["sampling/createMessage", "elicitation/create", "roots/list"];

/// Rules and limits that apply to every call a tool entry (or `default: allow`) lets
/// through, after the tool's own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllTools {
    /// Warden extension: deny unless every condition of each entry holds, after the tool's
    /// own `require`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<Vec<Rule>>,
    /// Warden extension: deny when every condition of an entry holds, after the tool's own
    /// `deny_if`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_if: Option<Vec<Rule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Vec<Limit>>,
}

/// One tool's entry. `{}` allows the tool.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolRule {
    /// Deny unless every condition of each entry holds (first failing entry denies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<Vec<Rule>>,
    /// Deny when every condition of an entry holds (first such entry denies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_if: Option<Vec<Rule>>,
    /// Rate limits charged when the call is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Vec<Limit>>,
    /// Warden extension: a person must approve each call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Warden extension: `shadow` logs this tool's decisions without blocking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

/// A `require` or `deny_if` entry.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// All must hold (an empty list always holds).
    pub conditions: Vec<Condition>,
    /// The message the agent reads when this entry denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_deny: Option<String>,
}

/// `{path, op, value}`: a test on one argument of the call.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// `args.name`, with dots descending into nested objects (`args.metadata.key`).
    pub path: String,
    pub op: Op,
    /// What the argument is compared with; its shape depends on `op`.
    pub value: Value,
}

/// A rate limit: a GCRA bucket of `max` calls refilled evenly over `window`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Bucket name; limits with the same name and quota share one bucket per scope key.
    pub counter: String,
    pub window: Window,
    /// Calls (or cost units) per window; a positive integer.
    #[schemars(range(min = 1))]
    pub max: u64,
    /// Whose bucket is charged. Absent means `grant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Warden extension: charge the value of this argument (`args.amount`) instead of 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// Warden extension, with `scope: "claim"`: the claim whose value keys the bucket
    /// (`team`; dots descend into objects: `org.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Warden extension: what the agent reads when this limit refuses a call (the time
    /// until it has room again is added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_deny: Option<String>,
    /// Warden extension: give the charge back when the server answers the call with a
    /// JSON-RPC error (a failed call costs nothing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refund_on_error: bool,
}

/// Warden extension: each call waits for a person's yes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Seconds to wait for an answer (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout: Option<u64>,
    /// What an unanswered request becomes (default `deny`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
    /// Who is asked (default `queue`: the console, the approval API or the webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<ApprovalVia>,
    /// Argument paths (`args.card_number`) whose values the approver is not shown: the
    /// console, the approval API and notifications mask them. The approval still binds the
    /// real values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
}

impl Approval {
    pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

    pub fn timeout_secs(&self) -> u64 {
        self.timeout.unwrap_or(Self::DEFAULT_TIMEOUT_SECS)
    }

    /// What replaces a redacted value.
    pub const MASK: &'static str = "[redacted]";

    /// `args` as the approver sees them: each `redact` path that exists replaced by
    /// [`Approval::MASK`].
    pub fn shown(&self, args: &serde_json::Value) -> serde_json::Value {
        let mut out = args.clone();
        for path in &self.redact {
            if let Some(slot) =
                crate::condition::ArgPath::parse(path).and_then(|p| p.resolve_mut(&mut out))
            {
                *slot = serde_json::Value::String(Self::MASK.to_owned());
            }
        }
        out
    }
}

/// A limit's window: a named period or (as the hosted FAQ shows) a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Minute,
    Hour,
    Day,
    Seconds(u64),
}

impl Window {
    pub const NAMES: &'static [(&'static str, Window)] = &[
        ("minute", Window::Minute),
        ("hour", Window::Hour),
        ("day", Window::Day),
    ];

    pub fn as_secs(self) -> u64 {
        match self {
            Window::Minute => 60,
            Window::Hour => 3600,
            Window::Day => 86_400,
            Window::Seconds(s) => s,
        }
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Window::Minute => s.serialize_str("minute"),
            Window::Hour => s.serialize_str("hour"),
            Window::Day => s.serialize_str("day"),
            Window::Seconds(n) => s.serialize_u64(*n),
        }
    }
}

impl JsonSchema for Window {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Window".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`minute`, `hour`, `day`, or a number of seconds.",
            "oneOf": [
                {"type": "string", "enum": ["minute", "hour", "day"]},
                {"type": "integer", "minimum": 1}
            ]
        })
    }
}

/// Declares a closed set of keywords: the enum, its serde names and a lookup table.
macro_rules! keywords {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, JsonSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every keyword with its value, in documentation order.
            pub const NAMES: &'static [(&'static str, $name)] = &[$(($text, $name::$variant)),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keywords! {
    /// What happens to tools no entry names.
    DefaultAction { Allow = "allow", Deny = "deny" }
}

keywords! {
    /// What list answers show: `callable` drops what the caller could never call.
    Lists { Callable = "callable", All = "all" }
}

keywords! {
    /// `enforce` blocks; `shadow` logs what would have been blocked and forwards.
    Mode { Enforce = "enforce", Shadow = "shadow" }
}

keywords! {
    /// Whose bucket a limit charges.
    Scope {
        /// The caller's credential (the default).
        Grant = "grant",
        /// The MCP session (`Mcp-Session-Id`).
        Session = "session",
        /// One bucket for everyone.
        Global = "global",
        /// The client's IP address.
        Ip = "ip",
        /// Warden extension: a claim of the caller's token (`claim` names it), so that, say,
        /// a whole team shares one budget.
        Claim = "claim",
    }
}

keywords! {
    /// What an approval that nobody answers becomes.
    OnTimeout { Deny = "deny", Allow = "allow" }
}

keywords! {
    /// Who is asked to approve a call.
    ApprovalVia {
        /// The gateway's queue: the console, the approval API, the webhook.
        Queue = "queue",
        /// The person in front of the MCP client, through elicitation; a client that cannot
        /// be asked is refused.
        Client = "client",
        /// The person in front of the MCP client where it can be asked, else the queue.
        ClientOrQueue = "client_or_queue",
    }
}

impl ApprovalVia {
    /// Whether the MCP client is asked (when it can be).
    pub fn asks_client(self) -> bool {
        matches!(self, ApprovalVia::Client | ApprovalVia::ClientOrQueue)
    }
}

keywords! {
    /// A condition's comparison.
    Op {
        Eq = "eq", Neq = "neq", In = "in", NotIn = "not_in", Lt = "lt", Lte = "lte",
        Gt = "gt", Gte = "gte", Regex = "regex", Contains = "contains", Exists = "exists",
    }
}

impl Policy {
    /// Loads a policy document: strict JSON (repeated keys are refused), then every
    /// structural problem and every validation problem, all reported at once.
    pub fn from_json_str(text: &str) -> Result<Policy, crate::Error> {
        let value = crate::strict_json::from_str(text)?;
        let policy = Policy::from_value(&value)?;
        let problems = crate::validate(&policy);
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(problems.into())
        }
    }

    /// Builds the model from a JSON value, reporting every structural problem (unknown
    /// keys, wrong types, unknown keywords). Semantic checks are [`crate::validate`]'s.
    pub fn from_value(value: &Value) -> Result<Policy, crate::Problems> {
        crate::load::policy(value)
    }

    /// The document as JSON.
    pub fn to_value(&self) -> Value {
        // Serializing plain structs, strings, integers and `Value`s into a `Value` cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The default action, `deny` when absent.
    pub fn default_action(&self) -> DefaultAction {
        self.default.unwrap_or(DefaultAction::Deny)
    }

    /// The default for one kind: its `defaults` key, else `default` (server requests:
    /// `allow`, so that a policy written before they were ruled keeps them working).
    pub fn default_for(&self, kind: Kind) -> DefaultAction {
        let d = self.defaults.as_ref();
        let own = match kind {
            Kind::Tool => d.and_then(|d| d.tools),
            Kind::Resource => d.and_then(|d| d.resources),
            Kind::Prompt => d.and_then(|d| d.prompts),
            Kind::Method => d.and_then(|d| d.methods),
            Kind::ServerRequest => {
                return d
                    .and_then(|d| d.server_requests)
                    .unwrap_or(DefaultAction::Allow);
            }
        };
        own.unwrap_or_else(|| self.default_action())
    }

    /// The entries of one kind (`None` for [`Kind::Method`], which has none).
    pub fn entries(&self, kind: Kind) -> Option<&IndexMap<String, ToolRule>> {
        match kind {
            Kind::Tool => self.tools.as_ref(),
            Kind::Resource => self.resources.as_ref(),
            Kind::Prompt => self.prompts.as_ref(),
            Kind::ServerRequest => self.server_requests.as_ref(),
            Kind::Method => None,
        }
    }

    /// The hide patterns of one kind.
    pub fn hidden(&self, kind: Kind) -> &[String] {
        match kind {
            Kind::Tool => self.hide.as_deref(),
            Kind::Resource => self.hide_resources.as_deref(),
            Kind::Prompt => self.hide_prompts.as_deref(),
            Kind::Method | Kind::ServerRequest => None,
        }
        .unwrap_or(&[])
    }

    /// Whether list answers keep only what each caller could call (the default).
    pub fn filters_lists(&self) -> bool {
        self.lists != Some(Lists::All)
    }

    /// Whether the policy says anything of resources, prompts, other methods or server
    /// requests. A policy that does not, under `default deny`, now denies resources and
    /// prompts it used to let through: `warden check` says so.
    pub fn rules_beyond_tools(&self) -> bool {
        self.defaults.is_some()
            || self.hide_resources.is_some()
            || self.hide_prompts.is_some()
            || self.resources.is_some()
            || self.prompts.is_some()
            || self.server_requests.is_some()
    }
}

impl<'de> serde::Deserialize<'de> for Policy {
    /// Goes through the same loader and validation as [`Policy::from_json_str`], so a
    /// policy embedded in a larger serde config is refused for the same problems (repeated
    /// keys are the outer deserializer's to catch).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let policy = Policy::from_value(&value).map_err(serde::de::Error::custom)?;
        let problems = crate::validate(&policy);
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(serde::de::Error::custom(problems))
        }
    }
}

impl Scope {
    /// The scope a limit charges when it names none.
    pub const DEFAULT: Scope = Scope::Grant;
}

impl Limit {
    pub fn scope(&self) -> Scope {
        self.scope.unwrap_or(Scope::DEFAULT)
    }
}

impl ToolRule {
    pub fn is_shadow(&self) -> bool {
        self.mode == Some(Mode::Shadow)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Window::Minute => f.write_str("minute"),
            Window::Hour => f.write_str("hour"),
            Window::Day => f.write_str("day"),
            Window::Seconds(n) => write!(f, "{n} seconds"),
        }
    }
}
