//! ServiceSpec → Docker's create body. Pure, so what the agent asks of the engine is testable
//! without one.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HealthConfig, HostConfig, Mount,
    MountType, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use super::CreateContext;
use crate::desired::spec::{MountSource, ServiceSpec};
use crate::labels;

pub fn container_body(spec: &ServiceSpec, ctx: &CreateContext) -> ContainerCreateBody {
    let mut all_labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    all_labels.extend(labels::ownership(&ctx.host, &spec.stack));
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
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        exposed.push(key.clone());
        let b = PortBinding {
            host_ip: (!p.host_ip.is_empty()).then(|| p.host_ip.clone()),
            host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
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

    let mounts = spec
        .mounts
        .iter()
        .map(|m| {
            let (typ, source) = match &m.source {
                MountSource::Volume { name } => (MountType::VOLUME, Some(name.clone())),
                MountSource::Repo { digest, local, .. } => (
                    MountType::BIND,
                    Some(
                        ctx.mount_paths
                            .get(digest)
                            .unwrap_or(local)
                            .display()
                            .to_string(),
                    ),
                ),
                MountSource::Host { path } => (MountType::BIND, Some(path.clone())),
                MountSource::Anonymous => (MountType::VOLUME, None),
            };
            Mount {
                target: Some(m.target.clone()),
                source,
                typ: Some(typ),
                read_only: Some(m.read_only),
                ..Default::default()
            }
        })
        .collect();

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
    let endpoints: HashMap<String, EndpointSettings> = spec
        .networks
        .iter()
        .take(1)
        .map(|(net, att)| (net.clone(), endpoint(spec, att)))
        .collect();

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
        host_config: Some(HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            mounts: Some(mounts),
            restart_policy: Some(restart_policy),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.iter().cloned().collect()),
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| {
                spec.extra_hosts
                    .iter()
                    .map(|(h, ip)| format!("{h}:{ip}"))
                    .collect()
            }),
            network_mode: spec.networks.keys().next().cloned(),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..Default::default()
    }
}

/// Endpoint settings for one network attachment: static IP and aliases (the service name is
/// always an alias, as Compose does, so `depends_on` peers resolve by service name).
pub fn endpoint(spec: &ServiceSpec, att: &crate::desired::spec::AttachSpec) -> EndpointSettings {
    let mut aliases = vec![spec.service.clone()];
    aliases.extend(att.aliases.iter().cloned());
    EndpointSettings {
        ipam_config: att.ipv4_address.map(|ip| EndpointIpamConfig {
            ipv4_address: Some(ip.to_string()),
            ..Default::default()
        }),
        aliases: Some(aliases),
        ..Default::default()
    }
}
