//! Conditions compiled for evaluation, and their three-valued logic.
//!
//! A condition is true, false, or unknown (the argument exists but cannot be compared:
//! `gt` on a non-numeric string, `regex` on a number). Unknown counts against the caller;
//! the rules in `decision.rs` apply that. Numeric strings compare as numbers because real
//! servers coerce them (`"500"` reaches the Linode API as 500).

use std::borrow::Cow;
use std::cmp::Ordering;

use regex::Regex;
use serde_json::Value;

use crate::decision::Call;
use crate::model::{Condition, Op};

/// The outcome of one condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn from_bool(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }
}

/// A path into the call's arguments: `args.a.b` is `["a", "b"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgPath(Vec<String>);

impl ArgPath {
    /// `None` unless the path is `args.` followed by non-empty dot-separated names.
    pub(crate) fn parse(path: &str) -> Option<ArgPath> {
        Self::segments(path.strip_prefix("args.")?)
    }

    /// `a.b` → `["a", "b"]`; `None` if a segment is empty.
    pub(crate) fn segments(rest: &str) -> Option<ArgPath> {
        let segs: Vec<String> = rest.split('.').map(str::to_owned).collect();
        segs.iter().all(|s| !s.is_empty()).then_some(ArgPath(segs))
    }

    pub(crate) fn resolve_mut<'a>(&self, args: &'a mut Value) -> Option<&'a mut Value> {
        let mut at = args;
        for seg in &self.0 {
            at = match at {
                Value::Object(m) => m.get_mut(seg)?,
                Value::Array(items) => items.get_mut(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(at)
    }

    pub(crate) fn resolve<'a>(&self, args: Option<&'a Value>) -> Option<&'a Value> {
        let mut at = args?;
        for seg in &self.0 {
            at = match at {
                Value::Object(m) => m.get(seg)?,
                Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(at)
    }
}

/// Where a condition looks: the call's arguments, or who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CondPath {
    /// `args.a.b`.
    Args(ArgPath),
    /// `caller.grant`: the grant's name (a static token's, or a JWT's grant claim).
    Grant,
    /// `caller.scopes`: the token's scopes as a list (`scope` split on spaces, else `scp`).
    Scopes,
    /// `caller.claims.a.b`: a claim of the caller's validated token.
    Claims(ArgPath),
    /// `counter.NAME`: what the caller has used of counter NAME's bucket (units not yet
    /// refilled), as the counter store reported it before the decision.
    Counter(String),
}

impl CondPath {
    /// `None` unless the path is one of the forms above.
    pub(crate) fn parse(path: &str) -> Option<CondPath> {
        if let Some(p) = ArgPath::parse(path) {
            return Some(CondPath::Args(p));
        }
        if let Some(name) = path.strip_prefix("counter.").filter(|n| !n.is_empty()) {
            return Some(CondPath::Counter(name.to_owned()));
        }
        match path {
            "caller.grant" => Some(CondPath::Grant),
            "caller.scopes" => Some(CondPath::Scopes),
            _ => ArgPath::segments(path.strip_prefix("caller.claims.")?).map(CondPath::Claims),
        }
    }

    /// Whether the path reads the caller rather than the arguments.
    pub(crate) fn is_caller(&self) -> bool {
        !matches!(self, CondPath::Args(_))
    }

    fn resolve<'v>(&self, call: &Call<'v>) -> Option<Cow<'v, Value>> {
        match self {
            CondPath::Args(p) => p.resolve(call.args).map(Cow::Borrowed),
            CondPath::Claims(p) => p.resolve(call.claims).map(Cow::Borrowed),
            CondPath::Grant => call.grant.map(|g| Cow::Owned(Value::String(g.to_owned()))),
            CondPath::Scopes => scopes(call.claims?).map(Cow::Owned),
            CondPath::Counter(name) => call
                .counters?
                .get(name)
                .map(|used| Cow::Owned(Value::from(*used))),
        }
    }
}

/// A token's scopes as a list: `scope` (space-separated, RFC 8693) or `scp` (a list, or a
/// space-separated string, as some providers send it).
fn scopes(claims: &Value) -> Option<Value> {
    let list = |v: &Value| match v {
        Value::String(s) => Some(
            s.split_whitespace()
                .map(|x| Value::String(x.to_owned()))
                .collect::<Vec<_>>(),
        ),
        Value::Array(items) => Some(items.iter().filter(|i| i.is_string()).cloned().collect()),
        _ => None,
    };
    claims
        .get("scope")
        .and_then(list)
        .or_else(|| claims.get("scp").and_then(list))
        .map(Value::Array)
}

