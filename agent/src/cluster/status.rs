//! Per-cluster status for `/status`, `status` and metrics: whether the cluster runs, and the
//! Ready condition and applied revision of every Flux Kustomization in it.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::docker::NodeOps;
use super::kind::KindCli;
use super::kube_ops::{FluxBootstrap, KubeCluster, KustomizationStatus};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ClusterStatus {
    pub name: String,
    /// Node containers exist on the engine.
    pub exists: bool,
    /// The Flux install the cluster's flux-system Namespace records.
    pub flux: Option<FluxInstall>,
    pub kustomizations: Vec<KustomizationStatus>,
    /// Why the Kustomizations could not be read.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FluxInstall {
    pub version: Option<String>,
    /// sha256 of the install.yaml the agent verified and applied.
    pub sha256: String,
}

impl ClusterStatus {
    /// Every Kustomization reports Ready=True (and there is at least one).
    pub fn ready(&self) -> bool {
        !self.kustomizations.is_empty() && self.kustomizations.iter().all(|k| k.ready == "True")
    }
}

/// Status of `names` (the clusters this host runs).
pub async fn status<K: KindCli, N: NodeOps>(
    kind: &K,
    engine: &N,
    names: &[String],
) -> Vec<ClusterStatus> {
    let nodes = engine.kind_nodes().await;
    let mut out = Vec::new();
    for name in names {
        let mut st = ClusterStatus {
            name: name.clone(),
            exists: false,
            flux: None,
            kustomizations: Vec::new(),
            error: None,
        };
        match &nodes {
            Err(e) => st.error = Some(e.to_string()),
            Ok(n) if !n.contains_key(name) => st.error = Some("cluster does not exist".into()),
            Ok(_) => {
                st.exists = true;
                let r = async {
                    let text = kind.kubeconfig(name).await?;
                    let c = KubeCluster::from_kubeconfig(name, &text).await?;
                    let flux = c.observe_flux().await?;
                    Ok::<_, super::ClusterError>((flux, c.kustomizations().await?))
                }
                .await;
                match r {
                    Ok((flux, k)) => {
                        st.flux = flux.install_sha256.map(|sha256| FluxInstall {
                            version: flux.install_version,
                            sha256,
                        });
                        st.kustomizations = k;
                    }
                    Err(e) => st.error = Some(e.to_string()),
                }
            }
        }
        out.push(st);
    }
    out
}

/// Gauges for the cluster part of `/metrics`.
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    /// 1 when the cluster's node containers exist.
    pub up: Family<Vec<(String, String)>, Gauge>,
    /// 1 when the Kustomization is Ready=True, else 0.
    pub kustomization_ready: Family<Vec<(String, String)>, Gauge>,
}

impl ClusterMetrics {
    /// Register into the agent's registry (prefixed `macula_gitops_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cluster_up",
            "kind cluster node containers exist",
            self.up.clone(),
        );
        registry.register(
            "flux_kustomization_ready",
            "Flux Kustomization Ready condition (1 = True), with its applied revision",
            self.kustomization_ready.clone(),
        );
    }

    pub fn update(&self, statuses: &[ClusterStatus]) {
        self.kustomization_ready.clear();
        for s in statuses {
            self.up
                .get_or_create(&vec![("cluster".into(), s.name.clone())])
                .set(i64::from(s.exists));
            for k in &s.kustomizations {
                let labels = vec![
                    ("cluster".to_string(), s.name.clone()),
                    ("namespace".to_string(), k.namespace.clone()),
                    ("name".to_string(), k.name.clone()),
                    (
                        "revision".to_string(),
                        k.revision.clone().unwrap_or_default(),
                    ),
                ];
                self.kustomization_ready
                    .get_or_create(&labels)
                    .set(i64::from(k.ready == "True"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text() {
        let m = ClusterMetrics::default();
        let mut reg = Registry::with_prefix("macula_gitops");
        m.register(&mut reg);
        let k = |name: &str, ready: &str| KustomizationStatus {
            namespace: "flux-system".into(),
            name: name.into(),
            ready: ready.into(),
            reason: None,
            message: None,
            revision: Some("main@sha1:abc".into()),
        };
        m.update(&[
            ClusterStatus {
                name: "dev".into(),
                exists: true,
                flux: None,
                kustomizations: vec![k("flux-system", "True"), k("apps", "False")],
                error: None,
            },
            ClusterStatus {
                name: "hub".into(),
                exists: false,
                flux: None,
                kustomizations: vec![],
                error: Some("cluster does not exist".into()),
            },
        ]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        for line in [
            "macula_gitops_cluster_up{cluster=\"dev\"} 1",
            "macula_gitops_cluster_up{cluster=\"hub\"} 0",
            "macula_gitops_flux_kustomization_ready{cluster=\"dev\",namespace=\"flux-system\",name=\"flux-system\",revision=\"main@sha1:abc\"} 1",
            "macula_gitops_flux_kustomization_ready{cluster=\"dev\",namespace=\"flux-system\",name=\"apps\",revision=\"main@sha1:abc\"} 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
