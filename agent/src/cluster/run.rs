//! Entry points for the CLI and the daemon, on top of the host's validated `DesiredState`:
//! load + resolve `clusters.yaml` in one pass, then diff / apply / status / images with the
//! real `kind`, engine and kube clients on the resolved value.

use std::path::{Path, PathBuf};

use super::apply::{self, ApplyOptions, ClusterReport};
use super::docker::ClusterEngine;
use super::file;
use super::file::FluxSource;
use super::images::{self, ImagesReport};
use super::kind::Kind;
use super::plan::ClusterStep;
use super::status::ClusterStatus;
use super::validate::{resolve, ResolvedClusters};
use super::ClusterError;
use crate::desired::spec::DesiredState;
use crate::diag::{Diagnostic, Diagnostics};
use crate::input::Env;

pub fn clusters_path(state: &DesiredState) -> PathBuf {
    state.root.join("clusters.yaml")
}

/// The repo root: the parent of the `desired-state/` directory.
pub fn repo_root(state: &DesiredState) -> PathBuf {
    state
        .root
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| state.root.clone())
}

/// `clusters.yaml` loaded, validated and resolved for this host in one pass (every problem
/// at once); `None` when the file does not exist and the host selects no clusters.
/// `source_url` is the agent's source URL (Flux's default `git_url`).
pub fn load_for_host(
    state: &DesiredState,
    env: &Env,
    source_url: Option<&str>,
) -> Result<Option<ResolvedClusters>, Vec<Diagnostic>> {
    let path = clusters_path(state);
    if !path.exists() && state.selection.clusters.is_empty() {
        return Ok(None);
    }
    let (file, mut diags) = file::load(&path, env, &repo_root(state));
    let Some(file) = file else {
        return Err(diags.into_sorted());
    };
    let (mut resolved, d) = resolve(
        &file,
        &state.catalog(),
        &state.selection.clusters,
        source_url,
    );
    diags.extend(d);
    diags.extend(super::secrets::read_all(&mut resolved, &file, env));
    diags.extend(super::sync::check_repo(&resolved, &repo_root(state)));
    pack_artifacts(&mut resolved, &repo_root(state), &mut diags);
    if diags.has_errors() {
        return Err(diags.into_sorted());
    }
    resolved.warnings = diags.into_sorted();
    Ok(Some(resolved))
}

/// Pack the directory of every oci-source cluster from this revision's tree, so a tree the
/// artifact cannot hold (a symlink, a reference out of the repo) refuses the revision before
/// anything changes.
fn pack_artifacts(resolved: &mut ResolvedClusters, root: &Path, diags: &mut Diagnostics) {
    for c in &mut resolved.clusters {
        if !matches!(c.flux.source, FluxSource::Oci(_)) {
            continue;
        }
        match super::oci::pack(root, &c.flux.path) {
            Ok(a) => c.artifact = Some(a),
            Err(e) => {
                let text = e.to_string();
                let file = e.path().map(Path::to_path_buf).unwrap_or_default();
                let message = text
                    .strip_prefix(&format!("{}: ", file.display()))
                    .unwrap_or(&text);
                diags.push(Diagnostic::error(
                    file,
                    None,
                    "",
                    format!(
                        "{message} (clusters.{}.flux.source is oci: {} is packed as its artifact)",
                        c.name, c.flux.path
                    ),
                ));
            }
        }
    }
}

/// `apply`: create missing clusters, wire the registry, bootstrap Flux. A host without
/// clusters does nothing (and needs neither kind nor the engine) unless pruning.
pub async fn apply_host(
    state: &DesiredState,
    clusters: &ResolvedClusters,
    prune: bool,
    opts: &ApplyOptions,
) -> Result<ClusterReport, ClusterError> {
    if state.selection.clusters.is_empty() && !prune {
        return Ok(ClusterReport::default());
    }
    let (desired, wiring) = clusters.desired(prune, &opts.kind_network);
    let engine = ClusterEngine::connect().await?;
    let kind = Kind::from_env()?;
    let mut opts = opts.clone();
    if opts.provenance.source.is_none() {
        // A local checkout: the artifact names the directory it was packed from.
        opts.provenance.source = Some(format!("file://{}", repo_root(state).display()));
    }
    apply::apply(&kind, &engine, &desired, wiring.as_ref(), &opts).await
}

