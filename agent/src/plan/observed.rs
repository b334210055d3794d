//! What the engine has, reduced to what the planner compares. Filled by `engine::observe`;
//! deserialisable so plan tests can state it in YAML.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::desired::spec::DesiredState;
use crate::labels;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    #[serde(default)]
    pub containers: Vec<ObservedContainer>,
    #[serde(default)]
    pub networks: BTreeMap<String, ObservedNetwork>,
    #[serde(default)]
    pub volumes: BTreeMap<String, ObservedVolume>,
    /// Local images by reference as written in the desired state.
    #[serde(default)]
    pub images: BTreeMap<String, ObservedImage>,
    /// The data directories the desired state binds, and whether each exists on the host.
    #[serde(default)]
    pub data: Vec<crate::data::DataDir>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    /// Docker's state: created, running, restarting, exited, paused, dead.
    pub state: String,
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// starting, healthy, unhealthy; none without a healthcheck.
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Volumes the container mounts: on recreate its anonymous and image-declared volumes are
    /// carried over to the new container, as docker compose does.
    #[serde(default)]
    pub mounts: Vec<ObservedMount>,
}

/// One volume mount of a container (binds and tmpfs are not carried over, so not kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedMount {
    pub volume: String,
    pub target: String,
}

impl ObservedMount {
    /// Docker names an anonymous volume (`- /cache`, an image `VOLUME`) with 64 hex digits.
    pub fn is_anonymous(&self) -> bool {
        self.volume.len() == 64 && self.volume.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

impl ObservedContainer {
    pub fn owned_by(&self, host: &str) -> bool {
        labels::owned_by(&self.labels, host)
    }

    /// `stack/service` from the ownership labels.
    pub fn service_key(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.labels.get(labels::STACK)?,
            self.labels.get(labels::SERVICE)?
        ))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedNetwork {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub subnet: Option<IpNet>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedVolume {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedImage {
    #[serde(default)]
    pub context_digest: Option<String>,
}

impl Observed {
    /// What the engine shows right after a successful apply of `d`: every object present,
    /// owned and labelled with its spec. Planning against it gives an empty plan; tests and
    /// the plan benchmark start from it.
    pub fn as_applied(d: &DesiredState) -> Observed {
        let host = d.host();
        let mut o = Observed::default();
        for (name, n) in &d.networks {
            o.networks.insert(
                name.clone(),
                ObservedNetwork {
                    id: format!("net-{name}"),
                    subnet: n.subnet,
                    labels: labels::ownership(host, &n.stack),
                },
            );
        }
        for (name, v) in &d.volumes {
            o.volumes.insert(
                name.clone(),
                ObservedVolume {
                    labels: labels::ownership(host, &v.stack),
                },
            );
        }
        for s in &d.services {
            o.images.insert(
                s.image.clone(),
                ObservedImage {
                    context_digest: s.build.as_ref().map(|b| b.context_digest.clone()),
                },
            );
            for n in 1..=s.replicas {
                let r = s.replica(n);
                let mut l = labels::ownership(host, &r.stack);
                l.insert(labels::SERVICE.into(), r.service.clone());
                l.insert(labels::COMPOSE_PROJECT.into(), r.project.clone());
                l.insert(labels::COMPOSE_CONTAINER_NUMBER.into(), n.to_string());
                l.insert(labels::SPEC_HASH.into(), r.hash());
                l.insert(
                    labels::FIELDS.into(),
                    serde_json::to_string(&r.field_hashes()).expect("a map of strings serialises"),
                );
                o.containers.push(ObservedContainer {
                    id: match n {
                        1 => format!("id-{}", r.key()),
                        n => format!("id-{}-{n}", r.key()),
                    },
                    name: r.container_name.clone(),
                    state: "running".into(),
                    exit_code: None,
                    health: None,
                    labels: l,
                    mounts: Vec::new(),
                });
            }
        }
        o
    }
}
