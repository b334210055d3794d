//! A stand-in Kubernetes API server (not a real one): plain HTTP on 127.0.0.1, reached by
//! kube-rs through a real kubeconfig. It implements the surface the agent uses — discovery of
//! the kinds involved, GET, LIST, DELETE, and server-side apply PATCH with field ownership per
//! manager (`ssa`: `managedFields`, 409 on a conflicting unforced apply, no write for a no-op)
//! and, for custom resources, validation against the `openAPIV3Schema` of the CRD applied
//! (`openapi`: 422 for a bad pattern, a missing required field, a value outside an enum) — and
//! plays the controllers' part the agent waits for: a CRD becomes Established (its kinds then
//! appear in discovery), `metadata.generation` counts spec changes, and a Deployment reports
//! its rollout. Every request is recorded so tests can assert exactly what the agent sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{openapi, ssa};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
}

#[derive(Debug, Clone)]
struct Kind {
    group: String,
    version: String,
    plural: String,
    kind: String,
    namespaced: bool,
}

#[derive(Default)]
struct State {
    kinds: Vec<Kind>,
    /// Key: `group/version/plural/namespace/name` (namespace empty for cluster scope).
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    /// Deployments never become Available (to exercise the timeout).
    deployments_stuck: bool,
    /// Deployments stay Available on the old version: the controller never catches up with
    /// the new generation (an upgrade that has not rolled out).
    deployments_rolling: bool,
    revision: u64,
    /// Apply requests that changed an object.
    writes: u64,
    /// Field ownership per object key.
    managed: BTreeMap<String, ssa::Managed>,
    /// `openAPIV3Schema` of every served CRD version: (group, version, kind).
    schemas: BTreeMap<(String, String, String), Value>,
}

#[derive(Clone)]
pub struct StandIn {
    state: Arc<Mutex<State>>,
    pub url: String,
    /// Set when serving TLS with client certificates ([`Self::start_tls`]).
    pub pki: Option<Arc<crate::support::tls::Pki>>,
    _shutdown: Arc<tokio::sync::oneshot::Sender<()>>,
}

