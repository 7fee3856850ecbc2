//! policy-compiler: checked policies → [`bundle::PolicyBundle`].
//!
//! ```text
//! compile ─► policy_dsl (parse, check) ─► lower (DNF terms, tables) ─► bundle
//!                                    eval: reference evaluators over rules and bundle
//! ```
//!
//! Everything here is pure except the `policyc` binary, which reads and writes
//! files.

pub mod bundle;
pub mod compile;
pub mod crd;
pub mod diff;
pub mod eval;
pub mod event_json;
pub mod explain;
pub mod inspect;
pub mod k8s;
pub mod kernel_features;
pub mod layout;
pub mod limits;
pub mod lower;
pub mod overlap;
pub mod render;
pub mod report;
pub mod schema;
pub mod testing;

pub use compile::{compile, CompileFailure, Compiled, SourceFile};