/// A number as the engine compares it: integers exactly, everything else as `f64`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    /// A JSON number, or a string holding exactly a JSON number.
    pub(crate) fn of(v: &Value) -> Option<Num> {
        match v {
            Value::Number(n) => Some(Num::from_number(n)),
            Value::String(s) => s
                .parse::<serde_json::Number>()
                .ok()
                .map(|n| Num::from_number(&n)),
            _ => None,
        }
    }

    fn from_number(n: &serde_json::Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i.into())
        } else if let Some(u) = n.as_u64() {
            Num::Int(u.into())
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    pub(crate) fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    /// Rounded up to a whole unit; `None` for negatives and non-finite values.
    pub(crate) fn to_cost(self) -> Option<u64> {
        match self {
            Num::Int(i) => u64::try_from(i).ok(),
            Num::Float(f) if f.is_finite() && f >= 0.0 && f <= u64::MAX as f64 => {
                Some(f.ceil() as u64)
            }
            Num::Float(_) => None,
        }
    }
}

/// A policy value prepared for equality tests.
#[derive(Debug, Clone)]
struct Operand {
    value: Value,
    num: Option<Num>,
}

impl Operand {
    fn new(value: &Value) -> Operand {
        Operand {
            value: value.clone(),
            num: Num::of(value),
        }
    }

    fn equals(&self, arg: &Value) -> bool {
        match (self.num, Num::of(arg)) {
            (Some(a), Some(b)) => a.compare(b) == Some(Ordering::Equal),
            _ => self.value == *arg,
        }
    }
}

#[derive(Debug, Clone)]
enum Test {
    Eq(Operand),
    Neq(Operand),
    In(Vec<Operand>),
    NotIn(Vec<Operand>),
    Cmp(Op, Num),
    Regex(Regex),
    Contains(Operand),
    Exists(bool),
}

/// A validated condition, ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct CompiledCondition {
    path: CondPath,
    test: Test,
}

/// Regexes in policies come from configuration, but still get a size cap so a typo like
/// `(a{1000}){1000}` is a clear error rather than a huge allocation.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(crate) fn build_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

impl CompiledCondition {
    /// The claims this condition reads, by their dotted names.
    pub(crate) fn claims_read(&self) -> Vec<String> {
        match &self.path {
            CondPath::Claims(p) => vec![p.0.join(".")],
            CondPath::Scopes => vec!["scope".into(), "scp".into()],
            CondPath::Args(_) | CondPath::Grant | CondPath::Counter(_) => Vec::new(),
        }
    }

    /// Whether this condition reads the call's arguments.
    pub(crate) fn reads_arguments(&self) -> bool {
        matches!(self.path, CondPath::Args(_))
    }

    /// The counter this condition reads, if it reads one.
    pub(crate) fn counter_read(&self) -> Option<&str> {
        match &self.path {
            CondPath::Counter(name) => Some(name),
            _ => None,
        }
    }

    /// Compiles a condition that [`crate::validate`] accepted; `None` if it was not valid.
    pub(crate) fn new(c: &Condition) -> Option<CompiledCondition> {
        let path = CondPath::parse(&c.path)?;
        let list = |v: &Value| {
            v.as_array()
                .map(|items| items.iter().map(Operand::new).collect::<Vec<_>>())
        };
        let test = match c.op {
            Op::Eq => Test::Eq(Operand::new(&c.value)),
            Op::Neq => Test::Neq(Operand::new(&c.value)),
            Op::In => Test::In(list(&c.value)?),
            Op::NotIn => Test::NotIn(list(&c.value)?),
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => Test::Cmp(c.op, Num::of(&c.value)?),
            Op::Regex => Test::Regex(build_regex(c.value.as_str()?).ok()?),
            Op::Contains => Test::Contains(Operand::new(&c.value)),
            Op::Exists => Test::Exists(c.value.as_bool()?),
        };
        Some(CompiledCondition { path, test })
    }

