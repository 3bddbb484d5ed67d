//! Policy test files (`*.test.pol`): the grammar is `grammar/tests.pest`; this reads a file
//! into cases with spans, so a runner can point at the line of a failing expectation.

use pest::Parser as _;
use pest::iterators::Pair;
use serde_json::Value;
use warden_policy::Kind;

use crate::ast::{Span, Spanned};
use crate::diagnostic::Diagnostic;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/tests.pest"]
struct TestParser;

/// A test file: which policy it tests (if it says), and its tests.
#[derive(Debug, Clone, PartialEq)]
pub struct TestFile {
    pub policy: Option<Spanned<String>>,
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub name: Spanned<String>,
    pub steps: Vec<Step>,
}

/// One line: who calls what (how many times, after how long), and what must happen.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub span: Span,
    /// Virtual seconds that pass before this step.
    pub after_secs: u64,
    /// `None`: the grant `anonymous`.
    pub grant: Option<String>,
    pub claims: Option<Value>,
    pub times: u32,
    /// What is called: a tool unless the step says `resource`, `prompt` or `server_request`.
    pub kind: Kind,
    /// The name of what is called (a resource's URI).
    pub tool: Spanned<String>,
    /// `on SERVER`: the server (of a warden.toml) whose policy decides.
    pub server: Option<Spanned<String>>,
    pub args: Option<Value>,
    pub expect: Spanned<Expect>,
    /// The rule that must decide (`by "/tools/x/require/0"`).
    pub by_rule: Option<Spanned<String>>,
}

/// What a call must come to.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Allow,
    /// Denied by a rule (or the default); the agent's message must contain the text.
    Deny {
        because: Option<String>,
    },
    /// Denied because the policy hides the tool.
    Hidden,
    /// Refused by a limit (by this counter, if named).
    Limited {
        counter: Option<String>,
    },
    /// Held for a person's approval.
    Approval,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Allow => write!(f, "allow"),
            Expect::Deny { because: None } => write!(f, "deny"),
            Expect::Deny { because: Some(t) } => write!(f, "deny because {t:?}"),
            Expect::Hidden => write!(f, "hidden"),
            Expect::Limited { counter: None } => write!(f, "limited"),
            Expect::Limited { counter: Some(c) } => write!(f, "limited {c}"),
            Expect::Approval => write!(f, "approval"),
        }
    }
}

