//! A service's container settings beyond image, command, environment, ports, mounts and
//! networks: values with units checked, `deploy.resources` and legacy `mem_limit`-style keys
//! merged as Compose merges them, `service:` references resolved to container names.

use super::units::{parse_bytes, parse_cpus, parse_duration, parse_micros};
use super::{Report, StackNames};
use crate::desired::compose::{DeviceRequest, Hook, Scalar, Service};
use crate::desired::spec::{DeviceRequestSpec, DeviceSpec, HookSpec, LogSpec, RuntimeSpec};

pub(super) fn runtime(
    svc: &Service,
    base: &str,
    names: &StackNames,
    r: &mut Report,
) -> RuntimeSpec {
    let size = |r: &mut Report, key: &str, v: &Option<Scalar>| -> Option<i64> {
        let v = v.as_ref()?.0.as_deref()?;
        r.check(format!("{base}.{key}"), parse_bytes(v))
    };
    let shm_size = size(r, "shm_size", &svc.shm_size);
    let mut memory = size(r, "mem_limit", &svc.mem_limit);
    let mut memory_reservation = size(r, "mem_reservation", &svc.mem_reservation);
    // `-1` (unlimited swap) is a valid memswap_limit that no size parser accepts.
    let memory_swap = match svc.memswap_limit.as_ref().and_then(|s| s.0.as_deref()) {
        Some("-1") => Some(-1),
        _ => size(r, "memswap_limit", &svc.memswap_limit),
    };
    let mut nano_cpus = svc
        .cpus
        .as_ref()
        .and_then(|c| c.0.as_deref())
        .and_then(|c| r.check(format!("{base}.cpus"), parse_cpus(c)));
    let mut pids_limit = svc.pids_limit;
    let mut device_requests = Vec::new();

    if let Some(res) = svc.deploy.as_ref().and_then(|d| d.resources.as_ref()) {
        let path = format!("{base}.deploy.resources");
        // As compose's setLimits/setReservations: deploy values win over the legacy keys.
        if let Some(l) = &res.limits {
            if let Some(m) = l.memory.as_ref().and_then(|m| m.0.as_deref()) {
                memory = r
                    .check(format!("{path}.limits.memory"), parse_bytes(m))
                    .or(memory);
            }
            if let Some(c) = l.cpus.as_ref().and_then(|c| c.0.as_deref()) {
                nano_cpus = r
                    .check(format!("{path}.limits.cpus"), parse_cpus(c))
                    .or(nano_cpus);
            }
            if let Some(p) = l.pids.filter(|p| *p > 0) {
                pids_limit = Some(p);
            }
        }
        if let Some(rv) = &res.reservations {
            if let Some(m) = rv.memory.as_ref().and_then(|m| m.0.as_deref()) {
                memory_reservation = r
                    .check(format!("{path}.reservations.memory"), parse_bytes(m))
                    .or(memory_reservation);
            }
            for (i, dev) in rv.devices.iter().enumerate() {
                let at = format!("{path}.reservations.devices");
                device_requests.extend(device_request(dev, &at, i, None, r));
            }
        }
    }
    // Then CDI devices and `gpus`, in docker compose's order.
    let (cdi, mapped): (Vec<_>, Vec<_>) = svc
        .devices
        .iter()
        .partition(|d| d.source == d.target && is_cdi_name(&d.source));
    if !cdi.is_empty() {
        device_requests.push(DeviceRequestSpec {
            driver: Some("cdi".into()),
            count: None,
            device_ids: cdi.iter().map(|d| d.source.clone()).collect(),
            capabilities: Vec::new(),
            options: Default::default(),
            at: format!("{base}.devices"),
        });
    }
    for (i, dev) in svc.gpus.0.iter().enumerate() {
        let at = format!("{base}.gpus");
        device_requests.extend(device_request(dev, &at, i, Some("gpu"), r));
    }

    let stop_timeout = svc
        .stop_grace_period
        .as_ref()
        .and_then(|g| g.0.as_ref())
        .and_then(|g| {
            r.check(format!("{base}.stop_grace_period"), parse_duration(g))
                // Compose passes whole seconds, truncated.
                .map(|ns| ns / 1_000_000_000)
        });
    let micros = |r: &mut Report, key: &str, v: &Option<Scalar>| -> Option<i64> {
        let v = v.as_ref()?.0.as_deref()?;
        r.check(format!("{base}.{key}"), parse_micros(v))
    };
    let cpu_rt_runtime = micros(r, "cpu_rt_runtime", &svc.cpu_rt_runtime);
    let cpu_rt_period = micros(r, "cpu_rt_period", &svc.cpu_rt_period);

    let mut ulimits = Vec::new();
    for (name, u) in &svc.ulimits {
        if u.soft > u.hard {
            r.err(
                format!("{base}.ulimits.{name}"),
                format!("soft limit {} is above hard limit {}", u.soft, u.hard),
            );
        }
        ulimits.push((name.clone(), u.soft, u.hard));
    }

    let tmpfs = svc
        .tmpfs
        .iter()
        .flat_map(|t| t.0.iter())
        .map(|t| match t.split_once(':') {
            Some((path, opts)) => (path.to_string(), opts.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();

    let logging = svc.logging.as_ref().map(|l| LogSpec {
        driver: l.driver.clone(),
        options: l
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.text().to_string()))
            .collect(),
    });

    let network_mode = svc.network_mode.as_ref().and_then(|m| {
        let path = format!("{base}.network_mode");
        match m.split_once(':') {
            Some(("service" | "container", _)) => joined(Some(m), "network_mode", base, names, r),
            None if matches!(m.as_str(), "host" | "none" | "bridge" | "default") => {
                Some(m.clone())
            }
            _ => {
                r.err(
                    path,
                    format!("{m:?} is not a network mode (host, none, bridge, service:<name>, container:<name>)"),
                );
                None
            }
        }
    });

    let mut links = Vec::new();
    for (i, l) in svc.links.iter().enumerate() {
        let (service, alias) = l.split_once(':').unwrap_or((l, l));
        match names.container(service) {
            // compose v2's getLinks: the alias, `<service>-1` and `<project>-<service>-1`.
            Some(c) => {
                for l in [
                    format!("{c}:{alias}"),
                    format!("{c}:{service}-1"),
                    format!("{c}:{}-{service}-1", names.project),
                ] {
                    if !links.contains(&l) {
                        links.push(l);
                    }
                }
            }
            None => r.err(
                format!("{base}.links[{i}]"),
                format!("links to unknown service {service:?}"),
            ),
        }
    }
    for l in &svc.external_links {
        let (container, alias) = l.split_once(':').unwrap_or((l, l));
        links.push(format!("{container}:{alias}"));
    }

    let mut volumes_from = Vec::new();
    for (i, v) in svc.volumes_from.iter().enumerate() {
        let (what, mode) = match v.rsplit_once(':') {
            Some((w, m)) if m == "ro" || m == "rw" => (w, Some(m)),
            _ => (v.as_str(), None),
        };
        let container = match what.strip_prefix("container:") {
            Some(c) => Some(c.to_string()),
            None => names.container(what).map(str::to_string),
        };
        match container {
            Some(c) => volumes_from.push(match mode {
                Some(m) => format!("{c}:{m}"),
                None => c,
            }),
            None => r.err(
                format!("{base}.volumes_from[{i}]"),
                format!("volumes_from refers to unknown service {what:?} (use container:<name> for a container outside the stack)"),
            ),
        }
    }

    let mut extra_hosts_more = Vec::new();
    let mut first = std::collections::BTreeMap::new();
    for (h, ip) in &svc.extra_hosts.0 {
        if first.contains_key(h) {
            extra_hosts_more.push((h.clone(), ip.clone()));
        } else {
            first.insert(h.clone(), ip.clone());
        }
    }
    let entry = |(h, ip): (&String, &String)| format!("{h}:{ip}");
    let in_file: Vec<String> = svc
        .extra_hosts
        .0
        .iter()
        .map(|(h, ip)| entry((h, ip)))
        .collect();
    let by_name: Vec<String> = first
        .iter()
        .chain(extra_hosts_more.iter().map(|(h, ip)| (h, ip)))
        .map(entry)
        .collect();
    let extra_hosts_order = if in_file == by_name {
        Vec::new()
    } else {
        in_file
    };

    RuntimeSpec {
        platform: svc.platform.clone(),
        stop_signal: svc.stop_signal.clone(),
        stop_timeout,
        shm_size,
        runtime: svc.runtime.clone(),
        ulimits,
        sysctls: svc.sysctls.filled(),
        tmpfs,
        devices: mapped
            .into_iter()
            .map(|d| DeviceSpec {
                host: d.source.clone(),
                container: d.target.clone(),
                permissions: d.permissions.clone(),
            })
            .collect(),
        device_cgroup_rules: svc.device_cgroup_rules.clone(),
        device_requests,
        privileged: svc.privileged,
        post_start: svc.post_start.iter().map(hook).collect(),
        pre_stop: svc.pre_stop.iter().map(hook).collect(),
        cap_drop: svc.cap_drop.clone(),
        security_opt: svc.security_opt.clone(),
        read_only: svc.read_only,
        init: svc.init,
        logging,
        network_mode,
        pid: joined(svc.pid.as_ref(), "pid", base, names, r),
        ipc: joined(svc.ipc.as_ref(), "ipc", base, names, r),
        uts: svc.uts.clone(),
        userns_mode: svc.userns_mode.clone(),
        cgroup: svc.cgroup.clone(),
        cgroup_parent: svc.cgroup_parent.clone(),
        dns: svc.dns.clone().unwrap_or_default().0,
        dns_search: svc.dns_search.clone().unwrap_or_default().0,
        dns_opt: svc.dns_opt.clone(),
        domainname: svc.domainname.clone(),
        mac_address: svc.mac_address.clone(),
        group_add: svc.group_add.iter().map(|g| g.text().to_string()).collect(),
        stdin_open: svc.stdin_open,
        tty: svc.tty,
        links,
        volumes_from,
        extra_hosts_more,
        extra_hosts_order,
        nano_cpus,
        cpu_shares: svc.cpu_shares,
        cpu_quota: svc.cpu_quota,
        cpu_period: svc.cpu_period,
        cpu_rt_runtime,
        cpu_rt_period,
        cpu_count: svc.cpu_count,
        cpu_percent: svc.cpu_percent,
        cpuset: svc.cpuset.clone(),
        memory,
        memory_reservation,
        memory_swap,
        mem_swappiness: svc.mem_swappiness,
        pids_limit,
        oom_kill_disable: svc.oom_kill_disable,
        oom_score_adj: svc.oom_score_adj,
        storage_opt: svc.storage_opt.clone(),
        annotations: svc.annotations.filled(),
    }
}

/// A `network_mode:`/`pid:`/`ipc:` with `service:<name>` turned into the container of that service, as
/// docker compose joins it; the rest (`host`, `container:<name>`, `shareable`...) as written.
fn joined(
    mode: Option<&String>,
    key: &str,
    base: &str,
    names: &StackNames,
    r: &mut Report,
) -> Option<String> {
    let mode = mode?;
    let Some(service) = mode.strip_prefix("service:") else {
        return Some(mode.clone());
    };
    match names.container(service) {
        Some(c) => Some(format!("container:{c}")),
        None => {
            r.err(
                format!("{base}.{key}"),
                format!("{key} refers to unknown service {service:?} (use container:<name> for a container outside the stack)"),
            );
            None
        }
    }
}

/// One device request as compose makes it: with neither `count` nor `device_ids` it asks for
/// every device (`count: all`, compose-go's default), and the two together are refused;
/// `implied` is the capability `gpus:` adds to what the entry lists.
fn device_request(
    dev: &DeviceRequest,
    at: &str,
    i: usize,
    implied: Option<&str>,
    r: &mut Report,
) -> Option<DeviceRequestSpec> {
    let path = format!("{at}[{i}]");
    let count = match dev.count.as_ref().and_then(|c| c.0.as_deref()) {
        Some(_) if !dev.device_ids.is_empty() => {
            r.err(
                path,
                "count and device_ids cannot both be set (device_ids names the devices)",
            );
            return None;
        }
        None if dev.device_ids.is_empty() => Some(-1),
        None => None,
        Some("all") => Some(-1),
        Some(n) => Some(
            r.check(
                format!("{path}.count"),
                n.parse::<i64>()
                    .map_err(|_| format!("{n:?} is not a number or \"all\"")),
            )?,
        ),
    };
    let mut capabilities = dev.capabilities.clone();
    if let Some(c) = implied.filter(|c| !capabilities.iter().any(|x| x == c)) {
        capabilities.push(c.to_string());
    }
    Some(DeviceRequestSpec {
        driver: dev.driver.clone(),
        count,
        device_ids: dev.device_ids.clone(),
        capabilities,
        options: dev.options.clone(),
        at: at.to_string(),
    })
}

/// A CDI device name, `vendor.com/class=name` (`nvidia.com/gpu=all`): docker compose asks the
/// engine's `cdi` driver for it instead of mapping a path.
fn is_cdi_name(s: &str) -> bool {
    let Some((vendor, rest)) = s.split_once('/') else {
        return false;
    };
    let Some((class, name)) = rest.split_once('=') else {
        return false;
    };
    let alnum_ends = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    alnum_ends(vendor)
        && vendor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && alnum_ends(class)
        && class
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && alnum_ends(name)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

/// A hook's `environment` entries without a value are left out (exec adds nothing for them).
fn hook(h: &Hook) -> HookSpec {
    HookSpec {
        command: h.command.0.clone(),
        user: h.user.as_ref().and_then(|u| u.0.clone()),
        privileged: h.privileged,
        working_dir: h.working_dir.clone(),
        environment: h
            .environment
            .0
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect(),
    }
}
