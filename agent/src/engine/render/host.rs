//! `RuntimeSpec` → the HostConfig fields compose v2 sets from the same keys (its `create.go`).

use bollard::models::{
    DeviceMapping, DeviceRequest, HostConfig, HostConfigCgroupnsModeEnum, HostConfigLogConfig,
    ResourcesUlimits,
};

use crate::desired::spec::RuntimeSpec;

fn list(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn map<'a>(
    m: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Option<std::collections::HashMap<String, String>> {
    let out: std::collections::HashMap<String, String> =
        m.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    (!out.is_empty()).then_some(out)
}

pub(super) fn host_config(rt: &RuntimeSpec) -> HostConfig {
    HostConfig {
        runtime: rt.runtime.clone(),
        shm_size: rt.shm_size,
        ulimits: (!rt.ulimits.is_empty()).then(|| {
            rt.ulimits
                .iter()
                .map(|(name, soft, hard)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(*soft),
                    hard: Some(*hard),
                })
                .collect()
        }),
        sysctls: map(&rt.sysctls),
        tmpfs: map(&rt.tmpfs),
        devices: (!rt.devices.is_empty()).then(|| {
            rt.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host.clone()),
                    path_in_container: Some(d.container.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect()
        }),
        device_cgroup_rules: list(&rt.device_cgroup_rules),
        device_requests: (!rt.device_requests.is_empty()).then(|| {
            rt.device_requests
                .iter()
                .map(|d| DeviceRequest {
                    driver: d.driver.clone(),
                    count: d.count,
                    device_ids: list(&d.device_ids),
                    capabilities: Some(vec![d.capabilities.clone()]),
                    options: map(&d.options),
                })
                .collect()
        }),
        privileged: rt.privileged.then_some(true),
        cap_drop: list(&rt.cap_drop),
        security_opt: list(&rt.security_opt),
        readonly_rootfs: rt.read_only.then_some(true),
        init: rt.init,
        log_config: rt.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: map(&l.options),
        }),
        pid_mode: rt.pid.clone(),
        ipc_mode: rt.ipc.clone(),
        uts_mode: rt.uts.clone(),
        userns_mode: rt.userns_mode.clone(),
        cgroupns_mode: rt.cgroup.as_deref().map(|c| match c {
            "host" => HostConfigCgroupnsModeEnum::HOST,
            _ => HostConfigCgroupnsModeEnum::PRIVATE,
        }),
        cgroup_parent: rt.cgroup_parent.clone(),
        dns: list(&rt.dns),
        dns_search: list(&rt.dns_search),
        dns_options: list(&rt.dns_opt),
        group_add: list(&rt.group_add),
        volumes_from: list(&rt.volumes_from),
        nano_cpus: rt.nano_cpus,
        cpu_shares: rt.cpu_shares,
        cpu_quota: rt.cpu_quota,
        cpu_period: rt.cpu_period,
        cpu_realtime_runtime: rt.cpu_rt_runtime,
        cpu_realtime_period: rt.cpu_rt_period,
        cpu_count: rt.cpu_count,
        cpu_percent: rt.cpu_percent,
        cpuset_cpus: rt.cpuset.clone(),
        memory: rt.memory,
        memory_reservation: rt.memory_reservation,
        memory_swap: rt.memory_swap,
        memory_swappiness: rt.mem_swappiness,
        pids_limit: rt.pids_limit,
        oom_kill_disable: rt.oom_kill_disable,
        oom_score_adj: rt.oom_score_adj,
        storage_opt: map(&rt.storage_opt),
        annotations: map(&rt.annotations),
        ..Default::default()
    }
}
