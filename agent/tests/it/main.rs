//! The integration tests: ONE binary (linking gix, kube and bollard once), one module per area.
//!
//! Run one area: `cargo test -p macula-gitops --test it routing_dns::`.
//!
//! Adding an area: create `tests/it/<area>.rs`, add `mod <area>;` below, and take helpers from
//! `crate::support` (never a copy of your own):
//! - `support::fixture`: a throw-away desired-state repo driven through the CLI binary, unique
//!   names/subnets, the busybox test image, cleanup of everything a test's hosts created.
//! - `support::common`: real git repos (bare + work clone), `git http-backend` over HTTP, sshd,
//!   free ports; `common::daemon` runs the daemon in-process with a busybox reconciler.
//! - `support::cluster`: a bollard `Guard` (image, networks, containers removed on drop), the
//!   recording `kind`, the stand-in API server, the Flux fixture.

mod support;

mod cluster_apply;
mod cluster_docker;
mod cluster_e2e;
mod cluster_flux;
mod cluster_images;
mod cluster_kind;
mod cluster_repo_files;
mod daemon_cli;
mod daemon_e2e;
mod daemon_git;
mod docker_apply;
mod routing_daemon;
mod routing_dns;
mod routing_docker;
mod routing_forward;
mod source_git;
mod source_https;
mod source_verify;
mod validate_errors;