/// `diff`: the cluster steps `apply` would run (print each with `Display`), plus warnings.
pub async fn diff_host(
    state: &DesiredState,
    clusters: &ResolvedClusters,
    prune: bool,
    opts: &ApplyOptions,
) -> Result<(Vec<ClusterStep>, Vec<String>), ClusterError> {
    if state.selection.clusters.is_empty() && !prune {
        return Ok((Vec::new(), Vec::new()));
    }
    let (desired, wiring) = clusters.desired(prune, &opts.kind_network);
    let engine = ClusterEngine::connect().await?;
    match Kind::from_env() {
        Ok(kind) => apply::diff(&kind, &engine, &desired, wiring.as_ref(), opts).await,
        // The clusters are on the engine either way; only creating them needs kind.
        Err(ClusterError::KindMissing) => {
            let kind = super::nokind::EngineKind {
                engine: engine.clone(),
            };
            let (steps, mut warnings) =
                apply::diff(&kind, &engine, &desired, wiring.as_ref(), opts).await?;
            warnings.insert(
                0,
                "kind is not on PATH: clusters observed through the engine (node labels, each control-plane's admin kubeconfig); apply needs kind to create or delete one".into(),
            );
            Ok((steps, warnings))
        }
        Err(e) => Err(e),
    }
}

/// `status` / `/status` / metrics: per selected cluster, Flux Kustomizations' Ready and revision.
pub async fn status_host(state: &DesiredState) -> Result<Vec<ClusterStatus>, ClusterError> {
    if state.selection.clusters.is_empty() {
        return Ok(Vec::new());
    }
    let engine = ClusterEngine::connect().await?;
    let kind = Kind::from_env()?;
    Ok(super::status(&kind, &engine, &state.selection.clusters).await)
}

/// `images build [--push] [NAME…]`: `desired-state/images.yaml`, pushed to the registry's
/// host address from `clusters.yaml` unless images.yaml names one.
pub async fn images_host(
    state: &DesiredState,
    env: &Env,
    names: &[String],
    push: bool,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<ImagesReport, Vec<Diagnostic>> {
    let path = state.root.join("images.yaml");
    let root = repo_root(state);
    let (file, diags) = images::load(&path, env, &root);
    let Some(file) = file.filter(|_| !diags.has_errors()) else {
        return Err(diags.into_sorted());
    };
    let registry = match file.registry.clone() {
        Some(r) => r,
        None => {
            let (clusters, d) = file::load(&clusters_path(state), env, &root);
            match clusters.and_then(|c| c.registry).map(|r| r.host) {
                Some(h) if !d.has_errors() => h,
                _ => {
                    let mut d = d;
                    d.error(
                        &path,
                        None,
                        "registry",
                        "no registry: set it here or registry.host in clusters.yaml",
                    );
                    return Err(d.into_sorted());
                }
            }
        }
    };
    let engine = match ClusterEngine::connect().await {
        Ok(e) => e,
        Err(e) => {
            return Ok(ImagesReport {
                tried: 1,
                failed: 1,
                errors: vec![e.to_string()],
                ..Default::default()
            });
        }
    };
    Ok(images::build(&engine, &file, &root, &registry, names, push, progress).await)
}

/// The daemon spawns these on the runtime: their futures must be `Send`.
#[allow(dead_code)]
fn entry_points_are_send(
    state: &DesiredState,
    clusters: &ResolvedClusters,
    opts: &ApplyOptions,
    env: &Env,
) {
    fn send<T: Send>(_: T) {}
    send(apply_host(state, clusters, false, opts));
    send(diff_host(state, clusters, false, opts));
    send(status_host(state));
    send(images_host(state, env, &[], false, &mut |_| {}));
}
