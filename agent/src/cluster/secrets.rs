//! Secrets the agent makes in a cluster from the host's environment, so no credential is ever
//! committed under `clusters/` or `base/`: `clusters.<name>.secrets` (e.g. the PowerDNS API key
//! ExternalDNS needs) and Flux's `secret_ref`. Values are read once per pass, while validating;
//! they live only in memory and in the cluster (`Debug` and `diff` show names, never values).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::file::{ClusterSecretSpec, ClustersFile};
use super::validate::ResolvedClusters;
use crate::desired::spec::Sensitive;
use crate::diag::Diagnostics;
use crate::input::Env;

/// On every Secret the agent makes, so `kubectl` shows where it came from.
pub const MANAGED_LABEL: &str = "app.kubernetes.io/managed-by";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSecret {
    pub namespace: String,
    pub name: String,
    /// (key, environment variable), in file order.
    pub from_env: Vec<(String, String)>,
    /// (key, environment variable holding the path of a file whose content is the value).
    pub from_files: Vec<(String, String)>,
    /// Where in clusters.yaml it is declared, for diagnostics.
    pub origin: String,
    /// The values, once read from the environment; `None` before (or when a variable is unset).
    pub values: Option<BTreeMap<String, Sensitive>>,
}

impl DesiredSecret {
    pub fn from_spec(s: &ClusterSecretSpec) -> Self {
        Self {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            from_env: s.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            from_files: Vec::new(),
            origin: String::new(),
            values: None,
        }
    }

    /// Flux's `secret_ref` for `url`: `username`/`password` for http(s), `identity` and
    /// `known_hosts` (what source-controller reads for ssh) otherwise. `Err` names the keys
    /// the URL's scheme needs and `secret_ref` lacks.
    pub fn for_git(r: &super::file::SecretRef, url: &str) -> Result<Self, String> {
        let ssh = url.starts_with("ssh://");
        let (a, b, want) = if ssh {
            (
                &r.identity_file_env,
                &r.known_hosts_file_env,
                "identity_file_env and known_hosts_file_env (for an ssh:// git_url)",
            )
        } else {
            (
                &r.username_env,
                &r.password_env,
                "username_env and password_env (for an http(s) git_url)",
            )
        };
        let (Some(a), Some(b)) = (a, b) else {
            return Err(format!("needs {want}"));
        };
        let (k1, k2) = if ssh {
            ("identity", "known_hosts")
        } else {
            ("username", "password")
        };
        let pairs = vec![(k1.to_string(), a.clone()), (k2.to_string(), b.clone())];
        let (from_env, from_files) = if ssh {
            (Vec::new(), pairs)
        } else {
            (pairs, Vec::new())
        };
        Ok(Self {
            namespace: super::flux::NAMESPACE.into(),
            name: r.name.clone(),
            from_env,
            from_files,
            origin: String::new(),
            values: None,
        })
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `external-dns/external-dns-pdns (api-key ← $PDNS_API_KEY)`, for `diff` and reports.
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self
            .from_env
            .iter()
            .map(|(k, e)| format!("{k} ← ${e}"))
            .chain(
                self.from_files
                    .iter()
                    .map(|(k, e)| format!("{k} ← file ${e}")),
            )
            .collect();
        format!("{} ({})", self.id(), keys.join(", "))
    }

    /// Read every value; (key, problem) for each that could not be read.
    pub fn read(&mut self, env: &Env) -> Vec<(String, String)> {
        let mut values = BTreeMap::new();
        let mut problems = Vec::new();
        let unset = |var: &str| {
            format!("environment variable {var} is not set (the agent reads the value from its environment)")
        };
        for (key, var) in &self.from_env {
            match env.get(var) {
                Some(v) => {
                    values.insert(key.clone(), Sensitive(v.as_bytes().to_vec()));
                }
                None => problems.push((key.clone(), unset(var))),
            }
        }
        for (key, var) in &self.from_files {
            let Some(path) = env.get(var) else {
                problems.push((key.clone(), unset(var)));
                continue;
            };
            match read_capped(std::path::Path::new(path)) {
                Ok(v) => {
                    values.insert(key.clone(), Sensitive(v));
                }
                Err(e) => problems.push((key.clone(), format!("${var}: {path}: {e}"))),
            }
        }
        self.values = problems.is_empty().then_some(values);
        problems
    }

