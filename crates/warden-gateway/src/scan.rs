//! `warden scan`: ask a server for its tools and write a starter `.pol`.
//!
//! Tools are sorted into four kinds — from MCP annotations (`destructiveHint`,
//! `readOnlyHint`) where the server gives them, else from the verb the name starts with —
//! and each kind gets the rule a cautious operator would start from.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use warden_policy::{Catalog, CatalogTool};
use warden_tower::tls::{ClientTls, HttpsClient, explain, https_client};

use crate::Error;

/// What a tool does, as far as a starter policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Execute,
    Destructive,
}

const READ: &[&str] = &[
    "get", "list", "search", "read", "find", "describe", "show", "fetch", "query", "view", "count",
    "check", "lookup", "inspect", "download", "export",
];
const DESTRUCTIVE: &[&str] = &[
    "delete",
    "remove",
    "destroy",
    "drop",
    "purge",
    "wipe",
    "terminate",
    "rebuild",
    "reset",
    "revoke",
    "uninstall",
    "erase",
    "truncate",
];
const EXECUTE: &[&str] = &[
    "run", "exec", "execute", "reboot", "restart", "boot", "shutdown", "start", "stop", "trigger",
    "invoke", "deploy", "send", "call", "migrate", "resize", "rescue", "power", "suspend",
    "resume",
];

pub fn classify(tool: &CatalogTool) -> Kind {
    let hint = |k: &str| {
        tool.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .and_then(Value::as_bool)
    };
    if hint("destructiveHint") == Some(true) {
        return Kind::Destructive;
    }
    if hint("readOnlyHint") == Some(true) {
        return Kind::Read;
    }
    let verb = tool
        .name
        .split(['_', '-', '.'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let verb = verb.as_str();
    if DESTRUCTIVE.contains(&verb) {
        Kind::Destructive
    } else if READ.contains(&verb) && hint("readOnlyHint") != Some(false) {
        Kind::Read
    } else if EXECUTE.contains(&verb) {
        Kind::Execute
    } else {
        Kind::Write
    }
}

/// The starter `.pol` for `catalog`, in canonical layout, each tool's description beside it.
pub fn starter_policy(server: &str, catalog: &Catalog) -> Result<String, Error> {
    let of = |k: Kind| {
        catalog
            .tools
            .iter()
            .filter(|t| classify(t) == k)
            .collect::<Vec<_>>()
    };
    let (reads, writes, executes, destructive) = (
        of(Kind::Read),
        of(Kind::Write),
        of(Kind::Execute),
        of(Kind::Destructive),
    );
    let mut out = format!(
        "# Starter policy for {server} ({} tools), written by `warden scan`.\n\
         # Review it: kinds come from tool annotations where the server sent them, else from the\n\
         # verb each name starts with. Anything not named below is denied.\nversion 1\ndefault deny\n",
        catalog.tools.len()
    );
    // One statement per kind, each tool's description in the comment block above it.
    let names = |tools: &[&CatalogTool]| {
        tools
            .iter()
            .map(|t| warden_dsl::tool_name(&t.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let group = |out: &mut String, title: &str, tools: &[&CatalogTool], statement: String| {
        if tools.is_empty() {
            return;
        }
        out.push_str(&format!("\n# {title}\n"));
        for t in tools {
            out.push_str(&comment(t));
        }
        out.push_str(&statement);
    };
    group(
        &mut out,
        "Destructive: hidden from the agent and denied.",
        &destructive,
        format!("hide [{}]\n", names(&destructive)),
    );
    group(
        &mut out,
        "Reads: allowed.",
        &reads,
        format!("allow {}\n", names(&reads)),
    );
    group(
        &mut out,
        "Writes: 30 a minute per credential, all writes together.",
        &writes,
        format!(
            "tool {} {{\n  limit 30 per minute per grant as writes\n}}\n",
            names(&writes)
        ),
    );
    group(
        &mut out,
        "Executes: 10 a minute per credential, all together.",
        &executes,
        format!(
            "tool {} {{\n  limit 10 per minute per grant as executes\n}}\n",
            names(&executes)
        ),
    );
    // Resources and prompts are reads: the ones the server listed are allowed by name, so
    // that `default deny` does not deny them (templates' URIs and anything added later are).
    for (title, kind, names) in [
        (
            "Resources the server lists (reads): allowed. Reads of other URIs are denied.",
            warden_policy::Kind::Resource,
            &catalog.resources,
        ),
        (
            "Prompts the server lists: allowed.",
            warden_policy::Kind::Prompt,
            &catalog.prompts,
        ),
    ] {
        if names.is_empty() {
            continue;
        }
        let listed: Vec<String> = names
            .iter()
            .map(|n| warden_dsl::entry_name(kind, n))
            .collect();
        out.push_str(&format!(
            "\n# {title}\nallow {} {}\n",
            kind.noun(),
            listed.join(", ")
        ));
    }
    // Compiling proves the text is a valid policy; a failure here is our bug.
    match warden_dsl::compile(&out) {
        Ok(_) => Ok(out),
        Err(e) => Err(Error::Config(format!(
            "generated policy does not compile: {}",
            e.render("scan", &out, false)
        ))),
    }
}

fn comment(t: &CatalogTool) -> String {
    let desc = t
        .description
        .as_deref()
        .unwrap_or("")
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut desc: String = desc.chars().take(100).collect();
    if desc.len() < t.description.as_deref().unwrap_or("").trim().len() && !desc.is_empty() {
        desc.push('…');
    }
    if desc.is_empty() {
        format!("# {}\n", t.name)
    } else {
        format!("# {}: {desc}\n", t.name)
    }
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"warden-scan","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn list_request(id: u64, cursor: Option<&str>) -> String {
    match cursor {
        Some(c) => {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {"cursor": c}})
        }
        None => json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}),
    }
    .to_string()
}

/// The lists beside `tools/list` a scan saves: method, result key, each entry's name key.
const OTHER_LISTS: [(&str, &str, &str); 2] = [
    ("resources/list", "resources", "uri"),
    ("prompts/list", "prompts", "name"),
];

fn list_of(method: &str, id: u64, cursor: Option<&str>) -> String {
    match cursor {
        Some(c) => json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"cursor": c}}),
        None => json!({"jsonrpc": "2.0", "id": id, "method": method}),
    }
    .to_string()
}

