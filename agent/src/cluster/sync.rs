//! One source of truth for Flux's sync objects (GitRepository and Kustomization
//! `flux-system/flux-system`). The agent generates them from `clusters.yaml`, as `flux
//! bootstrap` would; the repo may also declare them in `<flux.path>/flux-system/gotk-sync.yaml`
//! (the `flux bootstrap` layout), which kustomize-controller then re-applies from git with its
//! own field manager. Two managers with different values would undo each other on every pass,
//! so `validate` requires the file to declare exactly what the agent applies: every difference
//! is an error at its line, naming both values. Equal values are shared ownership — neither
//! side ever changes the object again (tests/it/cluster_two_managers.rs shows it).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::flux::{kind_of, name_of, sync_objects};
use super::validate::ResolvedClusters;
use crate::diag::{Diagnostic, Diagnostics};
use crate::input::lines::LineIndex;
use crate::input::Limits;

/// Where the repo declares the sync objects of a cluster whose Flux path is `path`.
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(path.trim_start_matches("./"))
        .join("flux-system")
        .join("gotk-sync.yaml")
}

/// Leaves of `v` as (dotted path, value); lists compare whole.
fn leaves(v: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                leaves(c, &format!("{at}.{k}"), out);
            }
        }
        _ => out.push((at.to_string(), v.clone())),
    }
}

/// Every difference between the repo's sync objects and the agent's, for the selected clusters.
pub fn check_repo(resolved: &ResolvedClusters, repo_root: &Path) -> Diagnostics {
    let mut d = Diagnostics::default();
    for c in &resolved.clusters {
        let rel = repo_file(&c.flux.path);
        let full = repo_root.join(&rel);
        if !full.exists() {
            continue;
        }
        let limits = Limits::current();
        let text = match crate::input::read_text(&full, &rel, &limits) {
            Ok(t) => t,
            Err(e) => {
                d.push(e.to_diagnostic());
                continue;
            }
        };
        // Per document: its value, its line index, and the file line its first line is on.
        let mut chunks: Vec<(usize, String)> = vec![(1, String::new())];
        for (i, line) in text.lines().enumerate() {
            if line.trim_end() == "---" {
                chunks.push((i + 2, String::new()));
            } else if let Some((_, body)) = chunks.last_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        let docs: Vec<(Value, LineIndex, usize)> = chunks
            .into_iter()
            .filter_map(|(first, body)| {
                // Syntax problems are Flux's to report when it applies the file.
                let mut ignored = Diagnostics::default();
                let (v, src) = crate::input::parse_yaml(&rel, &body, None, &limits, &mut ignored)?;
                let v = serde_json::to_value(v).ok()?;
                (!v.is_null()).then_some((v, src.lines, first - 1))
            })
            .collect();
        for want in sync_objects(&c.flux) {
            let Some((have, idx, offset)) = docs
                .iter()
                .find(|(v, _, _)| kind_of(v) == kind_of(&want) && name_of(v) == name_of(&want))
            else {
                continue;
            };
            let kind = kind_of(&want);
            let (mut w, mut h) = (Vec::new(), Vec::new());
            leaves(&want["spec"], "spec", &mut w);
            leaves(&have["spec"], "spec", &mut h);
            if have.get("apiVersion") != want.get("apiVersion") {
                w.push(("apiVersion".into(), want["apiVersion"].clone()));
                h.push(("apiVersion".into(), have["apiVersion"].clone()));
            }
            let mut paths: Vec<&String> = w.iter().chain(h.iter()).map(|(p, _)| p).collect();
            paths.sort();
            paths.dedup();
            for p in paths {
                let get = |l: &Vec<(String, Value)>| {
                    l.iter().find(|(q, _)| q == p).map(|(_, v)| v.to_string())
                };
                let (hv, wv) = (get(&h), get(&w));
                if hv == wv {
                    continue;
                }
                let line = idx.line_of(p).map(|l| l + offset);
                d.push(Diagnostic::error(
                    &rel,
                    line,
                    format!("{kind} flux-system.{p}"),
                    format!(
                        "is {} here, the agent applies {} (from clusters.{}'s flux settings): Flux re-applies this file and the agent its own value, so each would undo the other on every pass; make them equal",
                        hv.unwrap_or_else(|| "not set".into()),
                        wv.unwrap_or_else(|| "nothing".into()),
                        c.name
                    ),
                ));
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::file::FluxResolved;
    use crate::cluster::plan::DesiredCluster;

    fn resolved(path: &str) -> ResolvedClusters {
        ResolvedClusters {
            clusters: vec![DesiredCluster {
                name: "dev".into(),
                spec: Default::default(),
                flux: FluxResolved {
                    version: "v2.9.5".into(),
                    install_url: "https://x/install.yaml".into(),
                    sha256: None,
                    git_url: "https://git.example/r.git".into(),
                    branch: "main".into(),
                    interval: "1m".into(),
                    sync_interval: "10m".into(),
                    path: path.into(),
                    secret_ref: None,
                    source: Default::default(),
                },
                secrets: Vec::new(),
                artifact: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn every_difference_from_the_repo_file_is_an_error_at_its_line() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join("clusters/dev/flux-system");
        std::fs::create_dir_all(&dir).unwrap();
        let file = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m\n  ref:\n    branch: main\n  url: https://git.example/other.git\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m\n  path: ./clusters/dev\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n";
        std::fs::write(dir.join("gotk-sync.yaml"), file).unwrap();
        let d: Vec<String> = check_repo(&resolved("./clusters/dev"), repo.path())
            .into_sorted()
            .iter()
            .map(|d| {
                format!(
                    "{}:{}: {}",
                    d.line.unwrap_or(0),
                    d.path,
                    &d.message[..d.message.find(" (").unwrap()]
                )
            })
            .collect();
        assert_eq!(
            d,
            [
                "10:GitRepository flux-system.spec.url: is \"https://git.example/other.git\" here, the agent applies \"https://git.example/r.git\"",
                "18:Kustomization flux-system.spec.interval: is \"1m\" here, the agent applies \"10m\"",
            ]
        );
        // The same values: nothing to report; no file: nothing to compare.
        std::fs::write(
            dir.join("gotk-sync.yaml"),
            file.replace("other.git", "r.git")
                .replace("interval: 1m\n  path", "interval: 10m\n  path"),
        )
        .unwrap();
        assert!(check_repo(&resolved("./clusters/dev"), repo.path()).is_empty());
        assert!(check_repo(&resolved("./clusters/none"), repo.path()).is_empty());
    }
}
