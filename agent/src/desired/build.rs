//! From the parsed Compose files to `DesiredState`: Compose's defaults and naming rules applied,
//! repo paths checked and digested. Problems are collected, never thrown.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use super::compose::{KeyValues, MountKind, Service};
use super::interpolate::{parse_dotenv, Env};
use super::lines;
use super::load::{Loaded, LoadedStack};
use super::paths::{self, resolve_inside};
use super::spec::*;
use crate::diag::Diagnostics;

const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];

pub fn build(loaded: &Loaded, env: &Env) -> (DesiredState, Diagnostics) {
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
        build_stack(&loaded.root, stack, env, &mut state, &mut d);
        state
            .sources
            .insert(stack.name.clone(), stack.source.clone());
    }
    (state, d)
}

/// Compose's naming: `name:` wins, else `<project>_<key>`; external resources keep their key.
fn full_name(project: &str, key: &str, name: Option<&str>, external: bool) -> String {
    match (name, external) {
        (Some(n), _) => n.to_string(),
        (None, true) => key.to_string(),
        (None, false) => format!("{project}_{key}"),
    }
}

fn labels(kv: &KeyValues) -> BTreeMap<String, String> {
    kv.0.iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect()
}

fn build_stack(
    root: &Path,
    stack: &LoadedStack,
    env: &Env,
    state: &mut DesiredState,
    d: &mut Diagnostics,
) {
    let file = &stack.source;
    let err = |d: &mut Diagnostics, path: String, msg: String| {
        d.error(&file.rel, Some(&file.lines), path, msg)
    };

    let mut net_names = BTreeMap::new();
    for (key, def) in &stack.networks {
        let name = full_name(&stack.project, key, def.name.as_deref(), def.external);
        net_names.insert(key.clone(), name.clone());
        if def.external {
            state.external_networks.insert(name);
            continue;
        }
        let cfg = def.ipam.as_ref().and_then(|i| i.config.first());
        let subnet =
            cfg.and_then(|c| c.subnet.as_ref())
                .and_then(|s| match s.parse::<ipnet::IpNet>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        err(
                            d,
                            format!("networks.{key}.ipam.config[0].subnet"),
                            format!("{s:?} is not a CIDR subnet (e.g. 172.23.0.0/16)"),
                        );
                        None
                    }
                });
        let gateway =
            cfg.and_then(|c| c.gateway.as_ref())
                .and_then(|g| match g.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        err(
                            d,
                            format!("networks.{key}.ipam.config[0].gateway"),
                            format!("{g:?} is not an IP address"),
                        );
                        None
                    }
                });
        state.networks.insert(
            name.clone(),
            NetworkSpec {
                name,
                driver: def.driver.clone().unwrap_or_else(|| "bridge".into()),
                subnet,
                gateway,
                labels: labels(&def.labels),
                stack: stack.name.clone(),
                key: key.clone(),
            },
        );
    }
    let mut vol_names = BTreeMap::new();
    for (key, def) in &stack.volumes {
        let name = full_name(&stack.project, key, def.name.as_deref(), def.external);
        vol_names.insert(key.clone(), name.clone());
        if !def.external {
            state.volumes.insert(
                name.clone(),
                VolumeSpec {
                    name,
                    labels: labels(&def.labels),
                    stack: stack.name.clone(),
                },
            );
        }
    }

    for (svc_name, svc) in &stack.services {
        let base = lines::join("services", svc_name);
        // Compose attaches services without `networks:` to the project's default network.
        if svc.networks.0.is_empty() && !net_names.contains_key("default") {
            let name = format!("{}_default", stack.project);
            net_names.insert("default".into(), name.clone());
            state.networks.insert(
                name.clone(),
                NetworkSpec {
                    name,
                    driver: "bridge".into(),
                    subnet: None,
                    gateway: None,
                    labels: BTreeMap::new(),
                    stack: stack.name.clone(),
                    key: "default".into(),
                },
            );
        }
        let spec = build_service(
            root, stack, svc_name, svc, &base, env, &net_names, &vol_names, d,
        );
        state.services.push(spec);
    }
}

