//! A server's event stream (a call's answer or the standalone stream), cut at arbitrary
//! places, through the guard of the server's requests under a policy that denies
//! `sampling/createMessage` and hides tools:
//!
//! - whatever the cuts, the client gets the same stream and the server the same answers;
//! - no event a client dispatches holds a `sampling/createMessage` request, however the
//!   client reads its JSON (a repeated key's first or last value, JavaScript's numbers and
//!   lone surrogates), alone or in a batch, nor a hidden tool in an answer to `tools/list`;
//! - nothing is left for the filter in what the client gets;
//! - each refused request is answered to the server exactly once, with its id;
//! - when nothing is refused, filtered or unreadable, the stream passes byte for byte.
#![no_main]

mod sse;

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use serde_json::{Value, json};
use warden_policy::CompiledPolicy;

const REFUSED: &str = "sampling/createMessage";

/// `sampling/createMessage` is denied; `secret` and every `drop_*` tool are hidden.
fn policy() -> Arc<CompiledPolicy> {
    static P: OnceLock<Arc<CompiledPolicy>> = OnceLock::new();
    P.get_or_init(|| {
        let text = "version 1\ndefault allow\nhide [secret, drop_*]\n\
            server_request \"sampling/createMessage\" {\n  deny always because \"no sampling here\"\n}\n";
        let c = warden_dsl::compile(text).expect("policy");
        let p = Arc::new(CompiledPolicy::new(&c.policy).expect("compiled"));
        assert!(p.rules_server_requests());
        p
    })
    .clone()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

const GRANT: &str = "alice";

/// Requests 0 and 1 were `tools/list`.
fn ids() -> Vec<Value> {
    vec![json!(0), json!(1)]
}

#[derive(Arbitrary, Debug)]
enum Piece {
    /// A server's request or notification (no id), maybe one of several in a batch.
    Message {
        method: u8,
        id: Option<u8>,
        params: u8,
        /// 0: none; else `method` written twice, the other one before or after.
        twice: u8,
        batch_with: Option<u8>,
        split_data: bool,
        ending: u8,
    },
    /// An answer to `tools/list` (ids 0, 1) or to something else (2).
    List {
        id: u8,
        names: Vec<u8>,
        description: u8,
        split_data: bool,
        ending: u8,
    },
    Raw(Vec<u8>),
    Comment,
    Bom,
    Blank(u8),
}

const METHODS: &[&str] = &[
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "sampling\\/createMessage",
    "sampl\\u0069ng/createMessage",
    "sampling/createmessage",
    "notifications/message",
    "ping",
];
const IDS: &[&str] = &["0", "1", "7", "\"s\"", "null", "-1", "1.5", "\"\\u0073\""];
const PARAMS: &[&str] = &[
    "{}",
    "{\"messages\":[{\"role\":\"user\",\"content\":{\"type\":\"text\",\"text\":\"hi\"}}],\"maxTokens\":100}",
    "{\"maxTokens\":1e400}",
    "{\"text\":\"\\ud800\"}",
    "{\"message\":\"Name?\",\"requestedSchema\":{\"type\":\"object\",\"properties\":{}}}",
    "[1,2]",
    "{\"a\":\"\\n\\r\"}",
];
const NAMES: &[&str] = &[
    "visible",
    "secret",
    "secr\\u0065t",
    "",
    "drop_db",
    "drop\\u005fdb",
    "Drop_db",
];
const DESCRIPTIONS: &[&str] = &[
    "",
    ",\"description\":\"\\ud83d\"",
    ",\"description\":1e999",
    ",\"d\":\"a\\\"b\"",
];
const ENDINGS: &[&str] = &["\n", "\r\n", "\r"];

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

fn message(method: u8, id: Option<u8>, params: u8, twice: u8) -> String {
    let m = pick(METHODS, method);
    let mut fields = vec!["\"jsonrpc\":\"2.0\"".to_owned()];
    if let Some(id) = id {
        fields.push(format!("\"id\":{}", pick(IDS, id)));
    }
    let other = pick(METHODS, method.wrapping_add(twice));
    match twice % 3 {
        1 => fields.push(format!("\"method\":\"{other}\"")),
        _ => {}
    }
    fields.push(format!("\"method\":\"{m}\""));
    if twice % 3 == 2 {
        fields.push(format!("\"method\":\"{other}\""));
    }
    fields.push(format!("\"params\":{}", pick(PARAMS, params)));
    format!("{{{}}}", fields.join(","))
}

fn event(json: &str, split: bool, ending: u8, out: &mut Vec<u8>) {
    let nl = pick(ENDINGS, ending);
    out.extend_from_slice(format!("event: message{nl}").as_bytes());
    if split && json.len() > 10 {
        let (a, b) = json.split_at(json.len() / 2);
        out.extend_from_slice(format!("data: {a}{nl}data:{b}{nl}{nl}").as_bytes());
    } else {
        out.extend_from_slice(format!("data: {json}{nl}{nl}").as_bytes());
    }
}

fn render(p: &Piece, out: &mut Vec<u8>) {
    match p {
        Piece::Message {
            method,
            id,
            params,
            twice,
            batch_with,
            split_data,
            ending,
        } => {
            let one = message(*method, *id, *params, *twice);
            let json = match batch_with {
                Some(other) => {
                    let two = message(*other, Some(other.wrapping_add(1)), *params, 0);
                    format!("[{two},{one}]")
                }
                None => one,
            };
            event(&json, *split_data, *ending, out);
        }
        Piece::List {
            id,
            names,
            description,
            split_data,
            ending,
        } => {
            let tools: Vec<String> = names
                .iter()
                .map(|n| {
                    format!(
                        "{{\"name\":\"{}\",\"inputSchema\":{{}}{}}}",
                        pick(NAMES, *n),
                        pick(DESCRIPTIONS, *description)
                    )
                })
                .collect();
            let json = format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"tools\":[{}]}}}}",
                id % 3,
                tools.join(",")
            );
            event(&json, *split_data, *ending, out);
        }
        Piece::Raw(bytes) => out.extend_from_slice(bytes),
        Piece::Comment => out.extend_from_slice(b": keep-alive\n"),
        Piece::Bom => out.extend_from_slice("\u{feff}".as_bytes()),
        Piece::Blank(n) => out.extend_from_slice(pick(ENDINGS, *n).as_bytes()),
    }
}

