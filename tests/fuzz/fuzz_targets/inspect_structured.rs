//! JSON-RPC bodies built to be almost valid: keys repeated, escaped, reordered; ids of every
//! type; batches; odd whitespace and numbers; every method the gate rules (tools, resources,
//! prompts, completions, subscriptions, unknown ones) with params of the right and the wrong
//! shape. Same invariant as `inspect`.
#![no_main]

mod common;

use arbitrary::{Arbitrary, Unstructured};

#[derive(Arbitrary, Debug)]
enum Key {
    Plain,
    Escaped,
    Repeated,
}

#[derive(Arbitrary, Debug)]
enum Id {
    Num(i64),
    Str(String),
    Null,
    Float,
    Huge,
    Missing,
    Object,
}

#[derive(Arbitrary, Debug)]
struct Msg {
    id: Id,
    method: u8,
    name: u8,
    name_key: Key,
    args_key: Key,
    args: Vec<(u8, u8)>,
    /// Other params (`uri`, `ref`, `notifications`, ...), each under a key written as told.
    more: Vec<(u8, Key)>,
    /// `params` as an array instead of an object.
    positional: bool,
    extra: Option<String>,
    reorder: bool,
}

const METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "initialize",
    "tools/cal\\u006c",
    "TOOLS/CALL",
    "tools/call ",
    "resources/read",
    "resources/subscribe",
    "resources/re\\u0061d",
    "prompts/get",
    "completion/complete",
    "subscriptions/listen",
    "server/discover",
    "resources/unsubscribe",
    "prompts/list",
    "resources/templates/list",
    "future/thing",
    "Resources/read",
];
/// Keys and values of other params.
const MORE: &[(&str, &str)] = &[
    ("uri", "\"file:///srv/a\""),
    ("uri", "\"fil\\u0065:///secret/x\""),
    ("uri", "7"),
    ("uri", "null"),
    ("ref", "{\"type\":\"ref/prompt\",\"name\":\"danger\"}"),
    ("ref", "{\"type\":\"ref/resource\",\"uri\":\"t://{x}\"}"),
    ("ref", "{\"type\":\"ref/resource\",\"name\":\"p\"}"),
    (
        "ref",
        "{\"type\":\"ref/pr\\u006fmpt\",\"name\":\"d\\u0061nger\"}",
    ),
    (
        "ref",
        "{\"type\":\"ref/prompt\",\"name\":\"a\",\"name\":\"b\"}",
    ),
    ("ref", "[\"ref/prompt\"]"),
    ("argument", "{\"name\":\"x\",\"value\":\"\"}"),
    (
        "notifications",
        "{\"resourceSubscriptions\":[\"a://b\",\"secret://k\"]}",
    ),
    ("notifications", "{\"resourceSubscriptions\":[1]}"),
    ("notifications", "{\"resourceSubscriptions\":null}"),
    (
        "notifications",
        "{\"res\\u006furceSubscriptions\":[\"secret://k\"]}",
    ),
    ("notifications", "[]"),
    ("_meta", "{\"progressToken\":1}"),
    ("cursor", "\"c\""),
];
const NAMES: &[&str] = &[
    "safe",
    "danger",
    "dang\\u0065r",
    "danger\\u0000",
    "Danger",
    "safe\\/x",
    "\\ud83d\\ude00",
    "\\ud800",
];
const VALUES: &[&str] = &[
    "1",
    "-0",
    "1e400",
    "1.0",
    "\"x\"",
    "null",
    "true",
    "[1,{\"a\":2}]",
    "{\"b\":{\"b\":1}}",
    "12345678901234567890123",
];

fn key(k: &Key, text: &str) -> Vec<String> {
    match k {
        Key::Plain => vec![format!("\"{text}\"")],
        Key::Escaped => vec![format!(
            "\"{}\"",
            text.chars()
                .map(|c| format!("\\u{:04x}", c as u32))
                .collect::<String>()
        )],
        Key::Repeated => vec![format!("\"{text}\""), format!("\"{text}\"")],
    }
}

fn message(m: &Msg) -> String {
    let mut fields: Vec<String> = vec!["\"jsonrpc\":\"2.0\"".into()];
    match &m.id {
        Id::Num(n) => fields.push(format!("\"id\":{n}")),
        Id::Str(s) => fields.push(format!("\"id\":{}", serde_json::Value::String(s.clone()))),
        Id::Null => fields.push("\"id\":null".into()),
        Id::Float => fields.push("\"id\":1.5".into()),
        Id::Huge => fields.push("\"id\":1e999".into()),
        Id::Missing => {}
        Id::Object => fields.push("\"id\":{}".into()),
    }
    fields.push(format!(
        "\"method\":\"{}\"",
        METHODS[m.method as usize % METHODS.len()]
    ));
    let mut params: Vec<String> = key(&m.name_key, "name")
        .into_iter()
        .map(|k| format!("{k}:\"{}\"", NAMES[m.name as usize % NAMES.len()]))
        .collect();
    let args: Vec<String> = m
        .args
        .iter()
        .map(|(k, v)| format!("\"a{}\":{}", k % 4, VALUES[*v as usize % VALUES.len()]))
        .collect();
    for k in key(&m.args_key, "arguments") {
        params.push(format!("{k}:{{{}}}", args.join(",")));
    }
    for (which, k) in &m.more {
        let (name, value) = MORE[*which as usize % MORE.len()];
        params.extend(key(k, name).into_iter().map(|k| format!("{k}:{value}")));
    }
    if m.reorder {
        params.reverse();
    }
    if m.positional {
        let values: Vec<&str> = params
            .iter()
            .filter_map(|p| p.split_once(':'))
            .map(|(_, v)| v)
            .collect();
        fields.push(format!("\"params\":[{}]", values.join(",")));
    } else {
        fields.push(format!("\"params\":{{{}}}", params.join(" ,\n\t")));
    }
    if let Some(extra) = &m.extra {
        fields.push(format!(
            "\"x\":{}",
            serde_json::Value::String(extra.clone())
        ));
    }
    if m.reorder {
        fields.reverse();
    }
    format!("{{{}}}", fields.join(","))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(msgs) = Vec::<Msg>::arbitrary(&mut u) else {
        return;
    };
    let Ok(batch) = bool::arbitrary(&mut u) else {
        return;
    };
    let body = match (&msgs[..], batch) {
        ([], _) => return,
        ([one], false) => message(one),
        (many, _) => format!(
            "[{}]",
            many.iter().map(message).collect::<Vec<_>>().join(",")
        ),
    };
    let prefix = if u.arbitrary::<bool>().unwrap_or(false) {
        "\u{feff}"
    } else {
        " \r\n"
    };
    let body = format!("{prefix}{body}");
    common::same_reading(body.as_bytes());
});
