//! `desired-state/hosts.yaml`: which slice of the repo each host runs.
//!
//! One repo serves a lab of several hosts: each host name maps to a profile (and optional
//! overrides); `default` applies when no entry matches the host name.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostsFile {
    /// Settings of a stack on every host that runs it (`crate::desired::order`).
    #[serde(default)]
    pub stacks: IndexMap<String, StackSettings>,
    #[serde(default)]
    pub profiles: IndexMap<String, Selection>,
    #[serde(default)]
    pub hosts: IndexMap<String, HostEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StackSettings {
    /// Stacks (`registry`) or services (`registry/registry`) this stack starts after.
    #[serde(default)]
    pub after: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Selection {
    pub stacks: Option<Vec<String>>,
    /// Compose profiles enabled on the host (services without `profiles:` always run).
    pub compose_profiles: Option<Vec<String>>,
    pub routing: Option<bool>,
    pub clusters: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostEntry {
    pub profile: Option<String>,
    pub stacks: Option<Vec<String>>,
    pub compose_profiles: Option<Vec<String>>,
    pub routing: Option<bool>,
    pub clusters: Option<Vec<String>>,
}

/// Keys allowed where an unknown key was found in `hosts.yaml`.
pub fn keys_at(path: &str) -> &'static [&'static str] {
    match path.split('.').count() {
        1 => &["stacks", "profiles", "hosts"],
        3 if path.starts_with("stacks.") => &["after"],
        3 if path.starts_with("profiles.") => {
            &["stacks", "compose_profiles", "routing", "clusters"]
        }
        3 => &[
            "profile",
            "stacks",
            "compose_profiles",
            "routing",
            "clusters",
        ],
        _ => &[],
    }
}

/// What one host runs, resolved from its entry and profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostSelection {
    pub host: String,
    /// The `hosts:` key that matched (`default` when none did).
    pub entry: String,
    pub stacks: Vec<String>,
    pub routing: bool,
    pub clusters: Vec<String>,
    /// Compose profiles enabled for every stack of the host; `*` enables all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compose_profiles: Vec<String>,
    /// `stacks.<stack>.after` of the whole file (stack → what it comes after); constraints on
    /// stacks this host does not run fall away in `DesiredState::dependencies`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub order: BTreeMap<String, Vec<String>>,
}

impl HostsFile {
    /// Resolve `host`. Errors name the yaml path that is wrong.
    pub fn select(&self, host: &str) -> Result<HostSelection, (String, String)> {
        let (key, entry) = match self.hosts.get_key_value(host) {
            Some((k, e)) => (k.clone(), e),
            None => match self.hosts.get_key_value("default") {
                Some((k, e)) => (k.clone(), e),
                None => {
                    return Err((
                        "hosts".into(),
                        format!(
                            "no entry for host {host:?} and no `default` entry (known hosts: {})",
                            self.hosts.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ))
                }
            },
        };
        let profile = match &entry.profile {
            None => Selection::default(),
            Some(p) => self.profiles.get(p).cloned().ok_or_else(|| {
                (
                    format!("hosts.{key}.profile"),
                    format!(
                        "unknown profile {p:?} (profiles: {})",
                        self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?,
        };
        Ok(HostSelection {
            host: host.to_string(),
            entry: key,
            stacks: entry.stacks.clone().or(profile.stacks).unwrap_or_default(),
            compose_profiles: entry
                .compose_profiles
                .clone()
                .or(profile.compose_profiles)
                .unwrap_or_default(),
            routing: entry.routing.or(profile.routing).unwrap_or(false),
            clusters: entry
                .clusters
                .clone()
                .or(profile.clusters)
                .unwrap_or_default(),
            order: self
                .stacks
                .iter()
                .filter(|(_, s)| !s.after.is_empty())
                .map(|(k, s)| (k.clone(), s.after.clone()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
profiles:
  dev: {stacks: [a, b], routing: true, clusters: [c1], compose_profiles: [debug]}
hosts:
  default: {profile: dev}
  lab-1: {profile: dev, stacks: [b], compose_profiles: [tools]}
  bare: {stacks: [z]}
";

    #[test]
    fn selection_table() {
        let f: HostsFile = serde_yaml::from_str(FILE).unwrap();
        let s = f.select("lab-1").unwrap();
        assert_eq!(
            (s.entry.as_str(), s.stacks.clone(), s.routing),
            ("lab-1", vec!["b".to_string()], true)
        );
        assert_eq!(s.clusters, ["c1"]);
        assert_eq!(s.compose_profiles, ["tools"]);
        let s = f.select("laptop").unwrap();
        assert_eq!(s.compose_profiles, ["debug"]);
        assert_eq!((s.entry.as_str(), s.stacks.len()), ("default", 2));
        let s = f.select("bare").unwrap();
        assert_eq!(
            (s.stacks.clone(), s.routing, s.clusters.len()),
            (vec!["z".to_string()], false, 0)
        );
    }

    #[test]
    fn unknown_profile_names_the_path() {
        let f: HostsFile = serde_yaml::from_str("hosts:\n  h: {profile: nope}\n").unwrap();
        let (path, msg) = f.select("h").unwrap_err();
        assert_eq!(path, "hosts.h.profile");
        assert!(msg.contains("unknown profile \"nope\""), "{msg}");
        let f: HostsFile = serde_yaml::from_str("hosts:\n  h: {}\n").unwrap();
        assert!(f
            .select("other")
            .unwrap_err()
            .1
            .contains("no `default` entry"));
    }
}
