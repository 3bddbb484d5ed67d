//! A server's tool catalog: the `tools/list` answer that `--tools` files hold.

use serde_json::Value;

use crate::error::Error;
use crate::problem::{Problem, Problems};

/// One tool a server offers.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogTool {
    pub name: String,
    pub description: Option<String>,
    /// MCP tool annotations (`readOnlyHint`, `destructiveHint`, ...), when the server sends them.
    pub annotations: Option<Value>,
}

/// The tools of one MCP server, in the order it listed them, and (when the file has them:
/// `warden scan --save-tools` writes them) its resources' URIs and prompts' names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    pub tools: Vec<CatalogTool>,
    pub resources: Vec<String>,
    pub prompts: Vec<String>,
}

impl Catalog {
    /// Reads a `tools/list` answer: the result object `{"tools": [...]}`, the whole
    /// JSON-RPC response `{"result": {"tools": [...]}}`, or a bare array of tools.
    pub fn from_json_str(text: &str) -> Result<Catalog, Error> {
        let value = crate::strict_json::from_str(text)?;
        Catalog::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Catalog, Error> {
        let (list, at) = match value {
            Value::Array(_) => (Some(value), ""),
            Value::Object(o) if o.contains_key("result") => (
                o.get("result").and_then(|r| r.get("tools")),
                "/result/tools",
            ),
            Value::Object(o) => (o.get("tools"), "/tools"),
            _ => (None, ""),
        };
        let Some(Value::Array(items)) = list else {
            return Err(Problems(vec![
                Problem::new(at, "expected a tools/list answer").with_help(
                    "save the server's answer to tools/list: {\"tools\": [{\"name\": ...}, ...]}",
                ),
            ])
            .into());
        };
        let mut tools = Vec::with_capacity(items.len());
        let mut problems = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let here = crate::pointer::index(at, i);
            match item.get("name") {
                Some(Value::String(name)) => tools.push(CatalogTool {
                    name: name.clone(),
                    description: item
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    annotations: item.get("annotations").cloned(),
                }),
                _ => problems.push(Problem::new(here, "a tool needs a string `name`")),
            }
        }
        // Beside the tools, a saved scan lists the server's resources and prompts.
        let names = |key: &str, name: &str| -> Vec<String> {
            value
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.get(name).and_then(Value::as_str).map(str::to_owned))
                .collect()
        };
        if problems.is_empty() {
            Ok(Catalog {
                tools,
                resources: names("resources", "uri"),
                prompts: names("prompts", "name"),
            })
        } else {
            Err(Problems(problems).into())
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.iter().map(|t| t.name.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_shape_of_a_tools_list_answer() {
        let result = r#"{"tools": [{"name": "a", "description": "A"}, {"name": "b"}]}"#;
        let response =
            r#"{"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "a"}, {"name": "b"}]}}"#;
        let bare = r#"[{"name": "a"}, {"name": "b"}]"#;
        for text in [result, response, bare] {
            let c = Catalog::from_json_str(text).unwrap();
            assert_eq!(c.names().collect::<Vec<_>>(), ["a", "b"]);
        }
        assert_eq!(
            Catalog::from_json_str(result).unwrap().tools[0]
                .description
                .as_deref(),
            Some("A")
        );
    }

    #[test]
    fn refuses_what_is_not_a_tool_list() {
        let e = Catalog::from_json_str(r#"{"tools": [{"name": 3}]}"#).unwrap_err();
        assert!(e.to_string().contains("/tools/0"), "{e}");
        assert!(Catalog::from_json_str(r#"{"version": "1"}"#).is_err());
        assert!(Catalog::from_json_str("[").is_err());
    }
}
