//! Top-level `secrets:`/`configs:` and a service's references to them. On one engine Compose
//! delivers each as a read-only file in the container; the agent does the same.

use serde::de::Deserializer;
use serde::Deserialize;

use super::{short_or_long, External, KeyValues, Scalar};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FileDef {
    /// A repo file (relative to the compose file).
    pub file: Option<String>,
    /// The value of a variable of the agent's environment.
    pub environment: Option<String>,
    /// Inline content (configs; also accepted for secrets as Compose does).
    pub content: Option<String>,
    #[serde(default)]
    pub external: External,
    pub name: Option<String>,
    #[serde(default)]
    pub labels: KeyValues,
    /// Swarm-only: accepted, reported as ignored.
    pub template_driver: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: Option<serde_yaml::Value>,
}

pub const FILE_DEF_KEYS: &[&str] = &[
    "file",
    "environment",
    "content",
    "external",
    "name",
    "labels",
    "template_driver",
    "driver",
    "driver_opts",
];

/// `- name` or `- {source, target, uid, gid, mode}` under a service's `secrets:`/`configs:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<Scalar>,
    pub gid: Option<Scalar>,
    #[serde(default, deserialize_with = "super::file_mode")]
    pub mode: Option<u32>,
}

pub const FILE_REF_KEYS: &[&str] = &["source", "target", "uid", "gid", "mode"];

impl FileRef {
    pub fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        short_or_long(
            d,
            "a name from the top-level section or a mapping with source, target, uid, gid, mode",
            |source| {
                Ok(FileRef {
                    source,
                    ..Default::default()
                })
            },
            |r: FileRef| Ok(r),
        )
    }
}

/// Serde entry point for `Vec<FileRef>` fields.
pub fn deserialize_refs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FileRef>, D::Error> {
    struct One(FileRef);
    impl<'de> Deserialize<'de> for One {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            FileRef::read(d).map(One)
        }
    }
    Ok(Vec::<One>::deserialize(d)?
        .into_iter()
        .map(|o| o.0)
        .collect())
}
