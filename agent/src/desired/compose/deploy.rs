//! `deploy:`. On one engine Compose maps `resources` and `restart_policy` onto the container and
//! `replicas` onto the number of containers; the rest only means something to Swarm.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::{KeyValues, Scalar};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Deploy {
    pub mode: Option<String>,
    pub replicas: Option<u32>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    /// Swarm-only: accepted so files load, reported as ignored.
    #[serde(default)]
    pub labels: KeyValues,
    pub placement: Option<serde_yaml::Value>,
    pub update_config: Option<serde_yaml::Value>,
    pub rollback_config: Option<serde_yaml::Value>,
    pub endpoint_mode: Option<String>,
}

pub const DEPLOY_KEYS: &[&str] = &[
    "mode",
    "replicas",
    "resources",
    "restart_policy",
    "labels",
    "placement",
    "update_config",
    "rollback_config",
    "endpoint_mode",
];

impl Deploy {
    /// The keys present that only Swarm acts on.
    pub fn swarm_only(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.labels.0.is_empty() {
            out.push("labels");
        }
        if self.placement.is_some() {
            out.push("placement");
        }
        if self.update_config.is_some() {
            out.push("update_config");
        }
        if self.rollback_config.is_some() {
            out.push("rollback_config");
        }
        if self.endpoint_mode.is_some() {
            out.push("endpoint_mode");
        }
        if self
            .restart_policy
            .as_ref()
            .is_some_and(|r| r.delay.is_some() || r.window.is_some())
        {
            out.push("restart_policy.delay/window");
        }
        if self
            .resources
            .as_ref()
            .and_then(|r| r.reservations.as_ref())
            .is_some_and(|r| r.cpus.is_some() || r.pids.is_some())
        {
            out.push("resources.reservations.cpus/pids");
        }
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Resources {
    pub limits: Option<Resource>,
    pub reservations: Option<Resource>,
}

pub const RESOURCES_KEYS: &[&str] = &["limits", "reservations"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Resource {
    pub cpus: Option<Scalar>,
    pub memory: Option<Scalar>,
    pub pids: Option<i64>,
    /// GPU and other device requests.
    #[serde(default)]
    pub devices: Vec<DeviceRequest>,
    pub generic_resources: Option<serde_yaml::Value>,
}

pub const RESOURCE_KEYS: &[&str] = &["cpus", "memory", "pids", "devices", "generic_resources"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DeviceRequest {
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub driver: Option<String>,
    pub count: Option<Scalar>,
    #[serde(default)]
    pub device_ids: Vec<String>,
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

pub const DEVICE_REQUEST_KEYS: &[&str] =
    &["capabilities", "driver", "count", "device_ids", "options"];

/// A service's `gpus:`: `all`, or a list of device requests (each with an implicit `gpu`
/// capability, added where the requests are built).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gpus(pub Vec<DeviceRequest>);

impl<'de> Deserialize<'de> for Gpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Gpus;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`all` or a list of {driver, count, device_ids, capabilities, options}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Gpus, E> {
                if v != "all" {
                    return Err(E::invalid_value(de::Unexpected::Str(v), &self));
                }
                Ok(Gpus(vec![DeviceRequest {
                    count: Some(Scalar(Some("all".into()))),
                    ..Default::default()
                }]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Gpus, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Gpus)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    pub condition: Option<String>,
    pub delay: Option<String>,
    pub max_attempts: Option<u32>,
    pub window: Option<String>,
}

pub const RESTART_POLICY_KEYS: &[&str] = &["condition", "delay", "max_attempts", "window"];
