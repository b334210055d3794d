//! Top-level `networks:` and `volumes:` definitions, and a service's `networks:` attachments.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::{KeyValues, Scalar};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkAttachment {
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub link_local_ips: Vec<String>,
    pub mac_address: Option<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, Scalar>,
    /// Order in which the container is connected (highest first), as Compose orders them.
    #[serde(default)]
    pub priority: i64,
    /// Which network provides the default gateway (engine API 1.48+).
    pub gw_priority: Option<i64>,
}

pub const ATTACHMENT_KEYS: &[&str] = &[
    "aliases",
    "ipv4_address",
    "ipv6_address",
    "link_local_ips",
    "mac_address",
    "driver_opts",
    "priority",
    "gw_priority",
];

/// `networks: [a, b]` or `networks: {a: {ipv4_address: ..., aliases: [...]}, b: null}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceNetworks(pub IndexMap<String, NetworkAttachment>);

impl<'de> Deserialize<'de> for ServiceNetworks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Map(IndexMap<String, Option<NetworkAttachment>>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::List(l)) => Ok(ServiceNetworks(
                l.into_iter()
                    .map(|n| (n, NetworkAttachment::default()))
                    .collect(),
            )),
            Ok(Raw::Map(m)) => Ok(ServiceNetworks(
                m.into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect(),
            )),
            Err(_) => Err(de::Error::custom(format!(
                "expected a list of network names or a mapping of network: {{{}}}",
                ATTACHMENT_KEYS.join(", ")
            ))),
        }
    }
}

/// `external: true`, or the legacy `external: {name: x}` (docker-compose 1.x files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct External {
    pub external: bool,
    pub name: Option<String>,
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            name: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Named(Named),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Flag(external)) => Ok(External {
                external,
                name: None,
            }),
            Ok(Raw::Named(n)) => Ok(External {
                external: true,
                name: n.name,
            }),
            Err(_) => Err(de::Error::custom(
                "expected true, false or {name: <existing name>}",
            )),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkDef {
    pub name: Option<String>,
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub external: External,
    pub ipam: Option<Ipam>,
    #[serde(default)]
    pub labels: KeyValues,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    pub enable_ipv6: Option<bool>,
    pub enable_ipv4: Option<bool>,
}

pub const NETWORK_KEYS: &[&str] = &[
    "name",
    "driver",
    "driver_opts",
    "external",
    "ipam",
    "labels",
    "internal",
    "attachable",
    "enable_ipv6",
    "enable_ipv4",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Ipam {
    pub driver: Option<String>,
    #[serde(default)]
    pub config: Vec<IpamConfig>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

pub const IPAM_KEYS: &[&str] = &["driver", "config", "options"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IpamConfig {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, String>,
}

pub const IPAM_CONFIG_KEYS: &[&str] = &["subnet", "ip_range", "gateway", "aux_addresses"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct VolumeDef {
    pub name: Option<String>,
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub external: External,
    #[serde(default)]
    pub labels: KeyValues,
}

pub const VOLUME_KEYS: &[&str] = &["name", "driver", "driver_opts", "external", "labels"];