/// Reads a test file; every problem comes back located.
pub fn parse_tests(text: &str) -> Result<TestFile, Vec<Diagnostic>> {
    let mut pairs = TestParser::parse(Rule::file, text).map_err(|e| vec![syntax_error(e)])?;
    let mut errors = Vec::new();
    let mut file = TestFile {
        policy: None,
        tests: Vec::new(),
    };
    for p in pairs.next().into_iter().flat_map(Pair::into_inner) {
        match p.as_rule() {
            Rule::policy => {
                if let Some(s) = p.into_inner().nth(1) {
                    file.policy = Some(spanned(&s, unquote(&s, &mut errors)));
                }
            }
            Rule::test => {
                let mut inner = p.into_inner().skip(1);
                let Some(name) = inner.next() else { continue };
                let name = spanned(&name, unquote(&name, &mut errors));
                let steps = inner.filter_map(|s| step(s, &mut errors)).collect();
                file.tests.push(TestCase { name, steps });
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(file)
    } else {
        Err(errors)
    }
}

fn span(p: &Pair<'_, Rule>) -> Span {
    p.as_span().start()..p.as_span().end()
}

fn spanned<T>(p: &Pair<'_, Rule>, node: T) -> Spanned<T> {
    Spanned {
        node,
        span: span(p),
    }
}

fn unquote(p: &Pair<'_, Rule>, errors: &mut Vec<Diagnostic>) -> String {
    serde_json::from_str(p.as_str()).unwrap_or_else(|e| {
        errors.push(Diagnostic::new(span(p), format!("invalid string: {e}")));
        String::new()
    })
}

/// A JSON object as written; serde_json's error is placed where it points.
fn object(p: &Pair<'_, Rule>, errors: &mut Vec<Diagnostic>) -> Option<Value> {
    match serde_json::from_str::<Value>(p.as_str()) {
        Ok(v) => Some(v),
        Err(e) => {
            let text = p.as_str();
            // serde_json counts lines and columns from 1 within the object's text.
            let offset = text
                .split_inclusive('\n')
                .take(e.line().saturating_sub(1))
                .map(str::len)
                .sum::<usize>()
                + e.column().saturating_sub(1);
            let at = p.as_span().start() + offset.min(text.len());
            let mut d = Diagnostic::new(
                at..(at + 1).min(p.as_span().end()),
                format!("arguments are not JSON: {e}"),
            );
            d.help = Some(
                "write the arguments as a JSON object: {\"id\": 1, \"label\": \"web\"}".into(),
            );
            errors.push(d);
            None
        }
    }
}

fn step(p: Pair<'_, Rule>, errors: &mut Vec<Diagnostic>) -> Option<Step> {
    let sp = span(&p);
    let mut s = Step {
        span: sp.start..sp.start + p.as_str().trim_end().len(),
        after_secs: 0,
        grant: None,
        claims: None,
        times: 1,
        kind: Kind::Tool,
        tool: Spanned {
            node: String::new(),
            span: sp.clone(),
        },
        server: None,
        args: None,
        expect: Spanned {
            node: Expect::Allow,
            span: sp.clone(),
        },
        by_rule: None,
    };
    for c in p.into_inner() {
        match c.as_rule() {
            Rule::after => {
                let mut it = c.into_inner().skip(1);
                let n: u64 = it.next()?.as_str().parse().ok()?;
                let unit = it.next()?.as_str();
                s.after_secs = n.saturating_mul(match unit.trim_end_matches('s') {
                    "minute" => 60,
                    "hour" => 3600,
                    _ => 1,
                });
            }
            Rule::caller => {
                for x in c.into_inner() {
                    match x.as_rule() {
                        Rule::grant => s.grant = Some(x.as_str().to_owned()),
                        Rule::object => s.claims = object(&x, errors),
                        _ => {}
                    }
                }
            }
            Rule::times => {
                let n = c.clone().into_inner().next()?;
                match n.as_str().parse::<u32>() {
                    Ok(v) if v > 0 => s.times = v,
                    _ => errors.push(Diagnostic::new(
                        span(&n),
                        "a repeat count from 1 to 4294967295",
                    )),
                }
            }
            Rule::kind => {
                s.kind = match c.into_inner().next()?.as_rule() {
                    Rule::kw_resource => Kind::Resource,
                    Rule::kw_prompt => Kind::Prompt,
                    _ => Kind::ServerRequest,
                };
            }
            Rule::tool => {
                let t = c.clone().into_inner().next()?;
                let name = match t.as_rule() {
                    Rule::string => unquote(&t, errors),
                    _ => t.as_str().to_owned(),
                };
                s.tool = spanned(&c, name);
            }
            Rule::server => {
                let name = c.into_inner().find(|x| x.as_rule() == Rule::server_name)?;
                s.server = Some(spanned(&name, name.as_str().to_owned()));
            }
            Rule::by_rule => {
                let st = c.into_inner().find(|x| x.as_rule() == Rule::string)?;
                s.by_rule = Some(spanned(&st, unquote(&st, errors)));
            }
            Rule::args => {
                let o = c.into_inner().next()?;
                s.args = object(&o, errors);
            }
            Rule::expect => {
                let e = c.clone().into_inner().next()?;
                let node = match e.as_rule() {
                    Rule::allow => Expect::Allow,
                    Rule::hidden => Expect::Hidden,
                    Rule::approval => Expect::Approval,
                    Rule::deny => Expect::Deny {
                        because: e
                            .into_inner()
                            .find(|x| x.as_rule() == Rule::string)
                            .map(|x| unquote(&x, errors)),
                    },
                    Rule::limited => Expect::Limited {
                        counter: e.into_inner().find_map(|x| match x.as_rule() {
                            Rule::counter => Some(x.as_str().to_owned()),
                            Rule::string => Some(unquote(&x, errors)),
                            _ => None,
                        }),
                    },
                    _ => return None,
                };
                let sp = span(&c);
                s.expect = Spanned {
                    node,
                    span: sp.start..sp.start + c.as_str().trim_end().len(),
                };
            }
            _ => {}
        }
    }
    Some(s)
}

fn syntax_error(e: pest::error::Error<Rule>) -> Diagnostic {
    let at = match e.location {
        pest::error::InputLocation::Pos(p) => p..p + 1,
        pest::error::InputLocation::Span((a, b)) => a..b.max(a + 1),
    };
    let e = e.renamed_rules(|r| {
        match r {
            Rule::kw_test => "`test`",
            Rule::kw_policy => "`policy`",
            Rule::kw_call => "`call`",
            Rule::kw_as => "`as`",
            Rule::kw_after => "`after`",
            Rule::kw_with => "`with`",
            Rule::caller => "`as NAME:`",
            Rule::after => "`after N seconds`",
            Rule::times => "a repeat count (`30 ×`)",
            Rule::tool | Rule::bare_name => "a tool name",
            Rule::kind => "`resource`, `prompt` or `server_request`",
            Rule::args | Rule::object => "arguments (a JSON object)",
            Rule::server | Rule::kw_on => "`on SERVER`",
            Rule::server_name => "a server's name",
            Rule::expect => "an outcome (allow, deny, hidden, limited, approval)",
            Rule::string => "a string",
            Rule::integer => "a number",
            Rule::unit => "seconds, minutes or hours",
            Rule::step => "a step (`call TOOL {ARGS} → OUTCOME`)",
            Rule::test => "a test (`test \"name\" { … }`)",
            Rule::EOI => "the end of the file",
            other => return format!("{other:?}"),
        }
        .to_owned()
    });
    let message = match &e.variant {
        pest::error::ErrorVariant::ParsingError { .. } => e.variant.message().to_string(),
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    let mut d = Diagnostic::new(at, message);
    d.help = Some(
        "a step reads: `as alice: 3 × call create_instance {\"region\": \"eu\"} → allow`".into(),
    );
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_steps_with_callers_repeats_time_and_outcomes() {
        let f = parse_tests(
            r#"# a comment
policy "linode.pol"
test "caps" {
  as alice with {"groups": ["security"]}: 30 × call create_token {} → allow
  as alice: call create_token -> limited create_token_rate
  after 2 minutes as bob: 2 x call "GET /x" {"a": {"b": "}"}} → deny because "no"
}
test "hidden" { call delete_instance {"id": 1} → hidden }
"#,
        )
        .unwrap();
        assert_eq!(f.policy.unwrap().node, "linode.pol");
        assert_eq!(f.tests.len(), 2);
        let s = &f.tests[0].steps;
        assert_eq!(s[0].grant.as_deref(), Some("alice"));
        assert_eq!(s[0].claims, Some(json!({"groups": ["security"]})));
        assert_eq!((s[0].times, s[0].tool.node.as_str()), (30, "create_token"));
        assert_eq!(
            s[1].expect.node,
            Expect::Limited {
                counter: Some("create_token_rate".into())
            }
        );
        assert_eq!(s[1].args, None);
        assert_eq!((s[2].after_secs, s[2].times), (120, 2));
        assert_eq!(s[2].tool.node, "GET /x");
        assert_eq!(s[2].args, Some(json!({"a": {"b": "}"}})));
        assert_eq!(
            s[2].expect.node,
            Expect::Deny {
                because: Some("no".into())
            }
        );
        assert_eq!(f.tests[1].steps[0].expect.node, Expect::Hidden);
    }

    #[test]
    fn steps_call_resources_prompts_and_server_requests() {
        let f = parse_tests(
            r#"test "kinds" {
  as bot: call resource "file:///srv/ledger" → deny because "Bots"
  call prompt summarize {"temperature": 2} → limited "prompt:summarize_rate"
  call server_request "sampling/createMessage" -> deny
  call resource → allow
  call resource -> allow
  call prompt {"a": 1} → allow
}
"#,
        )
        .unwrap();
        let s = &f.tests[0].steps;
        let called: Vec<(Kind, &str)> = s.iter().map(|s| (s.kind, s.tool.node.as_str())).collect();
        assert_eq!(
            called,
            [
                (Kind::Resource, "file:///srv/ledger"),
                (Kind::Prompt, "summarize"),
                (Kind::ServerRequest, "sampling/createMessage"),
                // Without a name after it, the word is the tool's name, as before.
                (Kind::Tool, "resource"),
                (Kind::Tool, "resource"),
                (Kind::Tool, "prompt"),
            ]
        );
        assert_eq!(s[1].args, Some(json!({"temperature": 2})));
        assert_eq!(
            s[1].expect.node,
            Expect::Limited {
                counter: Some("prompt:summarize_rate".into())
            }
        );
    }

    #[test]
    fn bad_arguments_and_syntax_are_located() {
        let e = parse_tests("test \"t\" {\n  call x {\"id\": 01} → allow\n}\n").unwrap_err();
        assert!(
            e[0].message.starts_with("arguments are not JSON"),
            "{:?}",
            e
        );
        assert_eq!(
            &"test \"t\" {\n  call x {\"id\": 01} → allow\n}\n"[e[0].span.clone()],
            "1"
        );
        let e = parse_tests("test \"t\" {\n  call x {} → allowed\n}\n").unwrap_err();
        assert!(e[0].message.contains("outcome"), "{:?}", e);
    }
}
