//! The Compose Specification, as written by users. These types mirror the file (short and long
//! syntaxes both accepted); `desired::build` turns them into the normalised spec the planner uses.
//!
//! Values with units (byte sizes, durations) stay text here and are checked in `desired::build`,
//! so one bad value is a diagnostic at its own path instead of a lost service.
//!
//! Unknown keys are not rejected by serde here: the loader collects every ignored key with
//! `serde_ignored`, so one run reports all of them with the keys that are supported.

mod build;
pub mod cast;
mod deploy;
mod files;
mod keys;
pub mod merge;
mod mounts;
mod network;
mod ports;
mod service;

use std::collections::BTreeMap;
use std::marker::PhantomData;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

pub use build::Build;
pub use deploy::{Deploy, DeviceRequest, Gpus, Resource, Resources, RestartPolicy};
pub use files::{FileDef, FileRef};
pub use keys::{supported_keys_at, SERVICE_KEYS, TOP_LEVEL_KEYS};
pub use mounts::{Mount, MountKind};
pub use network::{
    External, Ipam, IpamConfig, NetworkAttachment, NetworkDef, ServiceNetworks, VolumeDef,
};
pub use ports::{parse_expose, parse_short_port, Port, PortEntry, Protocol};
pub use service::{
    Condition, DependsOn, Device, EnvFile, Extends, ExtraHosts, HealthTest, Healthcheck, Hook,
    Logging, Service, Ulimit, XMacula,
};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ComposeFile {
    pub name: Option<String>,
    #[serde(default)]
    pub services: IndexMap<String, Service>,
    #[serde(default)]
    pub networks: IndexMap<String, Option<NetworkDef>>,
    #[serde(default)]
    pub volumes: IndexMap<String, Option<VolumeDef>>,
}

/// A YAML scalar read as text (`3`, `true` and `"3"` all become strings), as Compose does
/// for environment values, labels and the like.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scalar(pub Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        scalar_text(&v).map(Scalar).map_err(|what| {
            de::Error::custom(format!(
                "expected a string, number or boolean, found {what}"
            ))
        })
    }
}

impl Scalar {
    pub fn text(&self) -> &str {
        self.0.as_deref().unwrap_or_default()
    }
}

fn scalar_text(v: &serde_yaml::Value) -> Result<Option<String>, &'static str> {
    use serde_yaml::Value as V;
    match v {
        V::Null => Ok(None),
        V::Bool(b) => Ok(Some(b.to_string())),
        V::Number(n) => Ok(Some(n.to_string())),
        V::String(s) => Ok(Some(s.clone())),
        V::Sequence(_) => Err("a list"),
        V::Mapping(_) => Err("a mapping"),
        V::Tagged(_) => Err("a tagged value"),
    }
}

/// `KEY: value` mapping or `["KEY=value", "KEY"]` list (environment, labels, build args).
/// A value of `None` means "take it from the environment" (Compose's bare `KEY`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValues(pub BTreeMap<String, Option<String>>);

impl<'de> Deserialize<'de> for KeyValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Map(BTreeMap<String, Scalar>),
            List(Vec<String>),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            de::Error::custom("expected a mapping of KEY: value or a list of \"KEY=value\" strings")
        })?;
        Ok(KeyValues(match raw {
            Raw::Map(m) => m.into_iter().map(|(k, v)| (k, v.0)).collect(),
            Raw::List(l) => l
                .into_iter()
                .map(|item| match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (item, None),
                })
                .collect(),
        }))
    }
}

impl KeyValues {
    /// Every entry with a value; a bare `KEY` becomes an empty value (labels, sysctls).
    pub fn filled(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect()
    }
}

/// A string, or a list of scalars read as strings: the shape of `env_file`, `command`,
/// `entrypoint` and `healthcheck.test`. Each caller decides what a lone string means.
enum StrOrList {
    One(String),
    Many(Vec<String>),
}

impl StrOrList {
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<Scalar>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::One(s)) => Ok(StrOrList::One(s)),
            Ok(Raw::Many(v)) => Ok(StrOrList::Many(
                v.into_iter().map(|s| s.0.unwrap_or_default()).collect(),
            )),
            Err(_) => Err(de::Error::custom("expected a string or a list of strings")),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(OneOrMany(match StrOrList::read(d)? {
            StrOrList::One(s) => vec![s],
            StrOrList::Many(v) => v,
        }))
    }
}

/// `command`/`entrypoint`: a string (split like a shell would, no shell run) or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine(pub Vec<String>);

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StrOrList::read(d)? {
            StrOrList::One(s) => shell_words::split(&s)
                .map(CommandLine)
                .map_err(|e| de::Error::custom(format!("cannot split command {s:?}: {e}"))),
            StrOrList::Many(v) => Ok(CommandLine(v)),
        }
    }
}

/// A file mode as compose-go reads it: decimal, or octal with a leading `0`/`0o` (`0400`).
fn file_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let s = Scalar::deserialize(d)?;
    let Some(t) = s.0 else { return Ok(None) };
    let octal = t
        .strip_prefix("0o")
        .or_else(|| t.strip_prefix('0').filter(|r| !r.is_empty()));
    match octal {
        Some(o) => u32::from_str_radix(o, 8),
        None => t.parse(),
    }
    .map(Some)
    .map_err(|_| de::Error::custom(format!("{t:?} is not a file mode (e.g. 0440)")))
}

/// A value written as a scalar (the short syntax) or a mapping (the long syntax). The mapping
/// is read through the caller's deserializer, so unknown keys and type errors inside it keep
/// their full path (an untagged enum would lose both).
fn short_or_long<'de, D, T, L>(
    d: D,
    expecting: &'static str,
    short: impl FnOnce(String) -> Result<T, String>,
    long: impl FnOnce(L) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    L: Deserialize<'de>,
{
    struct V<S, G, L> {
        expecting: &'static str,
        short: S,
        long: G,
        _l: PhantomData<L>,
    }
    impl<'de, S, G, T, L> Visitor<'de> for V<S, G, L>
    where
        S: FnOnce(String) -> Result<T, String>,
        G: FnOnce(L) -> Result<T, String>,
        L: Deserialize<'de>,
    {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.short)(v.to_string()).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            (self.short)(v.to_string()).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            (self.short)(v.to_string()).map_err(E::custom)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            (self.short)(v.to_string()).map_err(E::custom)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
            (self.short)(v.to_string()).map_err(E::custom)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let l = L::deserialize(de::value::MapAccessDeserializer::new(map))?;
            (self.long)(l).map_err(de::Error::custom)
        }
    }
    d.deserialize_any(V {
        expecting,
        short,
        long,
        _l: PhantomData,
    })
}

#[cfg(test)]
mod tests;
