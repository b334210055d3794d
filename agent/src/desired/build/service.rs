//! One service to its `ServiceSpec`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use super::units::{parse_bytes, parse_duration};
use super::{
    binds, files, image, rel_to, replicas, runtime, valid_container_name, Report, StackNames,
};
use crate::desired::compose::{Condition, MountKind, Service};
use crate::desired::load::LoadedStack;
use crate::desired::paths::{self, resolve_inside};
use crate::desired::spec::*;
use crate::input::interpolate::{parse_dotenv, Env};
use crate::input::lines;

pub(super) struct Ctx<'a> {
    pub root: &'a Path,
    pub stack: &'a LoadedStack,
    pub env: &'a Env,
    pub names: &'a StackNames,
    pub files: &'a files::Defs,
}

pub(super) fn build_service(
    ctx: &Ctx,
    name: &str,
    svc: &Service,
    base: &str,
    r: &mut Report,
) -> ServiceSpec {
    // Built even when parts are rejected: cross-service checks still run on what is left,
    // and the errors recorded keep it from ever being applied.
    let (root, stack) = (ctx.root, ctx.stack);
    warn_ignored(svc, base, r);

    let build = svc
        .build
        .as_ref()
        .and_then(|b| image::build_spec(ctx, b, svc, base, r));
    let image = match (&svc.image, &build) {
        (Some(i), _) if i.trim().is_empty() => {
            r.err(
                format!("{base}.image"),
                "image is empty: name an image or remove the key and use `build`",
            );
            String::new()
        }
        (Some(i), _) => i.clone(),
        (None, Some(b)) => format!("{}-{}:{}", stack.project, name, &b.context_digest[..12]),
        (None, None) => {
            r.err(base, "a service needs `image` or `build`");
            String::new()
        }
    };
    let pull_policy = match svc.pull_policy.as_deref() {
        None | Some("missing") | Some("if_not_present") => PullPolicy::Missing,
        Some("always") => PullPolicy::Always,
        Some("never") => PullPolicy::Never,
        Some("build") => PullPolicy::Build,
        Some(p) => {
            r.err(
                format!("{base}.pull_policy"),
                format!(
                    "{p:?} is not a pull policy (always, never, missing, if_not_present, build)"
                ),
            );
            PullPolicy::Missing
        }
    };
    if pull_policy == PullPolicy::Build && build.is_none() {
        r.err(
            format!("{base}.pull_policy"),
            "pull_policy: build needs a `build:` section",
        );
    }

    let container_name = match &svc.container_name {
        Some(n) if !valid_container_name(n) => {
            r.err(
                format!("{base}.container_name"),
                format!("{n:?} is not a valid container name: at least two of a-z, A-Z, 0-9, '_', '.', '-', starting with a letter or digit"),
            );
            n.clone()
        }
        Some(n) => n.clone(),
        None => format!("{}-{}-1", stack.project, name),
    };

    // env_file first, `environment` overrides, as Compose does.
    let mut environment = BTreeMap::new();
    let mut env_files = BTreeMap::new();
    let many = svc.env_file.as_ref().is_some_and(|o| o.0.len() > 1);
    for (i, f) in svc.env_file.iter().flat_map(|o| o.0.iter()).enumerate() {
        let path = if many {
            lines::index(&format!("{base}.env_file"), i)
        } else {
            format!("{base}.env_file")
        };
        match resolve_inside(root, &stack.dir, &f.path) {
            Ok(real) => match std::fs::read_to_string(&real) {
                Ok(text) => {
                    environment.extend(parse_dotenv(&text));
                    env_files.insert(
                        rel_to(root, &real),
                        paths::digest(&real).unwrap_or_default(),
                    );
                }
                Err(e) => r.err(path, format!("cannot read env_file: {e}")),
            },
            // `required: false` (Compose Specification): a missing file is skipped.
            Err(paths::PathError::Missing { .. }) if !f.required => {}
            Err(e) => r.err(path, e.to_string()),
        }
    }
    for (k, v) in &svc.environment.0 {
        match v.clone().or_else(|| ctx.env.get(k).map(str::to_string)) {
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
        .flat_map(|e| e.0.iter())
        .map(|p| PortSpec {
            host_ip: p.host_ip.clone().unwrap_or_default(),
            host_port: p.published,
            host_port_end: p.published_end,
            container_port: p.target,
            protocol: p.protocol,
        })
        .collect();

    let mut expose = BTreeSet::new();
    for (i, e) in svc.expose.iter().enumerate() {
        match crate::desired::compose::parse_expose(e.text()) {
            Ok(p) => expose.extend(p),
            Err(msg) => r.err(lines::index(&format!("{base}.expose"), i), msg),
        }
    }

    let mut mounts = mounts(ctx, svc, base, r);
    mounts.extend(ctx.files.mounts(svc, base, r));

    let networks = attachments(ctx.names, svc, base, r);
    let healthcheck = healthcheck(svc, base, r);
    let restart = restart(svc, base, r);
    let runtime = runtime::runtime(svc, base, ctx.names, r);

    // Compose starts what a service shares a namespace or volumes with, or links to, first.
    let mut depends_on = svc.depends_on.0.clone();
    let implicit = [&svc.network_mode, &svc.pid, &svc.ipc]
        .into_iter()
        .flatten()
        .filter_map(|m| m.strip_prefix("service:"))
        .chain(svc.links.iter().map(|l| l.split(':').next().unwrap_or(l)))
        .chain(
            svc.volumes_from
                .iter()
                .filter(|v| !v.starts_with("container:"))
                .map(|v| v.split(':').next().unwrap_or(v)),
        );
    for dep in implicit {
        if ctx.names.container(dep).is_some() {
            depends_on
                .entry(dep.to_string())
                .or_insert(Condition::ServiceStarted);
        }
    }

    let mut spec = ServiceSpec {
        stack: stack.name.clone(),
        service: name.to_string(),
        project: stack.project.clone(),
        compose_file: {
            let f = ctx.root.join(&stack.source.rel);
            f.canonicalize().unwrap_or(f)
        },
        depends_on,
        container_name,
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
        labels: labels(ctx, svc, base, r),
        user: svc.user.as_ref().and_then(|u| u.0.clone()),
        working_dir: svc.working_dir.clone(),
        hostname: svc.hostname.clone(),
        cap_add: svc.cap_add.iter().cloned().collect(),
        extra_hosts: svc
            .extra_hosts
            .0
            .iter()
            .rev()
            .map(|(h, ip)| (h.clone(), ip.clone()))
            .collect(),
        runtime,
        pull_policy,
        replicas: 1,
        number: 1,
        rollout_timeout: rollout_timeout(svc, base, r),
    };
    spec.replicas = replicas::replicas(svc, &spec, base, ctx.names, r);
    spec
}

/// `x-macula.rollout_timeout`: how long a rollout watches the service after a change.
fn rollout_timeout(svc: &Service, base: &str, r: &mut Report) -> Option<std::time::Duration> {
    let text = svc.x_macula.rollout_timeout.as_deref()?;
    match super::units::parse_duration(text) {
        Ok(ns) if ns > 0 => Some(std::time::Duration::from_nanos(ns as u64)),
        Ok(_) => {
            r.err(
                format!("{base}.x-macula.rollout_timeout"),
                "must be longer than 0s",
            );
            None
        }
        Err(e) => {
            r.err(format!("{base}.x-macula.rollout_timeout"), e);
            None
        }
    }
}

/// Keys accepted so real files load, that have no effect on one engine.
fn warn_ignored(svc: &Service, base: &str, r: &mut Report) {
    if let Some(d) = &svc.deploy {
        for k in d.swarm_only() {
            r.warn(
                format!("{base}.deploy.{k}"),
                "ignored: only Docker Swarm uses it",
            );
        }
        if d.mode.as_deref().is_some_and(|m| m != "replicated") {
            r.warn(
                format!("{base}.deploy.mode"),
                "ignored: global mode only means something to Docker Swarm",
            );
        }
    }
    if let Some(b) = &svc.build {
        for k in b.ignored_keys() {
            r.warn(
                format!("{base}.build.{k}"),
                "ignored: needs BuildKit, and the agent builds with the engine's build API",
            );
        }
    }
    if svc.develop.is_some() {
        r.warn(
            format!("{base}.develop"),
            "ignored: `docker compose watch` is interactive",
        );
    }
    if svc.attach.is_some() {
        r.warn(
            format!("{base}.attach"),
            "ignored: the agent attaches to no container output",
        );
    }
}

fn mounts(ctx: &Ctx, svc: &Service, base: &str, r: &mut Report) -> Vec<MountSpec> {
    let (root, stack) = (ctx.root, ctx.stack);
    let mut out = Vec::new();
    if svc.x_macula.allow_docker_socket {
        r.warn(
            format!("{base}.x-macula.allow_docker_socket"),
            "no longer grants anything: privileges come from the host's agent config (`policy.docker_socket`), never from the repo",
        );
    }
    for (i, m) in svc.volumes.iter().enumerate() {
        let path = lines::index(&format!("{base}.volumes"), i);
        let source = match (m.kind, &m.source) {
            (MountKind::Tmpfs, _) => MountSource::Tmpfs,
            (_, None) => MountSource::Anonymous,
            (MountKind::Volume, Some(v)) => match ctx.names.volumes.get(v) {
                Some(full) => MountSource::Volume { name: full.clone() },
                None => {
                    r.err(
                        path,
                        format!("named volume {v:?} is not declared under top-level `volumes:`"),
                    );
                    continue;
                }
            },
            (MountKind::Bind, Some(src)) => {
                let made = if src.starts_with('/') || src.starts_with('~') {
                    binds::host_path(src).map(|path| MountSource::Host { path })
                } else if m.read_only {
                    let create = m.create_host_path == Some(true);
                    binds::read_only(root, &stack.dir, src, create).map(|(s, created)| {
                        if created {
                            r.warn(
                                path.clone(),
                                format!("{src:?} is not in the repo: an empty directory is created and mounted read-only, as docker compose does"),
                            );
                        }
                        s
                    })
                } else {
                    binds::data_mount(root, &stack.dir, src)
                };
                match made {
                    Ok(s) => s,
                    Err(e) => {
                        r.err(path, e);
                        continue;
                    }
                }
            }
        };
        let tmpfs_size = m
            .tmpfs_size
            .as_ref()
            .and_then(|s| s.0.as_deref())
            .and_then(|s| r.check(format!("{path}.tmpfs.size"), parse_bytes(s)));
        out.push(MountSpec {
            source,
            target: m.target.clone(),
            read_only: m.read_only,
            at: path.clone(),
            options: MountOptions {
                propagation: m.propagation.clone(),
                selinux: m.selinux.clone(),
                nocopy: m.nocopy,
                subpath: m.subpath.clone(),
                tmpfs_size,
                tmpfs_mode: m.tmpfs_mode,
                ..Default::default()
            },
        });
    }
    if svc.use_api_socket {
        // As compose binds it: the engine's socket at its usual path; the host's policy
        // decides (`policy.docker_socket`), as for a written bind of it.
        let at = format!("{base}.use_api_socket");
        r.warn(
            at.clone(),
            "the Docker socket is bound; compose also copies the user's registry credentials into the container, the agent does not",
        );
        out.push(MountSpec {
            source: MountSource::Host {
                path: "/var/run/docker.sock".into(),
            },
            target: "/var/run/docker.sock".into(),
            read_only: false,
            at,
            options: MountOptions::default(),
        });
    }
    out
}

fn attachments(
    names: &StackNames,
    svc: &Service,
    base: &str,
    r: &mut Report,
) -> BTreeMap<String, AttachSpec> {
    let mut networks = BTreeMap::new();
    if svc.network_mode.is_some() {
        if !svc.networks.0.is_empty() {
            r.err(
                format!("{base}.network_mode"),
                "network_mode and networks cannot both be set",
            );
        }
        return networks;
    }
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
        let Some(full) = names.networks.get(&key) else {
            r.err(
                path,
                format!("network {key:?} is not declared under top-level `networks:`"),
            );
            continue;
        };
        let ip = |r: &mut Report, field: &str, v: &Option<String>, v6: bool| {
            let a = v.as_ref()?;
            r.check(
                format!("{path}.{field}"),
                a.parse::<IpAddr>()
                    .ok()
                    .filter(|ip| ip.is_ipv6() == v6)
                    .ok_or_else(|| {
                        format!("{a:?} is not an IPv{} address", if v6 { 6 } else { 4 })
                    }),
            )
        };
        let ipv4_address = ip(r, "ipv4_address", &att.ipv4_address, false);
        let ipv6_address = ip(r, "ipv6_address", &att.ipv6_address, true);
        networks.insert(
            full.clone(),
            AttachSpec {
                ipv4_address,
                aliases: att.aliases.clone(),
                ipv6_address,
                link_local_ips: att.link_local_ips.clone(),
                mac_address: att.mac_address.clone(),
                driver_opts: att
                    .driver_opts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.text().to_string()))
                    .collect(),
                gw_priority: att.gw_priority,
                priority: att.priority,
            },
        );
    }
    networks
}