fn run(chunks: Vec<Bytes>) -> (Bytes, Vec<Value>) {
    runtime().block_on(warden_tower::fuzzing::server_requests(
        chunks,
        ids(),
        policy(),
        Some(GRANT),
    ))
}

/// The ids of the refused requests in a message, as the gate reads it (as JavaScript
/// does, a repeated key's last value).
fn refused_ids(data: &str) -> Vec<Value> {
    let Some(v) = sse::readings(data).into_iter().next() else {
        return Vec::new();
    };
    sse::messages(&v)
        .into_iter()
        .filter(|m| m.get("method").and_then(Value::as_str) == Some(REFUSED))
        .filter_map(|m| m.get("id").cloned())
        .collect()
}

fn sorted(mut ids: Vec<Value>) -> Vec<String> {
    let mut out: Vec<String> = ids.drain(..).map(|v| v.to_string()).collect();
    out.sort();
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A first byte 0: the rest is the stream itself (the seeds are real streams), cut
    // every few bytes. Else the stream is built of pieces.
    if let Some((0, stream)) = data.split_first() {
        let every = stream.len() % 17 + 1;
        let cuts = (every..stream.len()).step_by(every).collect();
        return check(stream.to_vec(), cuts);
    }
    let mut u = Unstructured::new(data);
    let Ok(pieces) = Vec::<Piece>::arbitrary(&mut u) else {
        return;
    };
    let Ok(cuts) = Vec::<u16>::arbitrary(&mut u) else {
        return;
    };
    let mut stream = Vec::new();
    for p in &pieces {
        render(p, &mut stream);
    }
    if stream.len() > 64 * 1024 {
        return;
    }
    check(stream, cuts.into_iter().map(usize::from).collect());
});

fn check(stream: Vec<u8>, cuts: Vec<usize>) {
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (whole, refusals) = run(vec![Bytes::from(stream.clone())]);

    let mut positions: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    positions.sort_unstable();
    positions.dedup();
    let mut chunks = Vec::new();
    let mut at = 0;
    for p in positions {
        chunks.push(Bytes::copy_from_slice(&stream[at..p]));
        at = p;
    }
    chunks.push(Bytes::copy_from_slice(&stream[at..]));
    let (cut, cut_refusals) = run(chunks);
    assert_eq!(
        show(&whole),
        show(&cut),
        "the stream depends on where it was cut"
    );
    assert_eq!(
        refusals, cut_refusals,
        "the answers depend on where the stream was cut"
    );

    let view = warden_tower::View::new(
        policy(),
        ids()
            .into_iter()
            .map(|id| (id, warden_tower::List::Tools))
            .collect(),
        Some(GRANT),
    );
    for event in sse::dispatched(&whole) {
        for reading in sse::readings(&event) {
            for m in sse::messages(&reading) {
                assert!(
                    !(m.get("method").and_then(Value::as_str) == Some(REFUSED)
                        && m.get("id").is_some()),
                    "a refused request reached the client: {event}\nstream: {:?}\nout: {:?}",
                    show(&stream),
                    show(&whole)
                );
                if !(m["id"] == 0 || m["id"] == 1) {
                    continue;
                }
                for t in m["result"]["tools"].as_array().into_iter().flatten() {
                    let name = t["name"].as_str().unwrap_or_default();
                    assert!(
                        !policy().is_hidden(name),
                        "hidden tool {name:?} reached the client in {event}\nstream: {:?}\nout: {:?}",
                        show(&stream),
                        show(&whole)
                    );
                }
            }
        }
        assert_eq!(
            view.filter_bytes(event.as_bytes()),
            None,
            "the client got what the filter would still change: {event}\nstream: {:?}\nout: {:?}",
            show(&stream),
            show(&whole)
        );
    }

    // As the gate reads the stream: every event, the one cut off at its end too.
    let events = sse::events(&stream, true, true);
    let expected: Vec<Value> = events.iter().flat_map(|e| refused_ids(e)).collect();
    for r in &refusals {
        assert_eq!(r["jsonrpc"], "2.0");
        assert_eq!(r["error"]["code"], warden_tower::POLICY_DENIED_CODE);
        let message = r["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(warden_tower::DENIED_PREFIX), "{r}");
    }
    let answered: Vec<Value> = refusals.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(
        sorted(answered),
        sorted(expected),
        "each refused request is answered once, with its id\nstream: {:?}\nout: {:?}",
        show(&stream),
        show(&whole)
    );
    let filtered = events
        .iter()
        .any(|e| view.filter_bytes(e.as_bytes()).is_some());
    // What the gate cannot read with certainty may be dropped.
    let uncertain = events.iter().any(|e| {
        !e.trim_matches([' ', '\t', '\n', '\r']).is_empty()
            && warden_policy::strict_json::from_str(e).is_err()
    });
    if refusals.is_empty() && !filtered && !uncertain {
        assert!(
            whole[..] == stream[..],
            "nothing was refused or filtered, yet the stream changed\nstream: {:?}\nout: {:?}",
            show(&stream),
            show(&whole)
        );
    }
}
