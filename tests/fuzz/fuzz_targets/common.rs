//! What the targets share: the reading an upstream server makes of a body (serde_json, as
//! most JSON libraries read it), compared with the gate's.

use serde_json::Value;

/// Checks the gate's reading of `body` against serde_json's: anything the gate did not
/// refuse must be read the same way, so no call can be smuggled past it.
pub fn same_reading(body: &[u8]) {
    let Ok(ours) = warden_tower::fuzzing::inspect(body) else {
        return;
    };
    let theirs: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("the gate read a body serde_json refuses ({e})"));
    let list = match theirs {
        Value::Array(items) => items,
        one => vec![one],
    };
    assert_eq!(list.len(), ours.len(), "message count");
    for ((method, call), v) in ours.iter().zip(&list) {
        let their_method = v.get("method").and_then(Value::as_str);
        if method.is_some() {
            assert_eq!(method.as_deref(), their_method, "method");
        }
        if their_method == Some("tools/call") {
            let (name, args) = call
                .as_ref()
                .unwrap_or_else(|| panic!("a tools/call the gate forwards undecided: {v}"));
            let params = &v["params"];
            assert_eq!(params["name"].as_str(), Some(name.as_str()), "tool name");
            let their_args = params.get("arguments").filter(|a| !a.is_null());
            assert_eq!(their_args, args.as_ref(), "arguments");
        }
    }
}
