//! What the engine has, reduced to what the planner compares. Filled by `engine::observe`;
//! deserialisable so plan tests can state it in YAML.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

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
}

impl ObservedContainer {
    pub fn owned_by(&self, host: &str) -> bool {
        labels::owned_by_btree(&self.labels, host)
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
