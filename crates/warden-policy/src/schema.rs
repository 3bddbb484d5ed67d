//! The JSON Schema of the policy format, generated from the model.

use serde_json::Value;

/// The schema as pretty-printed JSON; `docs/policy.schema.json` holds a copy that a test
/// keeps current.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(crate::Policy).to_value();
    drop_null_alternatives(&mut schema);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Optional fields are absent, never `null` (the loader refuses null), so
/// `anyOf: [X, {"type": "null"}]` becomes X.
fn drop_null_alternatives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(alts)) = m.get_mut("anyOf") {
                alts.retain(|a| a.get("type").and_then(Value::as_str) != Some("null"));
                if let [only] = alts.as_slice() {
                    let only = only.clone();
                    m.remove("anyOf");
                    if let Value::Object(inner) = only {
                        m.extend(inner);
                    }
                }
            }
            if let Some(Value::Array(types)) = m.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    m.insert("type".into(), only);
                }
            }
            m.values_mut().for_each(drop_null_alternatives);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_alternatives),
        _ => {}
    }
}
