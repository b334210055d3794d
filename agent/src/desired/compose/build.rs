//! A service's `build:`: a context path, or the long form.

use serde::de::Deserializer;
use serde::Deserialize;

use super::{short_or_long, ExtraHosts, KeyValues, OneOrMany, Scalar, Ulimit};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Build {
    #[serde(default = "dot")]
    pub context: String,
    pub dockerfile: Option<String>,
    /// A Dockerfile written in the compose file (Compose Specification; not in docker-compose 1.29).
    pub dockerfile_inline: Option<String>,
    #[serde(default)]
    pub args: KeyValues,
    pub target: Option<String>,
    #[serde(default)]
    pub labels: KeyValues,
    pub network: Option<String>,
    pub shm_size: Option<Scalar>,
    #[serde(default)]
    pub extra_hosts: ExtraHosts,
    #[serde(default)]
    pub cache_from: Vec<String>,
    #[serde(default)]
    pub no_cache: bool,
    #[serde(default)]
    pub pull: bool,
    /// Several platforms need BuildKit's multi-platform output; one engine builds for one.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Extra tags the built image also gets.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub ulimits: indexmap::IndexMap<String, Ulimit>,
    pub isolation: Option<String>,
    /// BuildKit-only features: accepted so files load, reported as ignored (the agent builds
    /// with the engine's classic build API).
    pub cache_to: Option<OneOrMany>,
    pub ssh: Option<serde_yaml::Value>,
    pub secrets: Option<serde_yaml::Value>,
    pub additional_contexts: Option<serde_yaml::Value>,
    pub entitlements: Option<serde_yaml::Value>,
    pub privileged: Option<bool>,
}

pub const BUILD_KEYS: &[&str] = &[
    "context",
    "dockerfile",
    "dockerfile_inline",
    "args",
    "target",
    "labels",
    "network",
    "shm_size",
    "extra_hosts",
    "cache_from",
    "no_cache",
    "pull",
    "platforms",
    "tags",
    "ulimits",
    "isolation",
    "cache_to",
    "ssh",
    "secrets",
    "additional_contexts",
    "entitlements",
    "privileged",
];

/// Long-form keys with no effect on the engine's classic build API.
pub const BUILD_IGNORED: &[&str] = &[
    "cache_to",
    "ssh",
    "secrets",
    "additional_contexts",
    "entitlements",
    "privileged",
];

impl Build {
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        let set = [
            self.cache_to.is_some(),
            self.ssh.is_some(),
            self.secrets.is_some(),
            self.additional_contexts.is_some(),
            self.entitlements.is_some(),
            self.privileged.is_some(),
        ];
        BUILD_IGNORED
            .iter()
            .zip(set)
            .filter(|(_, s)| *s)
            .map(|(k, _)| *k)
            .collect()
    }
}

/// Read through `short_or_long` so an unknown key inside `build:` is named with its path.
pub fn deserialize_build<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Build>, D::Error> {
    short_or_long(
        d,
        "a context path or a mapping with context, dockerfile, args, target, ...",
        |context| {
            Ok(Some(Build {
                context,
                ..Default::default()
            }))
        },
        |b: Build| Ok(Some(b)),
    )
}

fn dot() -> String {
    ".".into()
}
