//! The Kubernetes side of a cluster: server-side apply of Flux and the registry ConfigMap,
//! the waits (CRD Established, Deployment Available), and observation for plan and status.
//! The real implementation is kube-rs against the kubeconfig kind hands out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiResource, Scope};
use serde_json::Value;
use tokio::sync::Mutex;

use super::flux::{
    kind_of, name_of, namespace_of, INSTALL_ANNOTATION, NAMESPACE, VERSION_ANNOTATION,
};
use super::plan::{FluxObserved, SyncObserved};
use super::{ClusterError, FIELD_MANAGER};

/// Ready condition and revision of one Flux Kustomization.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KustomizationStatus {
    pub namespace: String,
    pub name: String,
    /// `True`, `False` or `Unknown` (no condition yet).
    pub ready: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub revision: Option<String>,
}

/// What the flux-system Namespace records once an install completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallMark {
    pub version: String,
    pub sha256: String,
}

pub trait FluxBootstrap {
    fn observe_flux(&self)
        -> impl std::future::Future<Output = Result<FluxObserved, ClusterError>>;
    /// Whether the object exists with (at least) the wanted `data`.
    fn configmap_matches(
        &self,
        want: &Value,
    ) -> impl std::future::Future<Output = Result<bool, ClusterError>>;
    fn apply(
        &self,
        objects: &[Value],
    ) -> impl std::future::Future<Output = Result<(), ClusterError>>;
    /// CRDs first (waiting until Established), then the rest, then wait for the Deployments;
    /// finally mark the namespace with the manifest's version and checksum.
    fn install(
        &self,
        objects: &[Value],
        mark: &InstallMark,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(), ClusterError>>;
    fn kustomizations(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<KustomizationStatus>, ClusterError>>;
}

/// A cluster reached through kube-rs.
pub struct KubeCluster {
    pub cluster: String,
    pub client: kube::Client,
    resources: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
    /// Poll interval of the waits.
    pub poll: Duration,
}

impl KubeCluster {
    /// A client from kubeconfig text (what `kind get kubeconfig` prints).
    pub async fn from_kubeconfig(cluster: &str, text: &str) -> Result<Self, ClusterError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg_err = |message: String| ClusterError::Config {
            cluster: cluster.into(),
            message,
        };
        let kc = Kubeconfig::from_yaml(text).map_err(|e| cfg_err(format!("kubeconfig: {e}")))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| cfg_err(format!("kubeconfig: {e}")))?;
        let client = kube::Client::try_from(config).map_err(|source| ClusterError::Kube {
            cluster: cluster.into(),
            what: "client".into(),
            source,
        })?;
        Ok(Self {
            cluster: cluster.into(),
            client,
            resources: Mutex::new(HashMap::new()),
            poll: Duration::from_millis(500),
        })
    }

    fn kerr(&self, what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError + '_ {
        let what = what.into();
        move |source| ClusterError::Kube {
            cluster: self.cluster.clone(),
            what,
            source,
        }
    }

    /// Resource and scope (namespaced?) of `apiVersion`/`kind`, discovered once per kind.
    async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), kube::Error> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(r) = self.resources.lock().await.get(&key) {
            return Ok(r.clone());
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk).await?;
        let r = (ar, caps.scope == Scope::Namespaced);
        self.resources.lock().await.insert(key, r.clone());
        Ok(r)
    }

    async fn api_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, kube::Error> {
        let (ar, namespaced) = self.resource(api_version, kind).await?;
        Ok(if namespaced {
            Api::namespaced_with(self.client.clone(), namespace.unwrap_or("default"), &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        })
    }

    /// GET one object; `None` when it (or its kind) does not exist.
    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClusterError> {
        let what = format!(
            "get {kind} {}{name}",
            namespace.map(|n| format!("{n}/")).unwrap_or_default()
        );
        let api = match self.api_for(api_version, kind, namespace).await {
            Ok(a) => a,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.kerr(what)(e)),
        };
        match api.get_opt(name).await {
            Ok(o) => Ok(o.map(|o| serde_json::to_value(o).expect("a fetched object serialises"))),
            Err(e) => Err(self.kerr(what)(e)),
        }
    }

    /// DELETE one object; gone already (or its kind) is fine.
    pub async fn delete(&self, o: &super::release::ObjectRef) -> Result<(), ClusterError> {
        let what = format!("delete {o}");
        let api = match self
            .api_for(&o.api_version, &o.kind, o.namespace.as_deref())
            .await
        {
            Ok(a) => a,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(self.kerr(what)(e)),
        };
        match api.delete(&o.name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.kerr(what)(e)),
        }
    }

    async fn apply_one(&self, obj: &Value) -> Result<(), ClusterError> {
        let (kind, name) = (kind_of(obj), name_of(obj));
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("v1");
        let what = format!(
            "apply {kind} {}{name}",
            namespace_of(obj)
                .map(|n| format!("{n}/"))
                .unwrap_or_default()
        );
        let api = self
            .api_for(api_version, kind, namespace_of(obj))
            .await
            .map_err(self.kerr(what.clone()))?;
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(self.kerr(what))?;
        tracing::debug!(cluster = %self.cluster, kind, name, "applied");
        Ok(())
    }

    async fn wait_until<F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        timeout: Duration,
        mut check: F,
    ) -> Result<(), ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, ClusterError>>,
    {
        loop {
            if check().await? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    cluster: self.cluster.clone(),
                    what: what.into(),
                    timeout,
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 404,
        kube::Error::Discovery(_) => true,
        _ => false,
    }
}