fn healthcheck(svc: &Service, base: &str, r: &mut Report) -> Option<HealthSpec> {
    let h = svc.healthcheck.as_ref()?;
    if h.disable {
        return Some(HealthSpec {
            test: vec!["NONE".into()],
            interval_ns: None,
            timeout_ns: None,
            retries: None,
            start_period_ns: None,
            start_interval_ns: None,
        });
    }
    let mut dur = |field: &str, v: &Option<String>| -> Option<i64> {
        let v = v.as_ref()?;
        r.check(format!("{base}.healthcheck.{field}"), parse_duration(v))
    };
    Some(HealthSpec {
        interval_ns: dur("interval", &h.interval),
        timeout_ns: dur("timeout", &h.timeout),
        start_period_ns: dur("start_period", &h.start_period),
        start_interval_ns: dur("start_interval", &h.start_interval),
        test: h.test.as_ref().map(|t| t.0.clone()).unwrap_or_default(),
        retries: h.retries,
    })
}

/// `restart:`, overridden by `deploy.restart_policy` as compose's getRestartPolicy does.
fn restart(svc: &Service, base: &str, r: &mut Report) -> String {
    if let Some(p) = svc.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()) {
        let name = match p.condition.as_deref() {
            None | Some("none") => "no",
            Some("any") => "always",
            Some("on-failure") => "on-failure",
            Some(other) => {
                r.err(
                    format!("{base}.deploy.restart_policy.condition"),
                    format!("{other:?} is not a restart condition (none, on-failure, any)"),
                );
                "no"
            }
        };
        return match p.max_attempts {
            Some(n) if name == "on-failure" => format!("on-failure:{n}"),
            _ => name.to_string(),
        };
    }
    let restart = svc.restart.clone().unwrap_or_else(|| "no".into());
    if !(matches!(
        restart.as_str(),
        "no" | "always" | "unless-stopped" | "on-failure"
    ) || restart
        .strip_prefix("on-failure:")
        .is_some_and(|n| n.parse::<u32>().is_ok()))
    {
        r.err(
            format!("{base}.restart"),
            format!(
                "{restart:?} is not a restart policy (no, always, unless-stopped, on-failure[:N])"
            ),
        );
    }
    restart
}

/// `label_file` entries read in order (a later file's key wins), then `labels:` over them, as
/// compose-go merges them; each file is a repo path like an `env_file`.
fn labels(ctx: &Ctx, svc: &Service, base: &str, r: &mut Report) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (i, f) in svc.label_file.iter().flat_map(|o| o.0.iter()).enumerate() {
        let path = lines::index(&format!("{base}.label_file"), i);
        match resolve_inside(ctx.root, &ctx.stack.dir, f) {
            Ok(real) => match std::fs::read_to_string(&real) {
                Ok(text) => out.extend(parse_dotenv(&text)),
                Err(e) => r.err(path, format!("cannot read label_file: {e}")),
            },
            Err(e) => r.err(path, e.to_string()),
        }
    }
    out.extend(svc.labels.filled());
    out
}
