//! ServiceSpec → Docker's create body. Pure, so what the agent asks of the engine is testable
//! without one.

mod host;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_merge;

use std::collections::HashMap as Map;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HealthConfig, HostConfig, Mount,
    MountBindOptions, MountTmpfsOptions, MountType, MountVolumeOptions, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use super::CreateContext;
use crate::desired::spec::{AttachSpec, MountSource, MountSpec, ServiceSpec};
use crate::labels;

pub fn container_body(spec: &ServiceSpec, ctx: &CreateContext) -> ContainerCreateBody {
    let mut all_labels: Map<String, String> = spec.labels.clone().into_iter().collect();
    all_labels.extend(labels::ownership(&ctx.host, &spec.stack));
    all_labels.extend(labels::compose_container(
        &spec.project,
        &spec.service,
        spec.number,
        &spec.hash(),
        &spec.compose_file,
    ));
    all_labels.insert(labels::SERVICE.into(), spec.service.clone());
    all_labels.insert(labels::SPEC_HASH.into(), spec.hash());
    all_labels.insert(
        labels::FIELDS.into(),
        serde_json::to_string(&spec.field_hashes()).expect("a map of strings serialises"),
    );
    if let Some(rev) = &ctx.revision {
        all_labels.insert(labels::REVISION.into(), rev.clone());
    }

    let mut exposed = Vec::new();
    let mut bindings: Map<String, Option<Vec<PortBinding>>> = Map::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        exposed.push(key.clone());
        let b = PortBinding {
            host_ip: (!p.host_ip.is_empty()).then(|| p.host_ip.clone()),
            host_port: Some(match (p.host_port, p.host_port_end) {
                (Some(a), Some(b)) => format!("{a}-{b}"),
                (Some(a), None) => a.to_string(),
                (None, _) => String::new(),
            }),
        };
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(b);
    }
    exposed.extend(
        spec.expose
            .iter()
            .map(|(port, proto)| format!("{port}/{proto}")),
    );
    exposed.sort();
    exposed.dedup();

    let mut mounts: Vec<Mount> = spec.mounts.iter().map(|m| mount(m, ctx)).collect();
    // The old container's image-declared volumes, reused at the same place (compose's
    // `getInheritedVolume`): the image declares them again, so leaving them out would make the
    // engine create new empty ones.
    for (target, volume) in &ctx.inherited {
        if !spec.mounts.iter().any(|m| &m.target == target) {
            mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(volume.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
    }

    let restart_policy = {
        let (name, count) = match spec.restart.split_once(':') {
            Some((_, n)) => (RestartPolicyNameEnum::ON_FAILURE, n.parse().ok()),
            None => (
                match spec.restart.as_str() {
                    "always" => RestartPolicyNameEnum::ALWAYS,
                    "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                    "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                    _ => RestartPolicyNameEnum::NO,
                },
                None,
            ),
        };
        RestartPolicy {
            name: Some(name),
            maximum_retry_count: count,
        }
    };

    // Docker attaches at create time to one network only; the others are connected before start.
    let endpoints: Map<String, EndpointSettings> = primary_network(spec)
        .map(|(net, att)| (net.to_string(), endpoint(spec, att)))
        .into_iter()
        .collect();
    let rt = &spec.runtime;

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(
            spec.environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        labels: Some(all_labels),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_ns,
            timeout: h.timeout_ns,
            retries: h.retries.map(i64::from),
            start_period: h.start_period_ns,
            start_interval: h.start_interval_ns,
        }),
        domainname: rt.domainname.clone(),
        tty: rt.tty.then_some(true),
        open_stdin: rt.stdin_open.then_some(true),
        stop_signal: rt.stop_signal.clone(),
        stop_timeout: rt.stop_timeout,
        host_config: Some(HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            mounts: Some(mounts),
            restart_policy: Some(restart_policy),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.iter().cloned().collect()),
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| {
                if !rt.extra_hosts_order.is_empty() {
                    return rt.extra_hosts_order.clone();
                }
                spec.extra_hosts
                    .iter()
                    .chain(rt.extra_hosts_more.iter().map(|(h, ip)| (h, ip)))
                    .map(|(h, ip)| format!("{h}:{ip}"))
                    .collect()
            }),
            network_mode: rt
                .network_mode
                .clone()
                .or_else(|| primary_network(spec).map(|(n, _)| n.to_string())),
            ..host::host_config(rt)
        }),
        networking_config: (!endpoints.is_empty()).then_some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..Default::default()
    }
}