/// The names in one page of a list answer, and its next cursor. An error (a server without
/// resources or prompts) is an empty page.
fn names_in(answer: &Value, key: &str, name: &str) -> (Vec<String>, Option<String>) {
    let result = answer.get("result");
    let names = result
        .and_then(|r| r.get(key))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get(name).and_then(Value::as_str).map(str::to_owned))
        .collect();
    let next = result
        .and_then(|r| r.get("nextCursor"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    (names, next)
}

/// The server's resource URIs and prompt names, page by page (at most 100 pages each);
/// `ask(request, id)` sends one request and gives its answer, `None` when there is none.
async fn other_lists(
    mut ask: impl AsyncFnMut(String, u64) -> Option<Value>,
) -> (Vec<String>, Vec<String>) {
    let mut next = 200;
    let mut found: [Vec<String>; 2] = Default::default();
    for ((method, key, name), out) in OTHER_LISTS.iter().zip(found.iter_mut()) {
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            next += 1;
            let Some(v) = ask(list_of(method, next, cursor.as_deref()), next).await else {
                break;
            };
            let (names, more) = names_in(&v, key, name);
            out.extend(names);
            match more {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    let [resources, prompts] = found;
    (resources, prompts)
}

/// Collects pages of `tools/list` until there is no `nextCursor` (at most 100 pages).
async fn paginate<F, Fut>(mut ask: F) -> Result<Catalog, Error>
where
    F: FnMut(u64, Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Value, Error>>,
{
    let mut tools = Vec::new();
    let mut cursor = None;
    for page in 0..100u64 {
        let answer = ask(page + 2, cursor.take()).await?;
        if let Some(e) = answer.get("error") {
            return Err(Error::Io(format!("tools/list failed: {e}")));
        }
        let result = answer.get("result").cloned().unwrap_or(Value::Null);
        let catalog = Catalog::from_value(&result)
            .map_err(|e| Error::Io(format!("tools/list answer: {e}")))?;
        tools.extend(catalog.tools);
        match result.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                return Ok(Catalog {
                    tools,
                    ..Catalog::default()
                });
            }
        }
    }
    Err(Error::Io(
        "tools/list kept paginating past 100 pages".into(),
    ))
}

/// The tools of a server reached over Streamable HTTP (`https://` verified as `tls` says).
pub async fn scan_http(
    url: &Uri,
    tls: &ClientTls,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<Catalog, Error> {
    let client: HttpsClient<Full<Bytes>> =
        https_client(tls).map_err(|e| Error::Config(e.to_string()))?;
    let post = |body: String, session: Option<String>| {
        let client = client.clone();
        let url = url.clone();
        let headers = headers.to_vec();
        async move {
            let mut req = Request::post(url)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25");
            if let Some(s) = &session {
                req = req.header("mcp-session-id", s.as_str());
            }
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let req = req
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| Error::Io(e.to_string()))?;
            let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
                .await
                .map_err(|_| Error::Io("the server did not answer within 30 s".into()))?
                .map_err(|e| {
                    Error::Io(format!(
                        "cannot reach the server: {}",
                        explain(&e).unwrap_or_else(|| e.to_string())
                    ))
                })?;
            let status = resp.status();
            let session = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::Io(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(Error::Io(format!(
                    "the server answered {status}: {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            Ok((session, body))
        }
    };
    let (session, body) = post(INIT.into(), None).await?;
    first_message(&body).ok_or_else(|| Error::Io("no answer to initialize".into()))?;
    post(INITIALIZED.into(), session.clone()).await?;
    let mut catalog = paginate(|id, cursor| {
        let post = &post;
        let session = session.clone();
        async move {
            let (_, body) = post(list_request(id, cursor.as_deref()), session).await?;
            first_message(&body).ok_or_else(|| Error::Io("no answer to tools/list".into()))
        }
    })
    .await?;
    (catalog.resources, catalog.prompts) = other_lists(async |line, _| {
        let (_, body) = post(line, session.clone()).await.ok()?;
        first_message(&body)
    })
    .await;
    Ok(catalog)
}

/// The JSON-RPC answer in a body that is either JSON or server-sent events.
fn first_message(body: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return Some(v);
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
}

/// The tools of a stdio server this launches (and stops again).
pub async fn scan_stdio(command: &[String]) -> Result<Catalog, Error> {
    scan_launched(command, &[], None).await
}

/// [`scan_stdio`] with the environment variables and working directory it is launched with.
pub async fn scan_launched(
    command: &[String],
    env: &[(String, String)],
    cwd: Option<&std::path::Path>,
) -> Result<Catalog, Error> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::Config("no server command given after --".into()))?;
    let mut cmd = tokio::process::Command::new(program);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Io(format!("cannot start {program}: {e}")))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::Io("no stdin pipe".into()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Io("no stdout pipe".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut send = async |line: String| -> Result<(), Error> {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| Error::Io(e.to_string()))
    };
    // Answers are matched by id: servers may send notifications first.
    async fn answer(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        id: u64,
    ) -> Result<Value, Error> {
        let wait = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v.get("id").and_then(Value::as_u64) == Some(id) && v.get("method").is_none()
                    {
                        return Ok(v);
                    }
                }
            }
            Err(Error::Io("the server closed its output".into()))
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .map_err(|_| Error::Io("the server did not answer within 30 s".into()))?
    }
    send(INIT.into()).await?;
    answer(&mut lines, 1).await?;
    send(INITIALIZED.into()).await?;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for id in 2..102u64 {
        send(list_request(id, cursor.as_deref())).await?;
        let v = answer(&mut lines, id).await?;
        let result = v
            .get("result")
            .cloned()
            .ok_or_else(|| Error::Io(format!("tools/list failed: {v}")))?;
        tools.extend(
            Catalog::from_value(&result)
                .map_err(|e| Error::Io(e.to_string()))?
                .tools,
        );
        match result.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                let mut catalog = Catalog {
                    tools,
                    ..Catalog::default()
                };
                (catalog.resources, catalog.prompts) = other_lists(async |line, id| {
                    send(line).await.ok()?;
                    answer(&mut lines, id).await.ok()
                })
                .await;
                let _ = child.kill().await;
                return Ok(catalog);
            }
        }
    }
    Err(Error::Io(
        "tools/list kept paginating past 100 pages".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, annotations: Option<Value>) -> CatalogTool {
        CatalogTool {
            name: name.into(),
            description: Some(format!("Does {name}.\nMore text.")),
            annotations,
        }
    }

    #[test]
    fn annotations_win_over_verbs() {
        assert_eq!(classify(&tool("get_thing", None)), Kind::Read);
        assert_eq!(classify(&tool("delete_thing", None)), Kind::Destructive);
        assert_eq!(classify(&tool("reboot-instance", None)), Kind::Execute);
        assert_eq!(classify(&tool("create_thing", None)), Kind::Write);
        assert_eq!(
            classify(&tool("get_thing", Some(json!({"destructiveHint": true})))),
            Kind::Destructive
        );
        assert_eq!(
            classify(&tool("frobnicate", Some(json!({"readOnlyHint": true})))),
            Kind::Read
        );
    }

    #[test]
    fn the_starter_policy_compiles_and_reads_well() {
        let catalog = Catalog {
            tools: vec![
                tool("list_instances", None),
                tool("create_instance", None),
                tool("reboot_instance", None),
                tool("delete_instance", None),
                tool("odd name", None),
            ],
            ..Catalog::default()
        };
        let text = starter_policy("demo", &catalog).unwrap();
        let policy = warden_dsl::compile(&text).unwrap().policy;
        let compiled = warden_policy::CompiledPolicy::new(&policy).unwrap();
        assert!(compiled.is_hidden("delete_instance"));
        assert!(
            compiled
                .decide(&warden_policy::Call::new("list_instances"))
                .is_allow()
        );
        assert!(
            compiled
                .decide(&warden_policy::Call::new("unknown"))
                .is_deny()
        );
        assert!(
            text.contains("# create_instance: Does create_instance.…\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "tool create_instance, \"odd name\" {\n  limit 30 per minute per grant as writes\n}"
            ),
            "{text}"
        );
        assert!(
            text.contains("tool reboot_instance {\n  limit 10 per minute per grant as executes\n}"),
            "{text}"
        );
    }
}