    pub(crate) fn eval(&self, call: &Call<'_>) -> Truth {
        let found = self.path.resolve(call);
        let Some(arg) = found.as_deref() else {
            // A missing argument makes every condition false, except `exists`.
            return match self.test {
                Test::Exists(want) => Truth::from_bool(!want),
                _ => Truth::False,
            };
        };
        match &self.test {
            Test::Eq(v) => Truth::from_bool(v.equals(arg)),
            Test::Neq(v) => Truth::from_bool(!v.equals(arg)),
            Test::In(vs) => Truth::from_bool(vs.iter().any(|v| v.equals(arg))),
            Test::NotIn(vs) => Truth::from_bool(!vs.iter().any(|v| v.equals(arg))),
            Test::Cmp(op, bound) => match Num::of(arg).and_then(|a| a.compare(*bound)) {
                None => Truth::Unknown,
                Some(ord) => Truth::from_bool(match op {
                    Op::Lt => ord == Ordering::Less,
                    Op::Lte => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    _ => ord != Ordering::Less,
                }),
            },
            Test::Regex(re) => match arg {
                Value::String(s) => Truth::from_bool(re.is_match(s)),
                _ => Truth::Unknown,
            },
            Test::Contains(needle) => match (arg, &needle.value) {
                (Value::String(hay), Value::String(n)) => {
                    Truth::from_bool(hay.contains(n.as_str()))
                }
                (Value::Array(items), _) => {
                    Truth::from_bool(items.iter().any(|i| needle.equals(i)))
                }
                _ => Truth::Unknown,
            },
            Test::Exists(want) => Truth::from_bool(*want),
        }
    }
}

/// Whether no call can make every one of `conds` true at once.
///
/// Sound, not complete: a `true` is certain (each path is checked on its own; if one path's
/// conditions can't hold together, the whole list can't), a `false` may miss subtler cases.
pub(crate) fn contradictory(conds: &[&CompiledCondition]) -> bool {
    let mut paths: Vec<&CondPath> = conds.iter().map(|c| &c.path).collect();
    paths.dedup();
    paths.iter().any(|path| {
        let group: Vec<&CompiledCondition> =
            conds.iter().copied().filter(|c| c.path == **path).collect();
        path_contradictory(path, &group)
    })
}

fn path_contradictory(path: &CondPath, group: &[&CompiledCondition]) -> bool {
    let wants_missing = group.iter().any(|c| matches!(c.test, Test::Exists(false)));
    if wants_missing {
        // A missing argument makes every other test false.
        return group.iter().any(|c| !matches!(c.test, Test::Exists(false)));
    }
    // `==` and `in` pin the value to a few candidates: try each with the real evaluator.
    let mut pinned: Option<Vec<Value>> = None;
    for c in group {
        let allowed: Vec<&Operand> = match &c.test {
            Test::Eq(v) => vec![v],
            Test::In(vs) => vs.iter().collect(),
            _ => continue,
        };
        let mut candidates = Vec::new();
        for v in allowed {
            candidates.extend(coercions(&v.value));
        }
        pinned = Some(match pinned {
            None => candidates,
            Some(prev) => prev
                .into_iter()
                .filter(|p| candidates.contains(p))
                .collect(),
        });
    }
    if let Some(candidates) = pinned {
        return !candidates.iter().any(|v| {
            let wrapped = path.wrap(v.clone());
            let mut call = Call::new("");
            match path {
                CondPath::Args(_) => call.args = Some(&wrapped),
                CondPath::Grant => call.grant = wrapped.as_str(),
                CondPath::Claims(_) | CondPath::Scopes => call.claims = Some(&wrapped),
                // A counter's value is not known until the call: assume it can match.
                CondPath::Counter(_) => return true,
            }
            group.iter().all(|c| c.eval(&call) == Truth::True)
        });
    }
    // Otherwise only numeric bounds can clash: `> 10 and < 5`.
    let mut low: Option<(Num, bool)> = None; // (bound, inclusive)
    let mut high: Option<(Num, bool)> = None;
    for c in group {
        if let Test::Cmp(op, n) = c.test {
            let inclusive = matches!(op, Op::Gte | Op::Lte);
            let slot = if matches!(op, Op::Gt | Op::Gte) {
                &mut low
            } else {
                &mut high
            };
            let keep_new = match *slot {
                None => true,
                Some((old, old_incl)) => match n.compare(old) {
                    Some(Ordering::Equal) => old_incl && !inclusive,
                    Some(Ordering::Greater) => matches!(op, Op::Gt | Op::Gte),
                    Some(Ordering::Less) => matches!(op, Op::Lt | Op::Lte),
                    None => false,
                },
            };
            if keep_new {
                *slot = Some((n, inclusive));
            }
        }
    }
    match (low, high) {
        (Some((lo, lo_incl)), Some((hi, hi_incl))) => match lo.compare(hi) {
            Some(Ordering::Greater) => true,
            Some(Ordering::Equal) => !(lo_incl && hi_incl),
            _ => false,
        },
        _ => false,
    }
}

