//! The repo's own `desired-state/clusters.yaml` is valid for every host in `hosts.yaml`.

use std::path::Path;

use macula_gitops::cluster::run;
use macula_gitops::desired::{interpolate::Env, load_desired};

#[test]
fn repo_clusters_file_is_valid_for_each_host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../desired-state");
    if !root.join("clusters.yaml").exists() {
        println!("skipped: no desired-state/clusters.yaml in this checkout");
        return;
    }
    // .env.example stands in for the real secrets file.
    let env = Env::load(Some(&root.join(".env.example"))).unwrap();
    for host in ["dev", "lab"] {
        let state = match load_desired(&root, host, &env) {
            Ok(s) => s,
            Err(d) => panic!(
                "host {host}: {}",
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        // No source URL: the file itself must say where Flux clones from.
        let clusters = run::load_for_host(&state, &env, None)
            .unwrap_or_else(|d| {
                panic!(
                    "host {host}:\n{}",
                    d.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
            .expect("clusters.yaml exists");
        let resolved: Vec<&str> = clusters.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(resolved, state.selection.clusters, "host {host}");
    }
}
