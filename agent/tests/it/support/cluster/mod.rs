//! Stand-ins for what a cluster test cannot run here: a `kind` that records its command lines,
//! a Kubernetes API server that serves what Flux bootstrap needs, and the reduced Flux install.

pub mod recording_kind;
pub mod standin_apiserver;

/// The reduced Flux install.yaml fixture and its sha256.
pub fn flux_fixture() -> (std::path::PathBuf, String) {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flux-install.yaml");
    let sum = macula_gitops::cluster::flux::sha256_hex(&std::fs::read(&p).expect("fixture"));
    (p, sum)
}
