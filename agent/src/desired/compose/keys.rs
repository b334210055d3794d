//! The keys supported at each place in a compose file, for "unknown key" errors.

use super::build::BUILD_KEYS;
use super::deploy::{
    DEPLOY_KEYS, DEVICE_REQUEST_KEYS, RESOURCES_KEYS, RESOURCE_KEYS, RESTART_POLICY_KEYS,
};
use super::files::{FILE_DEF_KEYS, FILE_REF_KEYS};
use super::mounts::{BIND_KEYS, MOUNT_KEYS, TMPFS_KEYS, VOLUME_OPT_KEYS};
use super::network::{ATTACHMENT_KEYS, IPAM_CONFIG_KEYS, IPAM_KEYS, NETWORK_KEYS, VOLUME_KEYS};
use super::ports::PORT_KEYS;
use super::service::{HEALTHCHECK_KEYS, HOOK_KEYS, LOGGING_KEYS};

pub const TOP_LEVEL_KEYS: &[&str] = &[
    "name", "version", "services", "networks", "volumes", "secrets", "configs", "include", "x-*",
];

pub const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "container_name",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "networks",
    "healthcheck",
    "depends_on",
    "restart",
    "labels",
    "label_file",
    "user",
    "working_dir",
    "hostname",
    "domainname",
    "cap_add",
    "cap_drop",
    "extra_hosts",
    "expose",
    "platform",
    "stop_signal",
    "stop_grace_period",
    "shm_size",
    "runtime",
    "ulimits",
    "sysctls",
    "tmpfs",
    "devices",
    "device_cgroup_rules",
    "gpus",
    "privileged",
    "security_opt",
    "read_only",
    "init",
    "logging",
    "network_mode",
    "pid",
    "ipc",
    "uts",
    "userns_mode",
    "cgroup",
    "cgroup_parent",
    "dns",
    "dns_search",
    "dns_opt",
    "mac_address",
    "group_add",
    "pull_policy",
    "stdin_open",
    "tty",
    "links",
    "external_links",
    "volumes_from",
    "profiles",
    "cpus",
    "cpu_shares",
    "cpu_quota",
    "cpu_period",
    "cpu_rt_runtime",
    "cpu_rt_period",
    "cpu_count",
    "cpu_percent",
    "cpuset",
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "mem_swappiness",
    "pids_limit",
    "oom_kill_disable",
    "oom_score_adj",
    "storage_opt",
    "annotations",
    "deploy",
    "scale",
    "secrets",
    "configs",
    "extends",
    "develop",
    "attach",
    "post_start",
    "use_api_socket",
    "pre_stop",
    "x-macula",
    "x-*",
];

/// The keys supported where an unknown key was found, for the error message.
/// `path` is the dotted path of the unknown key (`services.web.build.targt`).
pub fn supported_keys_at(path: &str) -> &'static [&'static str] {
    // Sequence indexes (`ports[0]`) do not change which keys are allowed.
    let plain: String = {
        let mut out = String::with_capacity(path.len());
        let mut depth = 0;
        for c in path.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    let segs: Vec<&str> = plain.split('.').collect();
    match segs.as_slice() {
        [_] => TOP_LEVEL_KEYS,
        ["services", _, "healthcheck", _] => HEALTHCHECK_KEYS,
        ["services", _, "x-macula", _] => &["allow_docker_socket", "rollout_timeout"],
        ["services", _, "build", _] => BUILD_KEYS,
        ["services", _, "deploy", _] => DEPLOY_KEYS,
        ["services", _, "deploy", "resources", _] => RESOURCES_KEYS,
        ["services", _, "deploy", "resources", _, "devices", _] | ["services", _, "gpus", _] => {
            DEVICE_REQUEST_KEYS
        }
        ["services", _, "deploy", "resources", _, _] => RESOURCE_KEYS,
        ["services", _, "deploy", "restart_policy", _] => RESTART_POLICY_KEYS,
        ["services", _, "logging", _] => LOGGING_KEYS,
        ["services", _, "post_start" | "pre_stop", _] => HOOK_KEYS,
        ["services", _, "ports", _] => PORT_KEYS,
        ["services", _, "volumes", "bind", _] => BIND_KEYS,
        ["services", _, "volumes", "volume", _] => VOLUME_OPT_KEYS,
        ["services", _, "volumes", "tmpfs", _] => TMPFS_KEYS,
        ["services", _, "volumes", _] => MOUNT_KEYS,
        ["services", _, "networks", _, _] => ATTACHMENT_KEYS,
        ["services", _, "secrets" | "configs", _] => FILE_REF_KEYS,
        ["services", _, "env_file", _] => &["path", "required", "format"],
        ["services", _, "extends", _] => &["service", "file"],
        ["services", _, _] => SERVICE_KEYS,
        ["networks", _, "ipam", _] => IPAM_KEYS,
        ["networks", _, "ipam", "config", _] => IPAM_CONFIG_KEYS,
        ["networks", _, _] => NETWORK_KEYS,
        ["volumes", _, _] => VOLUME_KEYS,
        ["secrets" | "configs", _, _] => FILE_DEF_KEYS,
        _ => &[],
    }
}
