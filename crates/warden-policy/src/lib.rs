//! Warden's policy model and decision engine.
//!
//! A policy is the data in a `policy.json` document (the hosted PolicyLayer format plus
//! Warden's extensions). This crate loads it with precise problems, validates it, compiles
//! it into an immutable [`CompiledPolicy`] and answers [`CompiledPolicy::decide`] for a tool
//! call. It does no I/O and knows nothing of HTTP, so it can be embedded anywhere.
//!
//! ```
//! use warden_policy::{Call, CompiledPolicy, Policy};
//!
//! let policy = Policy::from_json_str(r#"{
//!     "version": "1",
//!     "default": "deny",
//!     "tools": {
//!         "list_instances": {},
//!         "create_instance": {
//!             "require": [{"conditions": [{"path": "args.region", "op": "in",
//!                                          "value": ["us-east", "eu-west"]}],
//!                          "on_deny": "Only us-east and eu-west"}]
//!         }
//!     }
//! }"#).unwrap();
//! let compiled = CompiledPolicy::new(&policy).unwrap();
//!
//! let args = serde_json::json!({"region": "ap-south"});
//! let decision = compiled.decide(&Call::new("create_instance").args(&args));
//! assert!(decision.is_deny());
//! assert_eq!(decision.rule(), "/tools/create_instance/require/0");
//! assert_eq!(decision.message(), "Only us-east and eu-west");
//!
//! assert!(compiled.decide(&Call::new("list_instances")).is_allow());
//! assert_eq!(compiled.decide(&Call::new("delete_instance")).rule(), "(default deny)");
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod catalog;
mod compiled;
mod condition;
mod decision;
mod error;
mod explain;
mod glob;
mod hosted;
mod lint;
mod load;
pub mod locate;
mod model;
pub mod pointer;
mod problem;
mod schema;
pub mod strict_json;
mod suggest;
mod validate;

pub use catalog::{Catalog, CatalogTool};
pub use compiled::{CompiledLimit, CompiledPolicy, CounterId, Quota};
pub use condition::Truth;
pub use decision::{Call, Charge, CounterValues, Decision, Outcome};
pub use error::Error;
pub use explain::{Explanation, Step};
pub use glob::Glob;
pub use hosted::{APPROVAL_MESSAGE, to_policylayer, to_policylayer_json};
pub use lint::lint;
pub use load::{faq_notes, kind as json_kind};
pub use model::{
    AllTools, Approval, ApprovalVia, Condition, DefaultAction, Defaults, Kind, Limit, Lists, Mode,
    OnTimeout, Op, Policy, Rule, SERVER_REQUESTS, Scope, ToolRule, Window,
};
pub use problem::{Problem, Problems, Target};
pub use schema::json_schema;
pub use suggest::did_you_mean;
pub use validate::validate;
