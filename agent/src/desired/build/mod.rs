//! From the parsed Compose files to `DesiredState`: Compose's defaults and naming rules applied,
//! repo paths checked and digested, values with units checked. Problems are collected, never
//! thrown.

mod binds;
mod files;
mod image;
mod replicas;
mod runtime;
mod service;
pub mod units;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use super::compose::{NetworkDef, Service};
use super::load::{Loaded, LoadedStack, SourceFile};
use super::spec::*;
use crate::diag::Diagnostics;
use crate::input::lines;

pub use units::parse_duration;

pub fn build(loaded: &Loaded) -> (DesiredState, Diagnostics) {
    let mut d = Diagnostics::default();
    let mut state = DesiredState {
        root: loaded.root.clone(),
        selection: loaded.selection.clone(),
        networks: BTreeMap::new(),
        external_networks: BTreeSet::new(),
        volumes: BTreeMap::new(),
        services: Vec::new(),
        sources: BTreeMap::new(),
        warnings: Vec::new(),
    };
    for stack in &loaded.stacks {
        build_stack(&loaded.root, stack, &mut state, &mut d);
        state
            .sources
            .insert(stack.name.clone(), stack.source.clone());
    }
    (state, d)
}

/// Diagnostics for one compose file.
pub(super) struct Report<'a> {
    file: &'a SourceFile,
    d: &'a mut Diagnostics,
}

impl Report<'_> {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.d
            .error(&self.file.rel, Some(&self.file.lines), path, msg)
    }

    fn warn(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.d
            .warn(&self.file.rel, Some(&self.file.lines), path, msg)
    }

    /// The value, or `None` with the error reported at `path`.
    fn check<T>(&mut self, path: String, v: Result<T, String>) -> Option<T> {
        v.map_err(|e| self.err(path, e)).ok()
    }
}

/// Names of the stack's resources as Docker will know them.
pub(super) struct StackNames {
    project: String,
    /// service -> container name (the first container of the service).
    containers: BTreeMap<String, String>,
    networks: BTreeMap<String, String>,
    volumes: BTreeMap<String, String>,
}

impl StackNames {
    fn container(&self, service: &str) -> Option<&str> {
        self.containers.get(service).map(String::as_str)
    }
}

/// Compose's naming: `name:` (or the legacy `external: {name:}`) wins, else `<project>_<key>`;
/// external resources keep their key.
fn full_name(
    project: &str,
    key: &str,
    name: Option<&str>,
    external: &crate::desired::compose::External,
) -> String {
    match (name.or(external.name.as_deref()), external.external) {
        (Some(n), _) => n.to_string(),
        (None, true) => key.to_string(),
        (None, false) => format!("{project}_{key}"),
    }
}