fn builtin_kinds() -> Vec<Kind> {
    let k = |g: &str, v: &str, p: &str, kind: &str, ns: bool| Kind {
        group: g.into(),
        version: v.into(),
        plural: p.into(),
        kind: kind.into(),
        namespaced: ns,
    };
    vec![
        k("", "v1", "namespaces", "Namespace", false),
        k("", "v1", "configmaps", "ConfigMap", true),
        k("", "v1", "secrets", "Secret", true),
        k("", "v1", "serviceaccounts", "ServiceAccount", true),
        k("", "v1", "services", "Service", true),
        k("apps", "v1", "deployments", "Deployment", true),
        k(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        ),
        k(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
        ),
        k(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        k(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
        ),
    ]
}

impl StandIn {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// HTTPS on 127.0.0.1 with a cluster CA, demanding a client certificate, as a kind
    /// cluster's API server does; [`Self::kubeconfig`] then carries the certificates.
    pub async fn start_tls() -> Self {
        Self::start_with(Some(Arc::new(crate::support::tls::Pki::new()))).await
    }

    async fn start_with(pki: Option<Arc<crate::support::tls::Pki>>) -> Self {
        let state = Arc::new(Mutex::new(State {
            kinds: builtin_kinds(),
            ..Default::default()
        }));
        let st = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                async move { handle(&st, method, uri, headers, body) }
            },
        );
        let (url, tx) = match &pki {
            None => super::serve_local(app).await,
            Some(p) => super::serve_local_tls(app, p.server_config()).await,
        };
        Self {
            state,
            url,
            pki,
            _shutdown: Arc::new(tx),
        }
    }

    /// A kubeconfig as `kind get kubeconfig` would print it, pointing here.
    pub fn kubeconfig(&self, cluster: &str) -> String {
        if let Some(p) = &self.pki {
            let b64 = |s: &str| macula_gitops::cluster::flux::base64(s.as_bytes());
            return format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {url}\n  name: kind-{cluster}\ncontexts:\n- context:\n    cluster: kind-{cluster}\n    user: kind-{cluster}\n  name: kind-{cluster}\ncurrent-context: kind-{cluster}\nusers:\n- name: kind-{cluster}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
                ca = b64(&p.ca),
                url = self.url,
                cert = b64(&p.client_cert),
                key = b64(&p.client_key),
            );
        }
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {url}\n  name: kind-{cluster}\ncontexts:\n- context:\n    cluster: kind-{cluster}\n    user: kind-{cluster}\n  name: kind-{cluster}\ncurrent-context: kind-{cluster}\nusers:\n- name: kind-{cluster}\n  user: {{}}\n",
            url = self.url
        )
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// Server-side applies, as (kind, namespace/name) of the body, in order.
    pub fn applied(&self) -> Vec<(String, String)> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| {
                let b = r.body.unwrap_or_default();
                let ns = b
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default();
                (
                    b["kind"].as_str().unwrap_or("").to_string(),
                    format!("{ns}{}", b["metadata"]["name"].as_str().unwrap_or("")),
                )
            })
            .collect()
    }

    /// The stored object under `key` = `group/version/plural/namespace/name` (the core group
    /// and cluster-scoped objects leave their part empty: `/v1/namespaces//flux-system`).
    pub fn object(&self, key: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(key).cloned()
    }

    /// Set the status of the object under `key` (as in [`Self::object`]), as a controller would.
    pub fn set_status(&self, key: &str, status: Value) {
        if let Some(o) = self.state.lock().unwrap().objects.get_mut(key) {
            o["status"] = status;
        }
    }

    pub fn deployments_stuck(&self, stuck: bool) {
        self.state.lock().unwrap().deployments_stuck = stuck;
    }

    pub fn deployments_rolling(&self, rolling: bool) {
        self.state.lock().unwrap().deployments_rolling = rolling;
    }

    /// How many applies changed an object so far.
    pub fn writes(&self) -> u64 {
        self.state.lock().unwrap().writes
    }

    /// Server-side apply `obj` as `manager` over real HTTP, as another controller (Flux's
    /// kustomize-controller) would: (status code, response body).
    pub async fn apply_as(&self, manager: &str, force: bool, obj: &Value) -> (u16, Value) {
        let (group, version) = obj["apiVersion"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap_or(("", obj["apiVersion"].as_str().unwrap()));
        let k = self
            .state
            .lock()
            .unwrap()
            .kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == obj["kind"])
            .cloned()
            .expect("kind served");
        let root = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .filter(|_| k.namespaced);
        let path = match ns {
            Some(ns) => format!(
                "{root}/namespaces/{ns}/{}/{}",
                k.plural,
                obj["metadata"]["name"].as_str().unwrap()
            ),
            None => format!(
                "{root}/{}/{}",
                k.plural,
                obj["metadata"]["name"].as_str().unwrap()
            ),
        };
        let resp = reqwest::Client::new()
            .patch(format!(
                "{}{path}?fieldManager={manager}&force={force}",
                self.url
            ))
            .header("content-type", "application/apply-patch+yaml")
            .body(serde_json::to_vec(obj).unwrap())
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    /// Keys of every stored object (as in [`Self::object`]).
    pub fn keys(&self) -> Vec<String> {
        self.state.lock().unwrap().objects.keys().cloned().collect()
    }
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason, "message": message, "code": code.as_u16()})),
    )
        .into_response()
}

