//! The integration tests: ONE binary (linking gix, kube and bollard once), one module per area.
//!
//! Run one area: `cargo test -p macula-gitops --test it routing_dns::`.
//!
//! Adding an area: create `tests/it/<area>.rs` (the file's `//!` says what it proves against
//! which real component), add `mod <area>;` below, and take every helper from `support` (its
//! module doc lists them: unique names, the one test image, the one cleanup guard, starting the
//! agent, git servers). A helper two areas need goes into `support`, not into a copy.
// Test code: unwrap() is fine here, a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

mod cluster_apply;
mod cluster_diff;
mod cluster_docker;
mod cluster_e2e;
mod cluster_flux;
mod cluster_images;
mod cluster_kind;
mod cluster_oci;
mod cluster_reach;
mod cluster_release;
mod cluster_repo_files;
mod cluster_two_managers;
mod cluster_upgrade;
mod compose_corpus;
mod compose_keys;
mod compose_parity;
mod daemon_api;
mod daemon_cli;
mod daemon_deadlines;
mod daemon_e2e;
mod daemon_git;
mod daemon_local;
mod data_policy;
mod docker_apply;
mod notify;
mod replicas;
mod rollout;
mod routing_daemon;
mod routing_dns;
mod routing_docker;
mod routing_forward;
mod source_git;
mod source_heal;
mod source_https;
mod source_verify;
mod validate_errors;
mod volumes_compose;
