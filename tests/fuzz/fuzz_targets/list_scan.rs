//! A server's list answer (`tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list`), as raw bytes, through the list filter: the scanner that reads only the
//! envelope and the entries' names gives what the general filter gives on serde_json's
//! reading (whenever that reading is JSON without a repeated key), removes something exactly
//! when it does, writes JSON, and the list cache answers as the scanner does (see
//! `warden_tower::fuzzing::list_filter`).
//!
//! The first byte chooses the list, the policy and the caller; the rest is the message.
#![no_main]

use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use warden_policy::CompiledPolicy;
use warden_tower::List;

const LISTS: [List; 4] = [
    List::Tools,
    List::Resources,
    List::ResourceTemplates,
    List::Prompts,
];
const GRANTS: [Option<&str>; 4] = [None, Some("alice"), Some("root"), Some("bot")];

/// Entries of every kind, hidden, default-denied, allowed, for some callers only, with
/// conditions on arguments; and a policy open but for hide lists, one that shows all.
fn policies() -> &'static [Arc<CompiledPolicy>] {
    static P: OnceLock<Vec<Arc<CompiledPolicy>>> = OnceLock::new();
    P.get_or_init(|| {
        let only = |grant: &str| {
            json!({"require": [{"conditions": [{"path": "caller.grant", "op": "eq", "value": grant}]}]})
        };
        let not = |grant: &str| {
            json!({"deny_if": [{"conditions": [{"path": "caller.grant", "op": "eq", "value": grant}]}]})
        };
        let by_args = json!({"require": [{"conditions": [{"path": "args.n", "op": "lte", "value": 3}]}]});
        [
            json!({"version": "1", "default": "deny",
                "hide": ["secret", "drop_*"],
                "hide_resources": ["secret://*", "file:///srv/private/*"],
                "hide_prompts": ["debug_*"],
                "tools": {"echo": {}, "a\"b": {}, "keep": {}, "get_*": {}, "secret": {},
                    "admin": only("root"), "sum": by_args, "post": not("bot")},
                "resources": {"file:///srv/*": {}, "demo://resource/static/*": {},
                    "file:///srv/ledger": not("bot"), "db://admin/*": only("root")},
                "prompts": {"simple": {}, "complex_prompt": by_args, "ops_*": only("root"),
                    "debug_dump": {}}}),
            json!({"version": "1", "default": "allow",
                "hide": ["secret", "drop_*", "Del*"],
                "hide_resources": ["secret://*", "*{*"],
                "hide_prompts": ["debug_*"],
                "tools": {"admin": {"deny_if": [{"conditions": []}]}, "post": not("bot")},
                "resources": {"file:///etc/*": {"deny_if": [{"conditions": []}]}},
                "prompts": {"ops_*": only("root")}}),
            json!({"version": "1", "default": "deny", "lists": "all",
                "defaults": {"resources": "allow", "prompts": "allow"},
                "hide": ["secret"], "hide_resources": ["secret://*"], "hide_prompts": ["debug_*"],
                "tools": {"echo": {}}}),
            json!({"version": "1", "default": "deny",
                "defaults": {"resources": "allow"},
                "hide_resources": ["demo://resource/dynamic/*"],
                "resources": {"demo://resource/static/*": {}}}),
        ]
        .iter()
        .map(|p| {
            let p = warden_policy::Policy::from_value(p).expect("policy");
            Arc::new(CompiledPolicy::new(&p).expect("compiled"))
        })
        .collect()
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&choice, message)) = data.split_first() else {
        return;
    };
    let list = LISTS[usize::from(choice % 4)];
    let policy = &policies()[usize::from(choice / 4) % policies().len()];
    let grant = GRANTS[usize::from(choice / 16) % GRANTS.len()];
    let _ = warden_tower::fuzzing::list_filter(
        message,
        list,
        vec![json!(1), Value::from("a")],
        policy.clone(),
        grant,
    );
});