    /// The Secret to apply (with its Namespace, which Flux may not have created yet); `None`
    /// when the values were not read.
    pub fn objects(&self) -> Option<Vec<Value>> {
        let values = self.values.as_ref()?;
        let data: serde_json::Map<String, Value> = values
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(super::flux::base64(&v.0))))
            .collect();
        // flux-system is the install's: re-applying it bare under the same field manager would
        // drop the labels and annotations the install gave it.
        let namespace = (self.namespace != super::flux::NAMESPACE).then(|| {
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
        });
        Some(
            namespace
                .into_iter()
                .chain([json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "labels": {MANAGED_LABEL: super::FIELD_MANAGER}},
                    "type": "Opaque",
                    "data": data,
                })])
                .collect(),
        )
    }

    /// Whether the Secret in the cluster holds exactly these values (`have` as the API returns
    /// it: base64 `data`).
    pub fn matches(&self, have: Option<&Value>) -> bool {
        let (Some(values), Some(have)) = (&self.values, have) else {
            return false;
        };
        let Some(data) = have.get("data").and_then(Value::as_object) else {
            return values.is_empty();
        };
        data.len() == values.len()
            && values.iter().all(|(k, v)| {
                data.get(k).and_then(Value::as_str) == Some(super::flux::base64(&v.0).as_str())
            })
    }
}

/// Key files (an ssh identity, known_hosts) are small; refuse anything else.
const MAX_FILE_BYTES: u64 = 64 << 10;

fn read_capped(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(format!("not a file of at most {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// Read the values of every selected cluster's secrets from `env`; what cannot be read is an
/// error at the key that names it.
pub fn read_all(resolved: &mut ResolvedClusters, file: &ClustersFile, env: &Env) -> Diagnostics {
    let mut d = Diagnostics::default();
    for c in &mut resolved.clusters {
        for (i, s) in c.secrets.iter_mut().enumerate() {
            for (key, problem) in s.read(env) {
                let at = if s.origin.is_empty() {
                    format!("clusters.{}.secrets[{i}].data.{key}", c.name)
                } else {
                    s.origin.clone()
                };
                d.error(
                    file.origin.file.as_path(),
                    Some(&file.origin.lines),
                    at,
                    problem,
                );
            }
        }
    }
    d
}

/// Names in `clusters.<name>.secrets` of the selected clusters: DNS names, Secret keys and
/// environment variable names as Kubernetes and a shell take them.
pub fn check(f: &ClustersFile, selected: &[String], d: &mut Diagnostics) {
    let (file, idx) = (f.origin.file.as_path(), Some(&f.origin.lines));
    let key_ok = |k: &str| {
        !k.is_empty()
            && k.len() <= 253
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    };
    let var_ok = |v: &str| {
        v.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    for name in selected {
        let Some(c) = f.clusters.get(name) else {
            continue;
        };
        let mut seen = Vec::new();
        for (i, s) in c.secrets.iter().enumerate() {
            let at = |k: &str| format!("clusters.{name}.secrets[{i}].{k}");
            for (k, v) in [("name", &s.name), ("namespace", &s.namespace)] {
                if !super::host_services::is_dns_label(v) {
                    d.error(file, idx, at(k), format!("{v:?} is not a DNS label"));
                }
            }
            if seen.contains(&(&s.namespace, &s.name)) {
                d.error(
                    file,
                    idx,
                    at("name"),
                    format!("Secret {}/{} is declared twice", s.namespace, s.name),
                );
            }
            seen.push((&s.namespace, &s.name));
            if s.data.is_empty() {
                d.error(
                    file,
                    idx,
                    at("data"),
                    "needs at least one key: environment variable",
                );
            }
            for (k, var) in &s.data {
                if !key_ok(k) {
                    d.error(
                        file,
                        idx,
                        at(&format!("data.{k}")),
                        format!("{k:?} is not a Secret key"),
                    );
                }
                if !var_ok(var) {
                    d.error(
                        file,
                        idx,
                        at(&format!("data.{k}")),
                        format!("{var:?} is not an environment variable name"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> DesiredSecret {
        DesiredSecret::from_spec(&ClusterSecretSpec {
            name: "external-dns-pdns".into(),
            namespace: "external-dns".into(),
            data: [("api-key".to_string(), "PDNS_API_KEY".to_string())]
                .into_iter()
                .collect(),
        })
    }

    #[test]
    fn values_come_from_the_environment_and_never_show() {
        let mut s = secret();
        assert_eq!(s.read(&Env::default()).len(), 1);
        assert!(s.objects().is_none());
        assert!(s
            .read(&Env::from_pairs([("PDNS_API_KEY", "k3y")]))
            .is_empty());
        let objs = s.objects().unwrap();
        assert_eq!(objs[0]["kind"], "Namespace");
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["data"]["api-key"], "azN5");
        assert!(s.matches(Some(&objs[1])));
        let mut changed = objs[1].clone();
        changed["data"]["api-key"] = "b3RoZXI=".into();
        assert!(!s.matches(Some(&changed)));
        assert!(!s.matches(None));
        for shown in [format!("{s:?}"), s.describe()] {
            assert!(!shown.contains("k3y"), "{shown}");
        }
        assert_eq!(
            s.describe(),
            "external-dns/external-dns-pdns (api-key ← $PDNS_API_KEY)"
        );
    }
}