/// compose-go's rule for project names: lowercase letters, digits, `-` and `_`, starting with a
/// letter or digit.
pub fn valid_project_name(n: &str) -> bool {
    n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_container_name(n: &str) -> bool {
    n.len() >= 2
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn build_stack(root: &Path, stack: &LoadedStack, state: &mut DesiredState, d: &mut Diagnostics) {
    let mut r = Report {
        file: &stack.source,
        d,
    };
    if !valid_project_name(&stack.project) {
        let (path, hint) = if stack.named {
            ("name", "")
        } else {
            (
                "",
                " (the stack directory name is the project name; set `name:` to choose another)",
            )
        };
        r.err(
            path,
            format!(
                "{:?} is not a valid project name: lowercase letters, digits, '-' and '_', starting with a letter or digit{hint}",
                stack.project
            ),
        );
    }

    let mut names = StackNames {
        project: stack.project.clone(),
        containers: BTreeMap::new(),
        networks: BTreeMap::new(),
        volumes: BTreeMap::new(),
    };
    // The stack's file and those it includes form one project: names are shared, while each
    // file keeps its own directory and lines.
    let parts = stack.parts();
    let mut files = files::Defs::default();
    for part in &parts {
        let mut r = Report {
            file: &part.source,
            d,
        };
        define_resources(part, &mut names, state, &mut r);
        files.extend(files::Defs::new(root, part, &part.env, &mut r));
    }

    let profiles = &state.selection.compose_profiles;
    let mut enabled: Vec<(&LoadedStack, &String, &Service)> = Vec::new();
    for part in &parts {
        for (svc_name, svc) in &part.services {
            if enabled.iter().any(|(_, n, _)| *n == svc_name) {
                d.error(
                    &part.source.rel,
                    Some(&part.source.lines),
                    lines::join("services", svc_name),
                    format!("service {svc_name:?} is defined twice in the stack"),
                );
                continue;
            }
            if svc.profiles.is_empty()
                || profiles
                    .iter()
                    .any(|p| p == "*" || svc.profiles.contains(p))
            {
                enabled.push((part, svc_name, svc));
            }
        }
    }
    for (_, svc_name, svc) in &enabled {
        let container = svc
            .container_name
            .clone()
            .unwrap_or_else(|| format!("{}-{}-1", stack.project, svc_name));
        names.containers.insert(svc_name.to_string(), container);
    }

    for (part, svc_name, svc) in enabled {
        let base = lines::join("services", svc_name);
        // Compose attaches services without `networks:` (and without a network_mode) to the
        // project's default network; a service may also name it (`networks: [default, back]`)
        // without the file declaring it.
        if (svc.networks.0.is_empty() || svc.networks.0.contains_key("default"))
            && svc.network_mode.is_none()
            && !names.networks.contains_key("default")
        {
            let name = format!("{}_default", stack.project);
            names.networks.insert("default".into(), name.clone());
            state.networks.insert(
                name.clone(),
                NetworkSpec {
                    name,
                    driver: "bridge".into(),
                    subnet: None,
                    gateway: None,
                    labels: BTreeMap::new(),
                    options: NetworkOptions::default(),
                    stack: stack.name.clone(),
                    project: stack.project.clone(),
                    key: "default".into(),
                },
            );
        }
        let ctx = service::Ctx {
            root,
            stack: part,
            env: &part.env,
            names: &names,
            files: &files,
        };
        let mut r = Report {
            file: &part.source,
            d,
        };
        let spec = service::build_service(&ctx, svc_name, svc, &base, &mut r);
        state.services.push(spec);
    }
}

/// One file's top-level networks and volumes, named as Compose names them.
fn define_resources(
    part: &LoadedStack,
    names: &mut StackNames,
    state: &mut DesiredState,
    r: &mut Report,
) {
    for (key, def) in &part.networks {
        let ext = &def.external;
        let name = full_name(&part.project, key, def.name.as_deref(), ext);
        names.networks.insert(key.clone(), name.clone());
        if ext.external {
            state.external_networks.insert(name);
            continue;
        }
        let spec = network_spec(name.clone(), key, def, part, r);
        state.networks.insert(name, spec);
    }
    for (key, def) in &part.volumes {
        let ext = &def.external;
        let name = full_name(&part.project, key, def.name.as_deref(), ext);
        names.volumes.insert(key.clone(), name.clone());
        if !ext.external {
            let driver_opts = scalars(&def.driver_opts);
            let bind = driver_opts
                .get("o")
                .is_some_and(|o| o.split(',').any(|f| f == "bind" || f == "rbind"));
            // compose resolves it in the project directory, where the agent keeps a repo copy
            // or a data directory: a bind mount of the path says which one it is.
            if let Some(d) = driver_opts
                .get("device")
                .filter(|d| bind && !d.starts_with('/'))
            {
                r.err(
                    format!("volumes.{key}.driver_opts.device"),
                    format!("a bind volume of the relative path {d:?} is not supported: mount it as a bind (`{d}:/target` in the service's volumes), which keeps its data in the stack's data directory"),
                );
            }
            state.volumes.insert(
                name.clone(),
                VolumeSpec {
                    name,
                    labels: def.labels.filled(),
                    driver: def.driver.clone(),
                    driver_opts,
                    stack: part.name.clone(),
                    project: part.project.clone(),
                    key: key.clone(),
                },
            );
        }
    }
}

fn scalars(m: &BTreeMap<String, crate::desired::compose::Scalar>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| (k.clone(), v.text().to_string()))
        .collect()
}

fn network_spec(
    name: String,
    key: &str,
    def: &NetworkDef,
    part: &LoadedStack,
    r: &mut Report,
) -> NetworkSpec {
    let configs = def
        .ipam
        .as_ref()
        .map(|i| i.config.as_slice())
        .unwrap_or(&[]);
    let mut subnet = None;
    let mut gateway = None;
    for (i, c) in configs.iter().enumerate() {
        let path = format!("networks.{key}.ipam.config[{i}]");
        if let Some(s) = &c.subnet {
            let parsed = r.check(
                format!("{path}.subnet"),
                s.parse::<ipnet::IpNet>()
                    .map_err(|_| format!("{s:?} is not a CIDR subnet (e.g. 172.23.0.0/16)")),
            );
            if i == 0 {
                subnet = parsed;
            }
        }
        if let Some(g) = &c.gateway {
            let parsed = r.check(
                format!("{path}.gateway"),
                g.parse::<IpAddr>()
                    .map_err(|_| format!("{g:?} is not an IP address")),
            );
            if i == 0 {
                gateway = parsed;
            }
        }
        if let Some(range) = &c.ip_range {
            r.check(
                format!("{path}.ip_range"),
                range
                    .parse::<ipnet::IpNet>()
                    .map(|_| ())
                    .map_err(|_| format!("{range:?} is not a CIDR range")),
            );
        }
    }
    // Only the options a user set: a plain network keeps the create request it always had.
    let ipam_config = if configs.len() > 1
        || configs
            .iter()
            .any(|c| c.ip_range.is_some() || !c.aux_addresses.is_empty())
    {
        configs
            .iter()
            .map(|c| IpamConfigSpec {
                subnet: c.subnet.clone(),
                ip_range: c.ip_range.clone(),
                gateway: c.gateway.clone(),
                aux_addresses: c.aux_addresses.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    NetworkSpec {
        name,
        driver: def.driver.clone().unwrap_or_else(|| "bridge".into()),
        subnet,
        gateway,
        labels: def.labels.filled(),
        options: NetworkOptions {
            driver_opts: scalars(&def.driver_opts),
            internal: def.internal,
            attachable: def.attachable,
            enable_ipv6: def.enable_ipv6,
            enable_ipv4: def.enable_ipv4,
            ipam_driver: def.ipam.as_ref().and_then(|i| i.driver.clone()),
            ipam_options: def
                .ipam
                .as_ref()
                .map(|i| i.options.clone())
                .unwrap_or_default(),
            ipam_config,
        },
        stack: part.name.clone(),
        project: part.project.clone(),
        key: key.to_string(),
    }
}

pub(crate) fn rel_to(root: &Path, real: &Path) -> String {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    real.strip_prefix(&root)
        .unwrap_or(real)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_compose_and_docker_check_them() {
        assert!(valid_project_name("my-app_2"));
        assert!(!valid_project_name("My_App"));
        assert!(!valid_project_name("-x"));
        assert!(!valid_project_name(""));
        assert!(valid_container_name("web.1_a-b"));
        assert!(!valid_container_name("x"));
        assert!(!valid_container_name("-bad"));
        assert!(!valid_container_name("a b"));
    }
}
