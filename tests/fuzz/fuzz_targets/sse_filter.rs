//! An upstream's SSE answer to `tools/list`, cut at arbitrary places: whatever the cuts,
//! the filter's output is the same, and no hidden tool survives in any event a client
//! following the SSE spec would dispatch.
#![no_main]

mod sse;

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use serde_json::{Value, json};
use warden_policy::CompiledPolicy;

/// `secret` and every `drop_*` tool are hidden.
fn policy() -> Arc<CompiledPolicy> {
    static P: OnceLock<Arc<CompiledPolicy>> = OnceLock::new();
    P.get_or_init(|| {
        let c = warden_dsl::compile("version 1\ndefault allow\nhide [secret, drop_*]\n")
            .expect("policy");
        Arc::new(CompiledPolicy::new(&c.policy).expect("compiled"))
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

#[derive(Arbitrary, Debug)]
enum Piece {
    Event {
        id: u8,
        names: Vec<u8>,
        split_data: bool,
        ending: u8,
    },
    Raw(Vec<u8>),
    Comment,
    Blank(u8),
}

const NAMES: &[&str] = &[
    "visible",
    "secret",
    "secr\\u0065t",
    "secret\\n",
    "",
    "secret ",
    "drop_db",
    "drop\\u005fdb",
    "Drop_db",
];
const ENDINGS: &[&str] = &["\n", "\r\n", "\r"];

fn render(p: &Piece, out: &mut Vec<u8>) {
    match p {
        Piece::Event {
            id,
            names,
            split_data,
            ending,
        } => {
            let nl = ENDINGS[*ending as usize % ENDINGS.len()];
            let tools: Vec<String> = names
                .iter()
                .map(|n| {
                    format!(
                        "{{\"name\":\"{}\",\"inputSchema\":{{}}}}",
                        NAMES[*n as usize % NAMES.len()]
                    )
                })
                .collect();
            let json = format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"tools\":[{}]}}}}",
                id % 3,
                tools.join(",")
            );
            out.extend_from_slice(format!("event: message{nl}").as_bytes());
            if *split_data && json.len() > 10 {
                let (a, b) = json.split_at(json.len() / 2);
                out.extend_from_slice(format!("data: {a}{nl}data:{b}{nl}{nl}").as_bytes());
            } else {
                out.extend_from_slice(format!("data: {json}{nl}{nl}").as_bytes());
            }
        }
        Piece::Raw(bytes) => out.extend_from_slice(bytes),
        Piece::Comment => out.extend_from_slice(b": keep-alive\n"),
        Piece::Blank(n) => out.extend_from_slice(ENDINGS[*n as usize % ENDINGS.len()].as_bytes()),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
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
    // Requests 0 and 1 were tools/list; 2 was something else.
    let ids = vec![json!(0), json!(1)];
    let whole = runtime().block_on(warden_tower::fuzzing::sse_filter(
        vec![Bytes::from(stream.clone())],
        ids.clone(),
        policy(),
    ));
    let mut positions: Vec<usize> = cuts
        .iter()
        .map(|c| *c as usize % (stream.len() + 1))
        .collect();
    positions.sort_unstable();
    positions.dedup();
    let mut chunks = Vec::new();
    let mut at = 0;
    for p in positions {
        chunks.push(Bytes::copy_from_slice(&stream[at..p]));
        at = p;
    }
    chunks.push(Bytes::copy_from_slice(&stream[at..]));
    let cut = runtime().block_on(warden_tower::fuzzing::sse_filter(chunks, ids, policy()));
    assert_eq!(
        String::from_utf8_lossy(&whole),
        String::from_utf8_lossy(&cut),
        "the output depends on where the stream was cut"
    );
    for event in sse::dispatched(&cut) {
        let Ok(v) = serde_json::from_str::<Value>(&event) else {
            continue;
        };
        if !(v["id"] == 0 || v["id"] == 1) {
            continue;
        }
        let Some(tools) = v["result"]["tools"].as_array() else {
            continue;
        };
        for t in tools {
            let name = t["name"].as_str().unwrap_or_default();
            assert!(
                !policy().is_hidden(name),
                "hidden tool {name:?} survived in {event}\nstream: {:?}\nout: {:?}",
                String::from_utf8_lossy(&stream),
                String::from_utf8_lossy(&cut)
            );
        }
    }
});