fn handle(
    st: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let parsed_body = if body.is_empty() {
        None
    } else {
        serde_json::from_slice::<Value>(&body).ok()
    };
    let mut s = st.lock().unwrap();
    s.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: parsed_body.clone(),
    });

    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route {path}"),
            )
        }
    };
    if rest.is_empty() {
        let resources: Vec<Value> = s
            .kinds
            .iter()
            .filter(|k| k.group == group && k.version == version)
            .map(|k| {
                json!({"name": k.plural, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced, "kind": k.kind,
                       "verbs": ["get", "list", "patch", "create", "update", "delete"]})
            })
            .collect();
        if resources.is_empty() {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            );
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        return Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})).into_response();
    }
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural, name] => (*ns, *plural, Some(*name)),
        ["namespaces", ns, plural] => (*ns, *plural, None),
        [plural, name] => ("", *plural, Some(*name)),
        [plural] => ("", *plural, None),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route {path}"),
            )
        }
    };
    let Some(kind) = s
        .kinds
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
        .cloned()
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("unknown resource {plural}"),
        );
    };
    let prefix = format!("{group}/{version}/{plural}/");
    match (method, name) {
        (Method::GET, None) => {
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|(k, _)| {
                    k.starts_with(&prefix)
                        && (namespace.is_empty() || k.starts_with(&format!("{prefix}{namespace}/")))
                })
                .map(|(_, v)| v.clone())
                .collect();
            Json(json!({"kind": format!("{}List", kind.kind), "apiVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
                        "metadata": {"resourceVersion": s.revision.to_string()}, "items": items}))
            .into_response()
        }
        (Method::GET, Some(name)) => match s.objects.get(&format!("{prefix}{namespace}/{name}")) {
            Some(o) => Json(o.clone()).into_response(),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{plural} \"{name}\" not found"),
            ),
        },
        (Method::PATCH, Some(name)) => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if ct != "application/apply-patch+yaml" {
                return status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!("stand-in only does server-side apply, got {ct}"),
                );
            }
            let q: BTreeMap<&str, &str> =
                query.split('&').filter_map(|p| p.split_once('=')).collect();
            let Some(manager) = q.get("fieldManager").map(|m| m.to_string()) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "fieldManager is required for apply patch".into(),
                );
            };
            let force = q.get("force") == Some(&"true");
            let Some(body) = parsed_body else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "body is not JSON".into(),
                );
            };
            if body["metadata"]["name"] != name
                || (kind.namespaced && body["metadata"]["namespace"] != namespace)
            {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "name/namespace in body and URL differ".into(),
                );
            }
            let key = format!("{prefix}{namespace}/{name}");
            let current = s.objects.get(&key).cloned();
            let managed = s.managed.get(&key).cloned().unwrap_or_default();
            let (mut obj, managed) =
                match ssa::apply(current.as_ref(), &managed, &body, &manager, force) {
                    Ok(r) => r,
                    Err(ssa::Conflicts(c)) => {
                        let list: Vec<String> = c
                            .iter()
                            .map(|(m, f)| format!("conflict with \"{m}\": {f}"))
                            .collect();
                        return status(
                            StatusCode::CONFLICT,
                            "Conflict",
                            format!(
                                "Apply failed with {} conflict{}: {}",
                                c.len(),
                                if c.len() == 1 { "" } else { "s" },
                                list.join(", ")
                            ),
                        );
                    }
                };
            let schema_key = (group.to_string(), version.to_string(), kind.kind.clone());
            if let Some(schema) = s.schemas.get(&schema_key) {
                let errs = openapi::validate(schema, &obj);
                if !errs.is_empty() {
                    return status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        format!(
                            "{}.{group} \"{name}\" is invalid: [{}]",
                            kind.kind,
                            errs.join(", ")
                        ),
                    );
                }
            }
            // metadata.generation counts spec changes, as the API server does.
            let generation = match &current {
                None => 1,
                Some(old) => {
                    let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                    if old.get("spec") == obj.get("spec") {
                        g
                    } else {
                        g + 1
                    }
                }
            };
            obj["metadata"]["generation"] = json!(generation);
            match kind.kind.as_str() {
                "CustomResourceDefinition" => {
                    let spec = obj["spec"].clone();
                    for v in spec["versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|v| v["served"] == true)
                    {
                        let k = Kind {
                            group: spec["group"].as_str().unwrap_or("").into(),
                            version: v["name"].as_str().unwrap_or("").into(),
                            plural: spec["names"]["plural"].as_str().unwrap_or("").into(),
                            kind: spec["names"]["kind"].as_str().unwrap_or("").into(),
                            namespaced: spec["scope"] == "Namespaced",
                        };
                        if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
                            s.schemas.insert(
                                (k.group.clone(), k.version.clone(), k.kind.clone()),
                                schema.clone(),
                            );
                        }
                        if !s.kinds.iter().any(|e| {
                            e.group == k.group && e.version == k.version && e.kind == k.kind
                        }) {
                            s.kinds.push(k);
                        }
                    }
                    obj["status"] = json!({"conditions": [{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}]});
                }
                "Deployment" if s.deployments_rolling => {
                    let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                    obj["status"] = json!({"observedGeneration": generation - 1, "replicas": want, "updatedReplicas": 0, "availableReplicas": want,
                                           "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]});
                }
                "Deployment" if !s.deployments_stuck => {
                    let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                    obj["status"] = json!({"observedGeneration": generation, "replicas": want, "updatedReplicas": want, "availableReplicas": want,
                                           "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]});
                }
                _ => {}
            }
            obj["metadata"]["managedFields"] = ssa::render(&managed, &obj["apiVersion"]);
            // A no-op apply writes nothing: the resourceVersion stays.
            let unchanged = current.as_ref().is_some_and(|c| {
                let mut c = c.clone();
                c["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"].clone();
                c == obj
            });
            if !unchanged {
                s.revision += 1;
                obj["metadata"]["resourceVersion"] = json!(s.revision.to_string());
                s.writes += 1;
            }
            s.managed.insert(key.clone(), managed);
            s.objects.insert(key, obj.clone());
            Json(obj).into_response()
        }
        (Method::DELETE, Some(name)) => {
            match s.objects.remove(&format!("{prefix}{namespace}/{name}")) {
                Some(o) => Json(o).into_response(),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{plural} \"{name}\" not found"),
                ),
            }
        }
        (m, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("stand-in does not implement {m} {path}"),
        ),
    }
}
