//! Flux's install manifest parsed into objects (fetched and verified in `release`) and the
//! sync objects `flux bootstrap` would create, so the `flux` CLI works on clusters the agent
//! bootstrapped.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::file::{FluxResolved, FluxSource};
use super::ClusterError;

pub const NAMESPACE: &str = "flux-system";
/// On the flux-system Namespace: the sha256 of the install.yaml applied completely.
pub const INSTALL_ANNOTATION: &str = "gitops.macula.io/flux-install-sha256";
/// On the flux-system Namespace: the Flux version of that install.yaml.
pub const VERSION_ANNOTATION: &str = "gitops.macula.io/flux-install-version";

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Why source-controller would refuse `url`: the GitRepository CRD admits only
/// `^(http|https|ssh)://.*$` (the API server answers 422 otherwise).
pub fn git_url_problem(raw: &str) -> Option<String> {
    // Messages show the URL redacted: it may come from the agent's own (credentialed) source.
    let url = &*crate::redact::redact(raw);
    if crate::redact::without_credentials(raw) != raw
        && url.split_once("://").is_some_and(|(s, _)| s != "ssh")
    {
        return Some(format!(
            "{url:?} carries credentials; a cluster object must not hold them: put them in the Secret named by flux.secret_ref"
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        if let Some((user_host, path)) = url.split_once(':').filter(|(h, _)| !h.contains('/')) {
            return Some(format!(
                "{url:?} is an scp-style address, which Flux's GitRepository does not accept: use ssh://{user_host}/{}",
                path.trim_start_matches('/')
            ));
        }
        return Some(format!(
            "{url:?} is not a URL; Flux's GitRepository accepts http://, https:// and ssh:// URLs"
        ));
    };
    if !matches!(scheme, "http" | "https" | "ssh") {
        return Some(format!(
            "{url:?} uses {scheme}://; Flux's GitRepository accepts http://, https:// and ssh:// URLs"
        ));
    }
    rest.is_empty().then(|| format!("{url:?} has no host"))
}

/// Every object of a multi-document manifest, as JSON.
pub fn parse_manifests(subject: &str, text: &str) -> Result<Vec<Value>, ClusterError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| ClusterError::Manifest {
            subject: subject.into(),
            message: format!("document {i}: {e}"),
        })?;
        if v.is_null() {
            continue;
        }
        if v.get("kind").and_then(Value::as_str).is_none()
            || v.pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_none()
        {
            return Err(ClusterError::Manifest {
                subject: subject.into(),
                message: format!("document {i} has no kind or metadata.name"),
            });
        }
        out.push(v);
    }
    Ok(out)
}

pub fn kind_of(v: &Value) -> &str {
    v.get("kind").and_then(Value::as_str).unwrap_or("")
}

pub fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn namespace_of(v: &Value) -> Option<&str> {
    v.pointer("/metadata/namespace").and_then(Value::as_str)
}

/// The source and Kustomization `flux-system/flux-system`: for a git source the GitRepository
/// and Kustomization `flux bootstrap` creates (the credentials Secret a private repo needs is
/// one of the cluster's `secrets`); for an oci source the OCIRepository `flux create source oci
/// --insecure` creates, following the moving tag of the artifact the agent pushes, and the same
/// Kustomization reading it (the artifact keeps repo paths, so `path` is unchanged).
pub fn sync_objects(flux: &FluxResolved) -> Vec<Value> {
    let meta = json!({"name": NAMESPACE, "namespace": NAMESPACE});
    let source = match &flux.source {
        FluxSource::Git => {
            let mut spec = json!({
                "interval": flux.interval,
                "ref": {"branch": flux.branch},
                "url": flux.git_url,
            });
            if let Some(s) = &flux.secret_ref {
                spec["secretRef"] = json!({"name": s.name});
            }
            json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": meta,
                "spec": spec,
            })
        }
        FluxSource::Oci(t) => json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "OCIRepository",
            "metadata": meta,
            "spec": {
                "interval": flux.interval,
                "url": t.url,
                "ref": {"tag": t.tag},
                // The local registry speaks plain HTTP on the nodes' network.
                "insecure": true,
            },
        }),
    };
    let source_kind = kind_of(&source).to_string();
    vec![
        source,
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": meta,
            "spec": {
                "interval": flux.sync_interval,
                "path": flux.path,
                "prune": true,
                "sourceRef": {"kind": source_kind, "name": NAMESPACE},
            },
        }),
    ]
}

/// Standard base64 with padding (Secret `data`).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_as_the_gitrepository_crd_admits_them() {
        for ok in [
            "https://github.com/macula-io/macula-gitops.git",
            "http://git.lan/r.git",
            "ssh://git@github.com/macula-io/macula-gitops.git",
        ] {
            assert_eq!(git_url_problem(ok), None, "{ok}");
        }
        assert_eq!(
            git_url_problem("git@github.com:macula-io/macula-gitops.git").as_deref(),
            Some("\"git@github.com:macula-io/macula-gitops.git\" is an scp-style address, which Flux's GitRepository does not accept: use ssh://git@github.com/macula-io/macula-gitops.git")
        );
        let leaked = git_url_problem("https://bot:s3cret@git.lan/r.git").expect("refused");
        assert!(
            leaked.contains("credentials") && !leaked.contains("s3cret"),
            "{leaked}"
        );
        for bad in ["file:///srv/repo", "git://host/r.git", "/srv/repo"] {
            assert!(git_url_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn base64_table() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