/// The network the container is created on: the highest `priority`, then the first by name
/// (compose connects in that order).
pub fn primary_network(spec: &ServiceSpec) -> Option<(&str, &AttachSpec)> {
    connect_order(spec).into_iter().next()
}

/// Every attachment in the order compose connects them.
pub fn connect_order(spec: &ServiceSpec) -> Vec<(&str, &AttachSpec)> {
    let mut v: Vec<(&str, &AttachSpec)> =
        spec.networks.iter().map(|(n, a)| (n.as_str(), a)).collect();
    v.sort_by_key(|(_, a)| std::cmp::Reverse(a.priority));
    v
}

/// Endpoint settings for one network attachment: static IPs and aliases (the service name is
/// always an alias, as Compose does, so `depends_on` peers resolve by service name).
pub fn endpoint(spec: &ServiceSpec, att: &AttachSpec) -> EndpointSettings {
    let mut aliases = vec![spec.service.clone()];
    aliases.extend(att.aliases.iter().cloned());
    let has_ipam =
        att.ipv4_address.is_some() || att.ipv6_address.is_some() || !att.link_local_ips.is_empty();
    EndpointSettings {
        ipam_config: has_ipam.then(|| EndpointIpamConfig {
            ipv4_address: att.ipv4_address.map(|ip| ip.to_string()),
            ipv6_address: att.ipv6_address.map(|ip| ip.to_string()),
            link_local_ips: (!att.link_local_ips.is_empty()).then(|| att.link_local_ips.clone()),
        }),
        aliases: Some(aliases),
        // The service-level `mac_address` goes on the first network, as compose does.
        mac_address: att.mac_address.clone().or_else(|| {
            primary_network(spec)
                .filter(|(_, a)| std::ptr::eq(*a, att))
                .and(spec.runtime.mac_address.clone())
        }),
        driver_opts: (!att.driver_opts.is_empty())
            .then(|| att.driver_opts.clone().into_iter().collect()),
        gw_priority: att.gw_priority,
        // compose v2 sets links on every endpoint (not HostConfig.Links).
        links: (!spec.runtime.links.is_empty()).then(|| spec.runtime.links.clone()),
        ..Default::default()
    }
}

fn mount(m: &MountSpec, ctx: &CreateContext) -> Mount {
    let (typ, source) = match &m.source {
        MountSource::Volume { name } => (MountType::VOLUME, Some(name.clone())),
        // Apply resolves repo copies, data dirs and generated files to host paths first.
        MountSource::Repo { .. } | MountSource::Data { .. } | MountSource::Generated { .. } => (
            MountType::BIND,
            ctx.mount_paths
                .get(&m.target)
                .map(|p| p.display().to_string()),
        ),
        MountSource::Host { path } => (MountType::BIND, Some(path.clone())),
        // The replaced container's anonymous volume at this target, when there was one.
        MountSource::Anonymous => (MountType::VOLUME, ctx.inherited.get(&m.target).cloned()),
        MountSource::Tmpfs => (MountType::TMPFS, None),
    };
    let o = &m.options;
    let bind_options =
        (typ == MountType::BIND && o.propagation.is_some()).then(|| MountBindOptions {
            propagation: o
                .propagation
                .as_ref()
                .and_then(|p| serde_json::from_value(serde_json::Value::String(p.clone())).ok()),
            ..Default::default()
        });
    let volume_options =
        (typ == MountType::VOLUME && (o.nocopy || o.subpath.is_some())).then(|| {
            MountVolumeOptions {
                no_copy: o.nocopy.then_some(true),
                subpath: o.subpath.clone(),
                ..Default::default()
            }
        });
    let tmpfs_options = (typ == MountType::TMPFS
        && (o.tmpfs_size.is_some() || o.tmpfs_mode.is_some()))
    .then(|| MountTmpfsOptions {
        size_bytes: o.tmpfs_size,
        mode: o.tmpfs_mode.map(i64::from),
        ..Default::default()
    });
    Mount {
        target: Some(m.target.clone()),
        source,
        typ: Some(typ),
        read_only: Some(m.read_only),
        bind_options,
        volume_options,
        tmpfs_options,
        ..Default::default()
    }
}