fn condition_true(conditions: Option<&Vec<Value>>, kind: &str) -> bool {
    conditions.is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

/// As `kubectl rollout status` decides it: the controller has seen this generation, every
/// replica runs the current template (no old ones left) and all of them are available.
/// `Available` alone is true while the previous version still serves, mid-upgrade.
pub fn rolled_out(d: &Value) -> bool {
    let num = |p: &str| d.pointer(p).and_then(Value::as_i64);
    let want = num("/spec/replicas").unwrap_or(1);
    let generation = num("/metadata/generation").unwrap_or(0);
    num("/status/observedGeneration").unwrap_or(-1) >= generation
        && num("/status/updatedReplicas").unwrap_or(0) >= want
        && num("/status/replicas").unwrap_or(0) == num("/status/updatedReplicas").unwrap_or(0)
        && num("/status/availableReplicas").unwrap_or(0) >= want
        && condition_true(
            d.pointer("/status/conditions").and_then(Value::as_array),
            "Available",
        )
}

fn str_at(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl FluxBootstrap for KubeCluster {
    async fn observe_flux(&self) -> Result<FluxObserved, ClusterError> {
        let ns = self.get("v1", "Namespace", None, NAMESPACE).await?;
        let annotation = |key: &str| {
            ns.as_ref()
                .and_then(|n| {
                    n.pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")))
                })
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let install_sha256 = annotation(INSTALL_ANNOTATION);
        let install_version = annotation(VERSION_ANNOTATION);
        let ks = self
            .get(
                "kustomize.toolkit.fluxcd.io/v1",
                "Kustomization",
                Some(NAMESPACE),
                NAMESPACE,
            )
            .await?;
        // The source the Kustomization reads: a GitRepository, or an OCIRepository (local loop).
        let source_kind = ks
            .as_ref()
            .and_then(|k| k.pointer("/spec/sourceRef/kind"))
            .and_then(Value::as_str)
            .unwrap_or("GitRepository")
            .to_string();
        let source = match ks {
            Some(_) => {
                self.get(
                    "source.toolkit.fluxcd.io/v1",
                    &source_kind,
                    Some(NAMESPACE),
                    NAMESPACE,
                )
                .await?
            }
            None => None,
        };
        let sync = match (source, ks) {
            (Some(g), Some(k)) => Some(SyncObserved {
                source_kind,
                url: str_at(&g, "/spec/url"),
                branch: str_at(&g, "/spec/ref/branch"),
                tag: str_at(&g, "/spec/ref/tag"),
                insecure: g
                    .pointer("/spec/insecure")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                interval: str_at(&g, "/spec/interval"),
                secret: g
                    .pointer("/spec/secretRef/name")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                path: str_at(&k, "/spec/path"),
                sync_interval: str_at(&k, "/spec/interval"),
                prune: k
                    .pointer("/spec/prune")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }),
            _ => None,
        };
        Ok(FluxObserved {
            install_sha256,
            install_version,
            sync,
        })
    }

    async fn configmap_matches(&self, want: &Value) -> Result<bool, ClusterError> {
        let have = self
            .get("v1", "ConfigMap", namespace_of(want), name_of(want))
            .await?;
        Ok(have.is_some_and(|h| h.get("data") == want.get("data")))
    }

    async fn apply(&self, objects: &[Value]) -> Result<(), ClusterError> {
        for o in objects {
            self.apply_one(o).await?;
        }
        Ok(())
    }

    async fn install(
        &self,
        objects: &[Value],
        mark: &InstallMark,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        let (crds, rest): (Vec<&Value>, Vec<&Value>) = objects
            .iter()
            .partition(|o| kind_of(o) == "CustomResourceDefinition");
        // Namespaces right after the CRDs: everything else lives in one.
        let (namespaces, rest): (Vec<&Value>, Vec<&Value>) =
            rest.into_iter().partition(|o| kind_of(o) == "Namespace");
        for crd in &crds {
            self.apply_one(crd).await?;
        }
        let crd_api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd in &crds {
            let name = name_of(crd).to_string();
            self.wait_until(
                &format!("CRD {name} Established"),
                deadline,
                timeout,
                || async {
                    let c = crd_api
                        .get_opt(&name)
                        .await
                        .map_err(self.kerr(format!("get CRD {name}")))?;
                    let v = c
                        .map(|c| serde_json::to_value(c).expect("a CRD serialises"))
                        .unwrap_or(Value::Null);
                    Ok(condition_true(
                        v.pointer("/status/conditions").and_then(Value::as_array),
                        "Established",
                    ))
                },
            )
            .await?;
        }
        for o in namespaces.iter().chain(rest.iter()) {
            self.apply_one(o).await?;
        }
        for d in rest.iter().filter(|o| kind_of(o) == "Deployment") {
            let (ns, name) = (
                namespace_of(d).unwrap_or("default").to_string(),
                name_of(d).to_string(),
            );
            let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
            self.wait_until(
                &format!("Deployment {ns}/{name} rolled out"),
                deadline,
                timeout,
                || async {
                    let dep = api
                        .get_opt(&name)
                        .await
                        .map_err(self.kerr(format!("get Deployment {ns}/{name}")))?;
                    let v = dep
                        .map(|d| serde_json::to_value(d).expect("a Deployment serialises"))
                        .unwrap_or(Value::Null);
                    Ok(rolled_out(&v))
                },
            )
            .await?;
        }
        // Marked only now, so an install that timed out is retried on the next pass.
        let mut ns = namespaces
            .iter()
            .find(|n| name_of(n) == NAMESPACE)
            .map(|n| (*n).clone())
            .unwrap_or_else(|| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}));
        ns["metadata"]["annotations"][INSTALL_ANNOTATION] = Value::String(mark.sha256.clone());
        ns["metadata"]["annotations"][VERSION_ANNOTATION] = Value::String(mark.version.clone());
        self.apply_one(&ns).await
    }

    async fn kustomizations(&self) -> Result<Vec<KustomizationStatus>, ClusterError> {
        let (ar, _) = match self
            .resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
            .await
        {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.kerr("discover Kustomization")(e)),
        };
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(self.kerr("list Kustomizations"))?;
        let mut out: Vec<KustomizationStatus> = list
            .items
            .into_iter()
            .map(|k| {
                let v = serde_json::to_value(&k).expect("a fetched object serialises");
                let ready = v
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
                    .unwrap_or(Value::Null);
                let opt = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
                KustomizationStatus {
                    namespace: str_at(&v, "/metadata/namespace"),
                    name: str_at(&v, "/metadata/name"),
                    ready: opt(&ready, "status").unwrap_or_else(|| "Unknown".into()),
                    reason: opt(&ready, "reason"),
                    message: opt(&ready, "message"),
                    revision: v
                        .pointer("/status/lastAppliedRevision")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::rolled_out;
    use serde_json::json;

    #[test]
    fn rollout_needs_the_new_generation_on_every_replica() {
        let dep = |generation: i64, status: serde_json::Value| json!({"metadata": {"generation": generation}, "spec": {"replicas": 2}, "status": status});
        let available = json!([{"type": "Available", "status": "True"}]);
        let done = json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "conditions": available});
        assert!(rolled_out(&dep(3, done.clone())));
        let mut cases = Vec::new();
        for (field, value) in [
            ("observedGeneration", json!(2)),
            ("updatedReplicas", json!(1)),
            ("replicas", json!(3)),
            ("availableReplicas", json!(1)),
        ] {
            let mut s = done.clone();
            s[field] = value;
            cases.push((field, s));
        }
        for (field, status) in cases {
            assert!(!rolled_out(&dep(3, status)), "{field}");
        }
        assert!(!rolled_out(
            &json!({"metadata": {"generation": 1}, "status": {"conditions": available}})
        ));
    }
}