/// A value and the other spellings that compare equal to it (`500` and `"500"`).
fn coercions(v: &Value) -> Vec<Value> {
    let mut out = vec![v.clone()];
    match v {
        Value::Number(n) => out.push(Value::String(n.to_string())),
        Value::String(s) => {
            if let Ok(n) = s.parse::<serde_json::Number>() {
                out.push(Value::Number(n));
            }
        }
        _ => {}
    }
    out
}

impl CondPath {
    /// What holds `v` at this path: an arguments or claims object, or the grant itself.
    fn wrap(&self, v: Value) -> Value {
        match self {
            CondPath::Args(p) | CondPath::Claims(p) => p.wrap(v),
            CondPath::Grant | CondPath::Counter(_) => v,
            CondPath::Scopes => serde_json::json!({ "scp": v }),
        }
    }
}

impl ArgPath {
    /// An arguments object holding `v` at this path.
    fn wrap(&self, v: Value) -> Value {
        let mut at = v;
        for seg in self.0.iter().rev() {
            let mut m = serde_json::Map::new();
            m.insert(seg.clone(), at);
            at = Value::Object(m);
        }
        at
    }
}

#[cfg(test)]
impl CompiledCondition {
    fn eval_args(&self, args: Option<&Value>) -> Truth {
        let mut call = Call::new("t");
        call.args = args;
        self.eval(&call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caller_condition(path: &str, op: &str, value: Value) -> CompiledCondition {
        let c = Condition {
            path: path.into(),
            op: Op::from_name(op).unwrap(),
            value,
        };
        CompiledCondition::new(&c).unwrap()
    }

    #[test]
    fn caller_paths_read_the_grant_claims_and_scopes() {
        let claims = json!({"team": "ops", "groups": ["ops", "oncall"], "org": {"tier": 3},
                            "scope": "tools:read instances:write"});
        let call = Call::new("t").grant("alice").claims(&claims);
        let t = |path: &str, op: &str, v: Value| caller_condition(path, op, v).eval(&call);
        assert_eq!(t("caller.grant", "eq", json!("alice")), Truth::True);
        assert_eq!(
            t("caller.claims.team", "in", json!(["ops", "sre"])),
            Truth::True
        );
        assert_eq!(
            t("caller.claims.groups", "contains", json!("oncall")),
            Truth::True
        );
        assert_eq!(t("caller.claims.org.tier", "gte", json!(3)), Truth::True);
        assert_eq!(
            t("caller.scopes", "contains", json!("instances:write")),
            Truth::True
        );
        assert_eq!(t("caller.scopes", "contains", json!("admin")), Truth::False);
        // A missing claim is false, `exists` aside; no claims at all is the same.
        assert_eq!(t("caller.claims.missing", "eq", json!("x")), Truth::False);
        assert_eq!(
            t("caller.claims.missing", "exists", json!(false)),
            Truth::True
        );
        let anonymous = Call::new("t");
        assert_eq!(
            caller_condition("caller.claims.team", "eq", json!("ops")).eval(&anonymous),
            Truth::False
        );
        assert_eq!(
            caller_condition("caller.grant", "exists", json!(true)).eval(&anonymous),
            Truth::False
        );
        // `scp` as a list (Entra, Okta) when there is no `scope`.
        let scp = json!({"scp": ["a", "b"]});
        let call = Call::new("t").claims(&scp);
        assert_eq!(
            caller_condition("caller.scopes", "contains", json!("b")).eval(&call),
            Truth::True
        );
        assert!(CondPath::parse("caller").is_none());
        assert!(CondPath::parse("caller.claims").is_none());
        assert!(CondPath::parse("caller.claims.").is_none());
        assert!(CondPath::parse("caller.token").is_none());
    }

    fn eval(op: &str, value: Value, args: Value) -> Truth {
        let c = Condition {
            path: "args.x".into(),
            op: Op::from_name(op).unwrap(),
            value,
        };
        CompiledCondition::new(&c).unwrap().eval_args(Some(&args))
    }
    use Truth::{False as F, True as T, Unknown as U};

    #[test]
    fn eq_and_neq() {
        assert_eq!(eval("eq", json!("a"), json!({"x": "a"})), T);
        assert_eq!(eval("eq", json!("a"), json!({"x": "b"})), F);
        assert_eq!(eval("eq", json!("a"), json!({})), F);
        assert_eq!(
            eval("eq", json!(500), json!({"x": "500"})),
            T,
            "numeric strings compare as numbers"
        );
        assert_eq!(eval("eq", json!("500"), json!({"x": 500.0})), T);
        assert_eq!(
            eval("eq", json!(true), json!({"x": "true"})),
            F,
            "booleans are not coerced"
        );
        assert_eq!(eval("eq", json!("a"), json!({"x": 1})), F);
        assert_eq!(eval("neq", json!("a"), json!({"x": "b"})), T);
        assert_eq!(eval("neq", json!("a"), json!({"x": "a"})), F);
        assert_eq!(
            eval("neq", json!("a"), json!({})),
            F,
            "missing is false even for neq"
        );
        assert_eq!(eval("neq", json!(1), json!({"x": [1]})), T);
    }

    #[test]
    fn in_and_not_in() {
        let regions = json!(["us-east", "eu-west", 3]);
        assert_eq!(eval("in", regions.clone(), json!({"x": "eu-west"})), T);
        assert_eq!(eval("in", regions.clone(), json!({"x": "ap-south"})), F);
        assert_eq!(eval("in", regions.clone(), json!({"x": "3"})), T);
        assert_eq!(eval("in", regions.clone(), json!({})), F);
        assert_eq!(eval("in", regions.clone(), json!({"x": {"nested": 1}})), F);
        assert_eq!(eval("not_in", regions.clone(), json!({"x": "ap-south"})), T);
        assert_eq!(eval("not_in", regions.clone(), json!({"x": "us-east"})), F);
        assert_eq!(eval("not_in", regions, json!({})), F);
    }

    #[test]
    fn ordering_ops() {
        assert_eq!(eval("lt", json!(100), json!({"x": 99})), T);
        assert_eq!(eval("lt", json!(100), json!({"x": 100})), F);
        assert_eq!(eval("lte", json!(100), json!({"x": 100})), T);
        assert_eq!(eval("lte", json!(100), json!({"x": 100.5})), F);
        assert_eq!(eval("gt", json!(100), json!({"x": "500"})), T);
        assert_eq!(eval("gt", json!(100), json!({"x": "5e1"})), F);
        assert_eq!(eval("gte", json!("100"), json!({"x": 100})), T);
        assert_eq!(eval("gte", json!(100), json!({"x": 99})), F);
        assert_eq!(eval("gt", json!(100), json!({"x": "lots"})), U);
        assert_eq!(
            eval("gt", json!(100), json!({"x": "NaN"})),
            U,
            "only JSON number syntax is numeric"
        );
        assert_eq!(eval("gt", json!(100), json!({"x": null})), U);
        assert_eq!(eval("gt", json!(100), json!({"x": true})), U);
        assert_eq!(eval("gt", json!(100), json!({})), F);
        assert_eq!(
            eval(
                "gt",
                json!(9007199254740992u64),
                json!({"x": 9007199254740993u64})
            ),
            T,
            "integers compare exactly"
        );
    }

    #[test]
    fn regex_contains_exists() {
        assert_eq!(
            eval("regex", json!("^g6-"), json!({"x": "g6-dedicated-2"})),
            T
        );
        assert_eq!(eval("regex", json!("^g6-"), json!({"x": "g7-standard"})), F);
        assert_eq!(
            eval("regex", json!("^5"), json!({"x": 500})),
            U,
            "regex on a number is unknown"
        );
        assert_eq!(eval("regex", json!("^g6-"), json!({})), F);
        assert_eq!(
            eval("contains", json!("prod"), json!({"x": "my-prod-db"})),
            T
        );
        assert_eq!(eval("contains", json!("prod"), json!({"x": "staging"})), F);
        assert_eq!(
            eval("contains", json!("prod"), json!({"x": ["a", "prod"]})),
            T
        );
        assert_eq!(eval("contains", json!(2), json!({"x": ["1", "2"]})), T);
        assert_eq!(eval("contains", json!("prod"), json!({"x": ["a"]})), F);
        assert_eq!(eval("contains", json!("prod"), json!({"x": 5})), U);
        assert_eq!(eval("contains", json!("prod"), json!({})), F);
        assert_eq!(eval("exists", json!(true), json!({"x": null})), T);
        assert_eq!(eval("exists", json!(true), json!({})), F);
        assert_eq!(eval("exists", json!(false), json!({})), T);
        assert_eq!(eval("exists", json!(false), json!({"x": 1})), F);
    }

    #[test]
    fn nested_paths() {
        let c = Condition {
            path: "args.metadata.key".into(),
            op: Op::Eq,
            value: json!("v"),
        };
        let c = CompiledCondition::new(&c).unwrap();
        assert_eq!(c.eval_args(Some(&json!({"metadata": {"key": "v"}}))), T);
        assert_eq!(c.eval_args(Some(&json!({"metadata": {"key": "w"}}))), F);
        assert_eq!(
            c.eval_args(Some(&json!({"metadata": "key"}))),
            F,
            "cannot descend: missing"
        );
        assert_eq!(c.eval_args(Some(&json!({"metadata": {}}))), F);
        assert_eq!(c.eval_args(None), F, "no arguments at all");
        let c = Condition {
            path: "args.tags.1".into(),
            op: Op::Eq,
            value: json!("b"),
        };
        assert_eq!(
            CompiledCondition::new(&c)
                .unwrap()
                .eval_args(Some(&json!({"tags": ["a", "b"]}))),
            T
        );
    }

    #[test]
    fn paths_must_start_with_args() {
        assert!(ArgPath::parse("args.a.b").is_some());
        assert!(ArgPath::parse("args").is_none());
        assert!(ArgPath::parse("args.").is_none());
        assert!(ArgPath::parse("args.a..b").is_none());
        assert!(ArgPath::parse("a.b").is_none());
    }

    fn contradicts(conds: Value) -> bool {
        let conds: Vec<Condition> = serde_json::from_value::<Vec<Value>>(conds)
            .unwrap()
            .into_iter()
            .map(|c| Condition {
                path: c["path"].as_str().unwrap().into(),
                op: Op::from_name(c["op"].as_str().unwrap()).unwrap(),
                value: c["value"].clone(),
            })
            .collect();
        let compiled: Vec<CompiledCondition> = conds
            .iter()
            .map(|c| CompiledCondition::new(c).unwrap())
            .collect();
        contradictory(&compiled.iter().collect::<Vec<_>>())
    }

    fn c(path: &str, op: &str, value: Value) -> Value {
        json!({"path": path, "op": op, "value": value})
    }

    #[test]
    fn finds_conditions_that_cannot_hold_together() {
        let yes = [
            json!([c("args.r", "eq", json!("a")), c("args.r", "eq", json!("b"))]),
            json!([
                c("args.r", "eq", json!("a")),
                c("args.r", "neq", json!("a"))
            ]),
            json!([
                c("args.r", "in", json!(["a", "b"])),
                c("args.r", "not_in", json!(["a", "b"]))
            ]),
            json!([c("args.n", "gt", json!(10)), c("args.n", "lt", json!(5))]),
            json!([c("args.n", "gte", json!(5)), c("args.n", "lt", json!(5))]),
            json!([c("args.n", "eq", json!(3)), c("args.n", "gt", json!(5))]),
            json!([
                c("args.x", "exists", json!(false)),
                c("args.x", "eq", json!(1))
            ]),
            json!([
                c("args.x", "exists", json!(true)),
                c("args.x", "exists", json!(false))
            ]),
            json!([
                c("args.a.b", "in", json!([1])),
                c("args.a.b", "in", json!([2]))
            ]),
        ];
        for conds in yes {
            assert!(contradicts(conds.clone()), "{conds}");
        }
        let no = [
            json!([c("args.r", "eq", json!("a")), c("args.s", "eq", json!("b"))]),
            json!([c("args.n", "gte", json!(5)), c("args.n", "lte", json!(5))]),
            json!([
                c("args.n", "eq", json!(500)),
                c("args.n", "regex", json!("^5"))
            ]),
            json!([
                c("args.r", "in", json!(["a", "b"])),
                c("args.r", "neq", json!("a"))
            ]),
            json!([c("args.x", "exists", json!(false))]),
            json!([
                c("args.n", "gt", json!(1)),
                c("args.n", "gt", json!(5)),
                c("args.n", "lt", json!(6))
            ]),
        ];
        for conds in no {
            assert!(!contradicts(conds.clone()), "{conds}");
        }
    }
}
