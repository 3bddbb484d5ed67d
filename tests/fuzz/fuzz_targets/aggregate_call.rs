//! The aggregated `/mcp`'s quick reading of a `tools/call` (routing and renaming without
//! parsing the whole message) against serde_json's reading of the same bytes.
//!
//! - Where the quick reading finds a call and the server's gate takes the body it is sent
//!   (the layer's strict reading: JSON, no repeated key), serde_json reads the same
//!   message: method `tools/call`, the same `params.name`, the same `id`. (The quick
//!   reading stops at the name; what follows is the gate's to refuse.)
//! - The body with another name spliced in is JSON again, and is the same message with
//!   only `params.name` changed (the arguments the server's gate then reads are the
//!   client's).
//!
//! Bytes that are not JSON are not claimed either way: the server's gate reads the spliced
//! body strictly and refuses them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warden_gateway::aggregate_fuzzing::read_call;

fuzz_target!(|data: &[u8]| {
    let Some((id, name, renamed)) = read_call(data, "other\"name") else {
        return;
    };
    if warden_tower::fuzzing::inspect(&renamed).is_err() {
        return;
    }
    let Ok(mut message) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    assert_eq!(message["method"], "tools/call", "{data:?}");
    assert_eq!(message["params"]["name"], name.as_str(), "{data:?}");
    let id: Value = serde_json::from_str(&id).expect("the id read is JSON");
    assert_eq!(message["id"], id, "{data:?}");
    let renamed: Value = serde_json::from_slice(&renamed).expect("the renamed body is JSON");
    message["params"]["name"] = "other\"name".into();
    assert_eq!(renamed, message, "{data:?}");
});
