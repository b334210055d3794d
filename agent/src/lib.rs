//! macula-gitops: a per-host GitOps reconciler.
//!
//! Data flows one way: source → desired → observe → plan → apply → report.
//! See ARCHITECTURE.md for the map.
#![forbid(unsafe_code)]

pub mod apply;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod data;
pub mod desired;
pub mod diag;
pub mod drift;
pub mod engine;
pub mod input;
pub mod labels;
pub mod notify;
pub mod outcome;
pub mod plan;
pub mod policy;
pub mod reconcile;
pub mod redact;
pub mod repo_path;
pub mod rollout;
pub mod routing;
pub mod server;
pub mod source;
pub mod state;
pub mod trigger;