#[allow(clippy::too_many_arguments)]
fn build_service(
    root: &Path,
    stack: &LoadedStack,
    name: &str,
    svc: &Service,
    base: &str,
    env: &Env,
    net_names: &BTreeMap<String, String>,
    vol_names: &BTreeMap<String, String>,
    d: &mut Diagnostics,
) -> ServiceSpec {
    // Built even when parts are rejected: cross-service checks still run on what is left,
    // and the errors recorded keep it from ever being applied.
    let file = &stack.source;
    let err = |d: &mut Diagnostics, path: String, msg: String| {
        d.error(&file.rel, Some(&file.lines), path, msg)
    };

    let build = svc.build.as_ref().and_then(|b| {
        let path = format!("{base}.build.context");
        match resolve_inside(root, &stack.dir, &b.context) {
            Ok(context) => match paths::digest(&context) {
                Ok(context_digest) => Some(BuildSpec {
                    context,
                    context_rel: b.context.clone(),
                    dockerfile: b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into()),
                    args: b
                        .args
                        .0
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.clone()
                                    .or_else(|| env.get(k).map(str::to_string))
                                    .unwrap_or_default(),
                            )
                        })
                        .collect(),
                    context_digest,
                }),
                Err(e) => {
                    err(d, path, format!("cannot read build context: {e}"));
                    None
                }
            },
            Err(e) => {
                err(d, path, e.to_string());
                None
            }
        }
    });
    let image = match (&svc.image, &build) {
        (Some(i), _) => i.clone(),
        (None, Some(b)) => format!("{}-{}:{}", stack.project, name, &b.context_digest[..12]),
        (None, None) => {
            err(
                d,
                base.to_string(),
                "a service needs `image` or `build`".into(),
            );
            String::new()
        }
    };

    // env_file first, `environment` overrides, as Compose does.
    let mut environment = BTreeMap::new();
    let mut env_files = BTreeMap::new();
    for (i, f) in svc.env_file.iter().flat_map(|o| o.0.iter()).enumerate() {
        let path = if svc.env_file.as_ref().is_some_and(|o| o.0.len() > 1) {
            lines::index(&format!("{base}.env_file"), i)
        } else {
            format!("{base}.env_file")
        };
        match resolve_inside(root, &stack.dir, f) {
            Ok(real) => match std::fs::read_to_string(&real) {
                Ok(text) => {
                    environment.extend(parse_dotenv(&text));
                    env_files.insert(
                        rel_to(root, &real),
                        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
                    );
                }
                Err(e) => err(d, path, format!("cannot read env_file: {e}")),
            },
            Err(e) => err(d, path, e.to_string()),
        }
    }
    for (k, v) in &svc.environment.0 {
        match v.clone().or_else(|| env.get(k).map(str::to_string)) {
            Some(v) => {
                environment.insert(k.clone(), v);
            }
            // A bare `KEY` that is unset is left out, as Compose does.
            None => {
                environment.remove(k);
            }
        }
    }

    let ports = svc
        .ports
        .iter()
        .map(|p| PortSpec {
            host_ip: p.host_ip.clone().unwrap_or_default(),
            host_port: p.published,
            container_port: p.target,
            protocol: p.protocol,
        })
        .collect();

    let mut expose = std::collections::BTreeSet::new();
    for (i, e) in svc.expose.iter().enumerate() {
        match super::compose::parse_expose(e.0.as_deref().unwrap_or_default()) {
            Ok(p) => {
                expose.insert(p);
            }
            Err(msg) => err(d, lines::index(&format!("{base}.expose"), i), msg),
        }
    }

    let mut mounts = Vec::new();
    for (i, m) in svc.volumes.iter().enumerate() {
        let path = lines::index(&format!("{base}.volumes"), i);
        let source = match (m.kind, &m.source) {
            (_, None) => MountSource::Anonymous,
            (MountKind::Volume, Some(v)) => match vol_names.get(v) {
                Some(full) => MountSource::Volume { name: full.clone() },
                None => {
                    err(
                        d,
                        path,
                        format!("named volume {v:?} is not declared under top-level `volumes:`"),
                    );
                    continue;
                }
            },
            (MountKind::Bind, Some(src)) if DOCKER_SOCKETS.contains(&src.as_str()) => {
                if !svc.x_macula.allow_docker_socket {
                    err(d, path, format!("binding the Docker socket {src} gives the container root on the host; set `x-macula: {{allow_docker_socket: true}}` on the service to allow it"));
                    continue;
                }
                MountSource::Host { path: src.clone() }
            }
            (MountKind::Bind, Some(src)) => match resolve_inside(root, &stack.dir, src) {
                Ok(real) => match paths::digest(&real) {
                    Ok(digest) => MountSource::Repo {
                        path: rel_to(root, &real),
                        digest,
                        local: real,
                    },
                    Err(e) => {
                        err(d, path, format!("cannot read bind source {src:?}: {e}"));
                        continue;
                    }
                },
                Err(e) => {
                    err(d, path, e.to_string());
                    continue;
                }
            },
        };
        mounts.push(MountSpec {
            source,
            target: m.target.clone(),
            read_only: m.read_only,
        });
    }

    let mut networks = BTreeMap::new();
    let attachments: Vec<(String, _)> = if svc.networks.0.is_empty() {
        vec![("default".to_string(), Default::default())]
    } else {
        svc.networks
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    for (key, att) in attachments {
        let path = format!("{base}.networks.{key}");
        let Some(full) = net_names.get(&key) else {
            err(
                d,
                path,
                format!("network {key:?} is not declared under top-level `networks:`"),
            );
            continue;
        };
        let ipv4_address = match &att.ipv4_address {
            None => None,
            Some(a) => match a.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    err(
                        d,
                        format!("{path}.ipv4_address"),
                        format!("{a:?} is not an IPv4 address"),
                    );
                    None
                }
            },
        };
        networks.insert(
            full.clone(),
            AttachSpec {
                ipv4_address,
                aliases: att.aliases.clone(),
            },
        );
    }

    let healthcheck = match &svc.healthcheck {
        None => None,
        Some(h) if h.disable => Some(HealthSpec {
            test: vec!["NONE".into()],
            interval_ns: None,
            timeout_ns: None,
            retries: None,
            start_period_ns: None,
            start_interval_ns: None,
        }),
        Some(h) => {
            let mut dur = |field: &str, v: &Option<String>| -> Option<i64> {
                let v = v.as_ref()?;
                match parse_duration(v) {
                    Ok(ns) => Some(ns),
                    Err(e) => {
                        err(d, format!("{base}.healthcheck.{field}"), e);
                        None
                    }
                }
            };
            let interval_ns = dur("interval", &h.interval);
            let timeout_ns = dur("timeout", &h.timeout);
            let start_period_ns = dur("start_period", &h.start_period);
            let start_interval_ns = dur("start_interval", &h.start_interval);
            Some(HealthSpec {
                test: h.test.as_ref().map(|t| t.0.clone()).unwrap_or_default(),
                interval_ns,
                timeout_ns,
                retries: h.retries,
                start_period_ns,
                start_interval_ns,
            })
        }
    };

    let restart = svc.restart.clone().unwrap_or_else(|| "no".into());
    if !(matches!(
        restart.as_str(),
        "no" | "always" | "unless-stopped" | "on-failure"
    ) || restart
        .strip_prefix("on-failure:")
        .is_some_and(|n| n.parse::<u32>().is_ok()))
    {
        err(
            d,
            format!("{base}.restart"),
            format!(
                "{restart:?} is not a restart policy (no, always, unless-stopped, on-failure[:N])"
            ),
        );
    }

    ServiceSpec {
        stack: stack.name.clone(),
        service: name.to_string(),
        project: stack.project.clone(),
        depends_on: svc.depends_on.0.clone(),
        container_name: svc
            .container_name
            .clone()
            .unwrap_or_else(|| format!("{}-{}-1", stack.project, name)),
        image,
        build,
        command: svc.command.as_ref().map(|c| c.0.clone()),
        entrypoint: svc.entrypoint.as_ref().map(|c| c.0.clone()),
        environment,
        env_files,
        ports,
        expose,
        mounts,
        networks,
        healthcheck,
        restart,
        labels: labels(&svc.labels),
        user: svc.user.as_ref().and_then(|u| u.0.clone()),
        working_dir: svc.working_dir.clone(),
        hostname: svc.hostname.clone(),
        cap_add: svc.cap_add.iter().cloned().collect(),
        extra_hosts: svc.extra_hosts.0.clone(),
    }
}

fn rel_to(root: &Path, real: &Path) -> String {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    real.strip_prefix(&root)
        .unwrap_or(real)
        .to_string_lossy()
        .into_owned()
}

/// Go-style durations as Compose writes them: `1m30s`, `500ms`, `10s`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 30s, 1m30s, 500ms)");
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = tail;
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5 minutes").is_err());
    }
}
