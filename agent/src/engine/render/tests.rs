//! Table tests written from the Compose Specification: compose YAML in, the Engine API create
//! body out, for every key the agent maps (those newer than docker-compose 1.29 included, which
//! the parity suite cannot compare against it).

use std::collections::BTreeMap;

use bollard::models::{ContainerCreateBody, HostConfig, MountType};

use super::container_body;
use crate::desired::load_desired;
use crate::desired::spec::{DesiredState, ServiceSpec};
use crate::engine::CreateContext;
use crate::input::Env;

/// The desired state of one stack `app` whose compose file is `compose` (plus `files`).
pub(crate) fn desired(compose: &str, files: &[(&str, &str)]) -> Result<DesiredState, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    desired_at(dir.path(), compose, files)
}

pub(crate) fn desired_at(
    root: &std::path::Path,
    compose: &str,
    files: &[(&str, &str)],
) -> Result<DesiredState, String> {
    std::fs::write(
        root.join("hosts.yaml"),
        "hosts:\n  default: {stacks: [app], compose_profiles: [debug]}\n",
    )
    .expect("write hosts");
    let stack = root.join("stacks/app");
    std::fs::create_dir_all(&stack).expect("mkdir");
    std::fs::write(stack.join("compose.yaml"), compose).expect("write compose");
    for (p, text) in files {
        let f = stack.join(p);
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(f, text).expect("write file");
    }
    let env = Env::from_pairs([("TOKEN", "s3cret")]);
    load_desired(root, "h", &env).map_err(|d| {
        d.iter()
            .map(|d| format!("{}: {d}", d.severity))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

pub(crate) fn spec_of<'a>(d: &'a DesiredState, service: &str) -> &'a ServiceSpec {
    d.services
        .iter()
        .find(|s| s.service == service)
        .expect("service present")
}

fn ctx() -> CreateContext {
    CreateContext {
        host: "h".into(),
        revision: None,
        mount_paths: BTreeMap::new(),
        inherited: BTreeMap::new(),
        name: None,
    }
}

/// The create body of service `web` in `compose`.
fn body(compose: &str) -> ContainerCreateBody {
    let d = desired(compose, &[]).unwrap_or_else(|e| panic!("{e}"));
    container_body(spec_of(&d, "web"), &ctx())
}

fn host(compose: &str) -> HostConfig {
    body(compose).host_config.expect("host config")
}

/// What a host policy granting nothing (`policy: {}`) refuses in `d`.
fn refused_by_a_strict_policy(d: &DesiredState) -> Vec<String> {
    crate::policy::Policy::new(Default::default(), "agent.yaml")
        .check(d)
        .into_sorted()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn assert_warns(d: &DesiredState, path: &str, text: &str) {
    assert!(
        d.warnings
            .iter()
            .any(|w| w.path == path && w.message.contains(text)),
        "no warning at {path} with {text:?}: {:?}",
        d.warnings
    );
}

fn svc(keys: &str) -> String {
    format!("services:\n  web:\n    image: busybox\n{keys}")
}

fn errors(compose: &str) -> String {
    desired(compose, &[]).err().unwrap_or_default()
}

#[test]
fn resources_as_compose_maps_them() {
    let h = host(&svc(
        "    cpus: 1.5\n    cpu_shares: 512\n    cpuset: \"0-1\"\n    mem_limit: 512m\n    mem_reservation: 128M\n    memswap_limit: 1g\n    pids_limit: 100\n    oom_kill_disable: true\n    oom_score_adj: 500\n    shm_size: 2gb\n",
    ));
    assert_eq!(h.nano_cpus, Some(1_500_000_000));
    assert_eq!(h.cpu_shares, Some(512));
    assert_eq!(h.cpuset_cpus.as_deref(), Some("0-1"));
    assert_eq!(h.memory, Some(512 << 20));
    assert_eq!(h.memory_reservation, Some(128 << 20));
    assert_eq!(h.memory_swap, Some(1 << 30));
    assert_eq!(h.pids_limit, Some(100));
    assert_eq!(h.oom_kill_disable, Some(true));
    assert_eq!(h.oom_score_adj, Some(500));
    assert_eq!(h.shm_size, Some(2 << 30));
}

#[test]
fn deploy_resources_and_restart_policy_win_over_legacy_keys() {
    let h = host(&svc(
        "    mem_limit: 1g\n    restart: always\n    deploy:\n      resources:\n        limits: {cpus: '0.25', memory: 256M, pids: 50}\n        reservations: {memory: 64M, cpus: '0.1'}\n      restart_policy: {condition: on-failure, max_attempts: 3, delay: 5s}\n      placement: {constraints: [node.role==manager]}\n",
    ));
    assert_eq!(h.memory, Some(256 << 20));
    assert_eq!(h.nano_cpus, Some(250_000_000));
    assert_eq!(h.pids_limit, Some(50));
    assert_eq!(h.memory_reservation, Some(64 << 20));
    let rp = h.restart_policy.expect("restart policy");
    assert_eq!(
        (rp.name.map(|n| n.to_string()), rp.maximum_retry_count),
        (Some("on-failure".into()), Some(3))
    );
    let d = desired(
        &svc("    deploy: {restart_policy: {condition: any}, placement: {}}\n"),
        &[],
    )
    .expect("valid");
    assert_eq!(spec_of(&d, "web").restart, "always");
    assert_warns(&d, "services.web.deploy.placement", "Swarm");
}

#[test]
fn process_and_namespace_keys() {
    let b = body(&svc(
        "    stop_signal: SIGINT\n    stop_grace_period: 1m30s\n    tty: true\n    stdin_open: true\n    domainname: example.org\n    init: true\n    read_only: true\n    privileged: true\n    cap_drop: [NET_RAW]\n    security_opt: [no-new-privileges:true]\n    pid: host\n    ipc: shareable\n    uts: host\n    userns_mode: host\n    cgroup_parent: m.slice\n    group_add: [audio, 1001]\n    runtime: runc\n",
    ));
    assert_eq!(b.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(b.stop_timeout, Some(90));
    assert_eq!((b.tty, b.open_stdin), (Some(true), Some(true)));
    assert_eq!(b.domainname.as_deref(), Some("example.org"));
    let h = b.host_config.expect("host config");
    assert_eq!(h.init, Some(true));
    assert_eq!(h.readonly_rootfs, Some(true));
    assert_eq!(h.privileged, Some(true));
    assert_eq!(h.cap_drop, Some(vec!["NET_RAW".into()]));
    assert_eq!(h.security_opt, Some(vec!["no-new-privileges:true".into()]));
    assert_eq!(h.pid_mode.as_deref(), Some("host"));
    assert_eq!(h.ipc_mode.as_deref(), Some("shareable"));
    assert_eq!(h.uts_mode.as_deref(), Some("host"));
    assert_eq!(h.userns_mode.as_deref(), Some("host"));
    assert_eq!(h.cgroup_parent.as_deref(), Some("m.slice"));
    assert_eq!(h.group_add, Some(vec!["audio".into(), "1001".into()]));
    assert_eq!(h.runtime.as_deref(), Some("runc"));
}

#[test]
fn kernel_dns_log_and_device_keys() {
    let h = host(&svc(
        "    ulimits: {nproc: 65535, nofile: {soft: 20000, hard: 40000}}\n    sysctls: [net.core.somaxconn=1024]\n    tmpfs: [/run, \"/tmp:size=64m,mode=1777\"]\n    devices: [\"/dev/fuse\", \"/dev/snd:/dev/audio:r\"]\n    dns: 1.1.1.1\n    dns_search: [example.org]\n    dns_opt: [ndots:2]\n    logging: {driver: json-file, options: {max-size: 10m, max-file: 3}}\n    extra_hosts: {db: [10.0.0.1, 10.0.0.2]}\n",
    ));
    let mut ul: Vec<_> = h
        .ulimits
        .expect("ulimits")
        .into_iter()
        .map(|u| (u.name.expect("name"), u.soft, u.hard))
        .collect();
    ul.sort();
    assert_eq!(
        ul,
        [
            ("nofile".into(), Some(20000), Some(40000)),
            ("nproc".into(), Some(65535), Some(65535))
        ]
    );
    assert_eq!(h.sysctls.expect("sysctls")["net.core.somaxconn"], "1024");
    let tmpfs = h.tmpfs.expect("tmpfs");
    assert_eq!(
        (tmpfs["/run"].as_str(), tmpfs["/tmp"].as_str()),
        ("", "size=64m,mode=1777")
    );
    let devs: Vec<_> = h
        .devices
        .expect("devices")
        .into_iter()
        .map(|d| {
            (
                d.path_on_host.expect("host"),
                d.path_in_container.expect("ctr"),
                d.cgroup_permissions.expect("perms"),
            )
        })
        .collect();
    assert_eq!(
        devs,
        [
            ("/dev/fuse".into(), "/dev/fuse".into(), "rwm".into()),
            ("/dev/snd".into(), "/dev/audio".into(), "r".into())
        ]
    );
    assert_eq!(h.dns, Some(vec!["1.1.1.1".into()]));
    assert_eq!(h.dns_search, Some(vec!["example.org".into()]));
    assert_eq!(h.dns_options, Some(vec!["ndots:2".into()]));
    let log = h.log_config.expect("log config");
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert_eq!(log.config.expect("options")["max-file"], "3");
    assert_eq!(
        h.extra_hosts,
        Some(vec!["db:10.0.0.1".into(), "db:10.0.0.2".into()])
    );
}

#[test]
fn network_mode_service_and_links_resolve_to_container_names() {
    let d = desired(
        "services:\n  db: {image: busybox}\n  web:\n    image: busybox\n    links: [\"db:database\"]\n    volumes_from: [\"db:ro\", \"container:other\"]\n  side:\n    image: busybox\n    network_mode: service:db\n  h:\n    image: busybox\n    network_mode: host\n",
        &[],
    )
    .expect("valid");
    let web_spec = spec_of(&d, "web");
    let web_ep = super::endpoint(web_spec, &web_spec.networks["app_default"]);
    assert_eq!(
        web_ep.links.expect("links"),
        ["app-db-1:database", "app-db-1:db-1", "app-db-1:app-db-1"]
    );
    let web = container_body(web_spec, &ctx()).host_config.expect("hc");
    assert_eq!(
        web.volumes_from,
        Some(vec!["app-db-1:ro".into(), "other".into()])
    );
    let side = container_body(spec_of(&d, "side"), &ctx());
    assert_eq!(
        side.host_config.expect("hc").network_mode.as_deref(),
        Some("container:app-db-1")
    );
    assert!(side.networking_config.is_none());
    assert!(
        spec_of(&d, "side").depends_on.contains_key("db"),
        "implicit dependency"
    );
    let h = container_body(spec_of(&d, "h"), &ctx());
    assert_eq!(
        h.host_config.expect("hc").network_mode.as_deref(),
        Some("host")
    );
    assert!(
        !d.networks.is_empty(),
        "web and db still use the default network"
    );
}

#[test]
fn pid_and_ipc_service_join_that_services_container_after_it_starts() {
    let d = desired(
        "services:\n  db: {image: busybox, ipc: shareable}\n  named: {image: busybox, container_name: the-named}\n  web:\n    image: busybox\n    pid: service:db\n    ipc: service:named\n  other:\n    image: busybox\n    pid: container:elsewhere\n    ipc: host\n",
        &[],
    )
    .expect("valid");
    let web = container_body(spec_of(&d, "web"), &ctx())
        .host_config
        .expect("hc");
    assert_eq!(web.pid_mode.as_deref(), Some("container:app-db-1"));
    assert_eq!(web.ipc_mode.as_deref(), Some("container:the-named"));
    let deps: Vec<&String> = spec_of(&d, "web").depends_on.keys().collect();
    assert_eq!(deps, ["db", "named"], "both start before web");
    let other = container_body(spec_of(&d, "other"), &ctx())
        .host_config
        .expect("hc");
    assert_eq!(other.pid_mode.as_deref(), Some("container:elsewhere"));
    assert_eq!(other.ipc_mode.as_deref(), Some("host"));
    assert!(spec_of(&d, "other").depends_on.is_empty());

    let e = errors(&svc("    pid: service:nope\n    ipc: service:web2\n"));
    assert!(
        e.contains("services.web.pid: pid refers to unknown service \"nope\""),
        "{e}"
    );
    assert!(
        e.contains("services.web.ipc: ipc refers to unknown service \"web2\""),
        "{e}"
    );
}

#[test]
fn gpus_and_deploy_devices_become_device_requests_as_compose_makes_them() {
    let h = host(&svc(
        "    deploy:\n      resources:\n        reservations:\n          devices: [{driver: nvidia, capabilities: [gpu, utility]}]\n    gpus:\n      - {driver: nvidia, count: 2, options: {x: y}}\n      - {device_ids: ['0', GPU-3a], capabilities: [compute]}\n",
    ));
    type Request = (
        Option<String>,
        Option<i64>,
        Option<Vec<String>>,
        Vec<Vec<String>>,
    );
    let reqs: Vec<Request> = h
        .device_requests
        .expect("device requests")
        .into_iter()
        .map(|d| {
            (
                d.driver,
                d.count,
                d.device_ids,
                d.capabilities.unwrap_or_default(),
            )
        })
        .collect();
    let caps = |c: &[&str]| vec![c.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    assert_eq!(
        reqs,
        [
            // Neither count nor device_ids: every device (compose-go's default).
            (
                Some("nvidia".into()),
                Some(-1),
                None,
                caps(&["gpu", "utility"])
            ),
            (Some("nvidia".into()), Some(2), None, caps(&["gpu"])),
            (
                None,
                None,
                Some(vec!["0".into(), "GPU-3a".into()]),
                caps(&["compute", "gpu"])
            ),
        ],
        "deploy reservations first, then gpus with the implied gpu capability"
    );
    let all = host(&svc("    gpus: all\n"))
        .device_requests
        .expect("gpus: all");
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].count, all[0].capabilities.clone()),
        (Some(-1), Some(caps(&["gpu"])))
    );

    let e = errors(&svc("    gpus: some\n"));
    assert!(e.contains("services.web.gpus"), "{e}");
    let e = errors(&svc("    gpus: [{count: 1, device_ids: ['0']}]\n"));
    assert!(
        e.contains("services.web.gpus[0]: count and device_ids cannot both be set"),
        "{e}"
    );
    let e = errors(&svc("    gpus: [{count: 1, drivr: nvidia}]\n"));
    assert!(
        e.contains("services.web.gpus[0].drivr") && e.contains("did you mean \"driver\""),
        "{e}"
    );
}

#[test]
fn cdi_device_names_are_device_requests_not_paths() {
    let h = host(&svc(
        "    devices: [nvidia.com/gpu=all, /dev/fuse, vendor.example/class=dev-0]\n    gpus: all\n",
    ));
    let paths: Vec<Option<String>> = h
        .devices
        .expect("devices")
        .into_iter()
        .map(|d| d.path_on_host)
        .collect();
    assert_eq!(paths, [Some("/dev/fuse".to_string())]);
    let reqs = h.device_requests.expect("device requests");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].driver.as_deref(), Some("cdi"), "CDI before gpus");
    assert_eq!(
        reqs[0].device_ids,
        Some(vec![
            "nvidia.com/gpu=all".into(),
            "vendor.example/class=dev-0".into()
        ])
    );
    assert_eq!(reqs[1].count, Some(-1));
}

#[test]
fn a_bind_volume_of_a_relative_path_names_the_bind_to_write_instead() {
    let e = errors(
        "services:\n  web: {image: busybox, volumes: [data:/data]}\nvolumes:\n  data:\n    driver_opts: {type: none, o: bind, device: ./data}\n",
    );
    assert!(
        e.contains("compose.yaml:5: volumes.data.driver_opts.device: a bind volume of the relative path \"./data\" is not supported: mount it as a bind (`./data:/target`"),
        "{e}"
    );
}

#[test]
fn a_short_syntax_read_only_bind_missing_from_the_repo_is_an_empty_directory_as_compose_creates() {
    // ente's `./data:/data:ro`, mailcow's `./data/assets/ssl:...:ro`: compose creates the
    // missing source directory; so does the agent (the stack's data directory), with a warning.
    let d = desired(&svc("    volumes: [\"./certs:/certs:ro\"]\n"), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let m = &spec_of(&d, "web").mounts[0];
    assert!(m.read_only);
    assert!(
        matches!(&m.source, crate::desired::spec::MountSource::Data { path, seed: None } if path == "certs"),
        "{:?}",
        m.source
    );
    assert_warns(&d, "services.web.volumes[0]", "is not in the repo");
    // Long syntax creates nothing unless `bind.create_host_path: true`, as in compose-go.
    let e = errors(&svc(
        "    volumes: [{type: bind, source: ./certs, target: /certs, read_only: true}]\n",
    ));
    assert!(e.contains("\"./certs\" does not exist"), "{e}");
    let d = desired(
        &svc("    volumes: [{type: bind, source: ./certs, target: /certs, read_only: true, bind: {create_host_path: true}}]\n"),
        &[],
    );
    assert!(d.is_ok(), "{:?}", d.err());
}

#[test]
fn post_start_and_pre_stop_hooks_become_the_specs_exec_commands() {
    let d = desired(
        &svc("    post_start:\n      - {command: \"sh -c 'mc mb b'\", user: 1000, working_dir: /data, environment: {A: '1', UNSET: null}}\n    pre_stop:\n      - command: [flush, --all]\n        privileged: true\n"),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rt = &spec_of(&d, "web").runtime;
    let h = &rt.post_start[0];
    assert_eq!(h.command, ["sh", "-c", "mc mb b"]);
    assert_eq!(h.user.as_deref(), Some("1000"));
    assert_eq!(h.working_dir.as_deref(), Some("/data"));
    assert_eq!(h.environment, ["A=1"]);
    assert_eq!(rt.pre_stop[0].command, ["flush", "--all"]);
    assert!(rt.pre_stop[0].privileged);
    // A privileged hook is root on the host: only the host's policy grants it.
    let refused = refused_by_a_strict_policy(&d);
    assert!(
        refused
            .iter()
            .any(|m| m.contains("services.web.pre_stop: a privileged lifecycle hook")),
        "{refused:?}"
    );
    let e = errors(&svc("    post_start: [{command: x, when: later}]\n"));
    assert!(
        e.contains("services.web.post_start[0].when: unknown key \"when\" (supported: command, user, privileged, working_dir, environment)"),
        "{e}"
    );
}

#[test]
fn label_file_labels_reach_the_container_under_the_labels_key() {
    // compose 2.32+: `label_file` reads KEY=value files in order; `labels:` wins over them.
    let d = desired(
        &svc("    label_file: [./a.labels, ./b.labels]\n    labels: {keep: from-labels}\n"),
        &[
            (
                "a.labels",
                "# traefik\ntraefik.enable=true\nkeep=from-a\nwho=a\n",
            ),
            ("b.labels", "who=b\n"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let labels = &spec_of(&d, "web").labels;
    assert_eq!(labels["traefik.enable"], "true");
    assert_eq!(labels["who"], "b");
    assert_eq!(labels["keep"], "from-labels");
    let e = errors(&svc("    label_file: ./nope.labels\n"));
    assert!(
        e.contains("services.web.label_file[0]: \"./nope.labels\" does not exist"),
        "{e}"
    );
}

#[test]
fn use_api_socket_binds_the_docker_socket_under_the_hosts_policy() {
    let d = desired(&svc("    use_api_socket: true\n"), &[]).unwrap_or_else(|e| panic!("{e}"));
    let m = &spec_of(&d, "web").mounts[0];
    assert_eq!(m.target, "/var/run/docker.sock");
    assert!(
        matches!(&m.source, crate::desired::spec::MountSource::Host { path } if path == "/var/run/docker.sock")
    );
    let refused = refused_by_a_strict_policy(&d);
    assert!(
        refused
            .iter()
            .any(|m| m.contains("services.web.use_api_socket: binding the Docker socket")),
        "{refused:?}"
    );
}

#[test]
fn a_service_naming_the_implicit_default_network_joins_it() {
    // SigNoz's collector: `networks: [default]` with no top-level `networks:`, as compose allows.
    let d = desired(
        "services:\n  web:\n    image: busybox\n    networks: [default, back]\nnetworks:\n  back: {}\n",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let nets: Vec<&String> = spec_of(&d, "web").networks.keys().collect();
    assert_eq!(nets, ["app_back", "app_default"]);
    assert!(d.networks.contains_key("app_default"));
}

#[test]
fn ports_long_form_and_ranges() {
    let h = host(&svc(
        "    ports:\n      - \"8000-8001:9000-9001\"\n      - \"127.0.0.1:7000-7005:7000\"\n      - {target: 53, published: \"5353\", protocol: udp, host_ip: 127.0.0.1, mode: host}\n",
    ));
    let b = h.port_bindings.expect("bindings");
    let port = |k: &str| {
        let v = b[k].as_ref().expect("binding");
        (
            v[0].host_ip.clone(),
            v[0].host_port.clone().unwrap_or_default(),
        )
    };
    assert_eq!(port("9000/tcp"), (None, "8000".into()));
    assert_eq!(port("9001/tcp"), (None, "8001".into()));
    assert_eq!(
        port("7000/tcp"),
        (Some("127.0.0.1".into()), "7000-7005".into())
    );
    assert_eq!(port("53/udp"), (Some("127.0.0.1".into()), "5353".into()));
}

#[test]
fn volumes_long_form() {
    let d = desired(
        &svc("    volumes:\n      - {type: tmpfs, target: /cache, tmpfs: {size: 64m, mode: 1777}}\n      - {type: volume, source: data, target: /data, volume: {nocopy: true, subpath: sub}}\n      - {type: bind, source: ./conf, target: /conf, read_only: true, bind: {propagation: rslave}}\nvolumes:\n  data: {driver: local, driver_opts: {type: tmpfs, device: tmpfs}}\n"),
        &[("conf/x", "1")],
    )
    .expect("valid");
    let m = container_body(spec_of(&d, "web"), &ctx())
        .host_config
        .expect("hc")
        .mounts
        .expect("mounts");
    assert_eq!(m[0].typ, Some(MountType::TMPFS));
    let t = m[0].tmpfs_options.as_ref().expect("tmpfs options");
    assert_eq!((t.size_bytes, t.mode), (Some(64 << 20), Some(1777)));
    let v = m[1].volume_options.as_ref().expect("volume options");
    assert_eq!((v.no_copy, v.subpath.as_deref()), (Some(true), Some("sub")));
    assert_eq!(
        m[2].bind_options
            .as_ref()
            .and_then(|b| b.propagation)
            .map(|p| p.to_string()),
        Some("rslave".into())
    );
    let vol = &d.volumes["app_data"];
    assert_eq!(vol.driver.as_deref(), Some("local"));
    assert_eq!(vol.driver_opts["type"], "tmpfs");
}

#[test]
fn networks_long_form_and_top_level_options() {
    let d = desired(
        "services:\n  web:\n    image: busybox\n    mac_address: 02:42:ac:11:00:99\n    networks:\n      back: {priority: 10, aliases: [api], ipv4_address: 172.31.0.5, ipv6_address: \"fd00::5\", link_local_ips: [169.254.1.1]}\n      front: {priority: 100}\nnetworks:\n  front: {internal: true, attachable: true, driver_opts: {com.docker.network.bridge.name: br-x}}\n  back:\n    enable_ipv6: true\n    ipam:\n      driver: default\n      config:\n        - {subnet: 172.31.0.0/24, ip_range: 172.31.0.0/25, gateway: 172.31.0.1, aux_addresses: {r: 172.31.0.2}}\n        - {subnet: \"fd00::/64\"}\n  old: {external: {name: shared}}\n",
        &[],
    )
    .expect("valid");
    let web = spec_of(&d, "web");
    let b = container_body(web, &ctx());
    assert_eq!(
        b.host_config.expect("hc").network_mode.as_deref(),
        Some("app_front"),
        "highest priority first"
    );
    let back = super::endpoint(web, &web.networks["app_back"]);
    let ipam = back.ipam_config.expect("ipam");
    assert_eq!(ipam.ipv6_address.as_deref(), Some("fd00::5"));
    assert_eq!(ipam.link_local_ips, Some(vec!["169.254.1.1".into()]));
    assert_eq!(back.aliases, Some(vec!["web".into(), "api".into()]));
    let front = super::endpoint(web, &web.networks["app_front"]);
    assert_eq!(front.mac_address.as_deref(), Some("02:42:ac:11:00:99"));
    assert!(back.mac_address.is_none());
    let f = &d.networks["app_front"].options;
    assert!(f.internal && f.attachable);
    assert_eq!(f.driver_opts["com.docker.network.bridge.name"], "br-x");
    let bk = &d.networks["app_back"].options;
    assert_eq!(bk.enable_ipv6, Some(true));
    assert_eq!(bk.ipam_config.len(), 2);
    assert_eq!(bk.ipam_config[0].ip_range.as_deref(), Some("172.31.0.0/25"));
    assert!(d.external_networks.contains("shared"));
}

#[test]
fn the_project_env_file_feeds_environment_secrets_and_bare_environment_entries() {
    // zulip keeps its secrets in `.env` (`secrets: {x: {environment: ZULIP__X}}`): Compose reads
    // a secret's `environment:` source, an `environment:` entry without a value and a build arg
    // without one from the project environment, `.env` included, not only the process's.
    let d = desired(
        "services:\n  web:\n    image: busybox\n    environment: [FROM_DOTENV]\n    secrets: [pw]\nsecrets:\n  pw: {environment: PW}\n",
        &[(".env", "PW=from-dotenv\nFROM_DOTENV=yes\n")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let web = spec_of(&d, "web");
    assert!(
        matches!(&web.mounts[0].source, crate::desired::spec::MountSource::Generated { content, .. } if content.0 == b"from-dotenv"),
        "secret content from .env"
    );
    assert_eq!(
        web.environment.get("FROM_DOTENV").map(String::as_str),
        Some("yes")
    );
}

#[test]
fn secrets_and_configs_become_read_only_files() {
    let d = desired(
        "services:\n  web:\n    image: busybox\n    secrets: [db_pass, {source: token, target: api_token, mode: 0400, uid: '1000'}]\n    configs: [nginx, {source: inline, target: /etc/app.conf}]\nsecrets:\n  db_pass: {file: ./secrets/db.txt}\n  token: {environment: TOKEN}\nconfigs:\n  nginx: {file: ./nginx.conf}\n  inline: {content: \"a=1\\n\"}\n",
        &[("secrets/db.txt", "pw"), ("nginx.conf", "events {}")],
    )
    .expect("valid");
    let web = spec_of(&d, "web");
    let targets: Vec<(&str, bool)> = web
        .mounts
        .iter()
        .map(|m| (m.target.as_str(), m.read_only))
        .collect();
    assert_eq!(
        targets,
        [
            ("/run/secrets/db_pass", true),
            ("/run/secrets/api_token", true),
            ("/nginx", true),
            ("/etc/app.conf", true)
        ]
    );
    assert_eq!(web.mounts[1].options.file_mode, Some(0o400));
    let shown = format!("{:?} {}", web, serde_json::to_string(web).expect("json"));
    assert!(!shown.contains("s3cret"), "secret content leaks: {shown}");
    let e = errors(
        "services:\n  web: {image: busybox, secrets: [nope]}\nsecrets:\n  ext: {external: true}\n",
    );
    assert!(
        e.contains("services.web.secrets[0]: secret \"nope\" is not declared"),
        "{e}"
    );
    assert!(e.contains("secrets.ext: external secrets"), "{e}");
}

#[test]
fn build_long_form_and_dockerignore() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = desired_at(
        dir.path(),
        "services:\n  web:\n    build:\n      context: ./app\n      dockerfile_inline: |\n        FROM scratch\n      target: prod\n      args: {V: \"1\"}\n      labels: {x: y}\n      network: host\n      shm_size: 128m\n      extra_hosts: [\"h:10.0.0.1\"]\n      cache_from: [app:cache]\n      no_cache: true\n      pull: true\n      ssh: [default]\n",
        &[("app/keep.txt", "k"), ("app/junk.log", "1"), ("app/.dockerignore", "*.log\n")],
    )
    .expect("valid");
    let web = spec_of(&d, "web");
    let b = web.build.as_ref().expect("build");
    assert_eq!(b.dockerfile, crate::desired::spec::INLINE_DOCKERFILE);
    assert_eq!(b.options.target.as_deref(), Some("prod"));
    assert_eq!(b.options.shm_size, Some(128 << 20));
    assert_eq!(b.options.extra_hosts, ["h:10.0.0.1"]);
    assert!(b.options.no_cache && b.options.pull);
    assert!(d
        .warnings
        .iter()
        .any(|w| w.path == "services.web.build.ssh"));
    // Editing an ignored file changes neither the context digest nor the spec.
    let again = desired(
        "services:\n  web:\n    build:\n      context: ./app\n      dockerfile_inline: |\n        FROM scratch\n      target: prod\n      args: {V: \"1\"}\n      labels: {x: y}\n      network: host\n      shm_size: 128m\n      extra_hosts: [\"h:10.0.0.1\"]\n      cache_from: [app:cache]\n      no_cache: true\n      pull: true\n      ssh: [default]\n",
        &[("app/keep.txt", "k"), ("app/junk.log", "2"), ("app/.dockerignore", "*.log\n")],
    )
    .expect("valid");
    assert_eq!(spec_of(&again, "web").hash(), web.hash());
    let tar =
        crate::engine::pack_context_with(&b.context, &[("X", b"FROM scratch\n")]).expect("tar");
    let names: Vec<String> = tar::Archive::new(tar.as_slice())
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert!(
        names.contains(&"keep.txt".to_string()) && names.contains(&"X".to_string()),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with(".log")), "{names:?}");
}

#[test]
fn newer_than_compose_1_29_keys() {
    // healthcheck start_interval and disable, env_file required: false, profiles.
    let d = desired(
        "services:\n  web:\n    image: busybox\n    env_file: [{path: ./missing.env, required: false}, ./a.env]\n    healthcheck: {test: [CMD, true], interval: 10s, start_interval: 2s, start_period: 1m}\n  off:\n    image: busybox\n    healthcheck: {disable: true}\n  tools:\n    image: busybox\n    profiles: [tools]\n  debug:\n    image: busybox\n    profiles: [debug]\n",
        &[("a.env", "A=1\n")],
    )
    .expect("valid");
    let web = container_body(spec_of(&d, "web"), &ctx());
    let hc = web.healthcheck.expect("healthcheck");
    assert_eq!(hc.start_interval, Some(2_000_000_000));
    assert_eq!(hc.start_period, Some(60_000_000_000));
    assert!(web.env.expect("env").contains(&"A=1".to_string()));
    let off = container_body(spec_of(&d, "off"), &ctx());
    assert_eq!(off.healthcheck.expect("hc").test, Some(vec!["NONE".into()]));
    let names: Vec<&str> = d.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        names,
        ["web", "off", "debug"],
        "profile tools is not enabled on this host"
    );
}

#[test]
fn values_checked_before_apply() {
    let e = errors(
        "name: My_App\nversion: \"3.8\"\nservices:\n  web:\n    image: \"\"\n    container_name: \"-bad name\"\n    shm_size: 2 gigabytes\n    mem_limit: lots\n    stop_grace_period: 10\n    ulimits: {nofile: {soft: 10, hard: 5}}\n    cpus: half\n",
    );
    for want in [
        "compose.yaml:1: name: \"My_App\" is not a valid project name",
        "compose.yaml:5: services.web.image: image is empty",
        "compose.yaml:6: services.web.container_name: \"-bad name\" is not a valid container name",
        "compose.yaml:7: services.web.shm_size: \"2 gigabytes\" is not a size",
        "compose.yaml:8: services.web.mem_limit: \"lots\" is not a size",
        "compose.yaml:9: services.web.stop_grace_period: \"10\" is not a duration",
        "compose.yaml:11: services.web.cpus: expected a number, found \"half\"",
        "services.web.ulimits.nofile: soft limit 10 is above hard limit 5",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    assert!(
        e.contains("warning: stacks/app/compose.yaml:2: version"),
        "{e}"
    );
}

#[test]
fn unknown_keys_name_the_place() {
    let e = errors(&svc(
        "    build: {context: ., targt: x}\n    deploy: {resources: {limits: {memroy: 1g}}}\n",
    ));
    assert!(
        e.contains("services.web.build.targt: unknown key \"targt\""),
        "{e}"
    );
    assert!(e.contains("target"), "{e}");
    assert!(
        e.contains("services.web.deploy.resources.limits.memroy"),
        "{e}"
    );
}

#[test]
fn services_without_new_keys_keep_their_hash() {
    // Pinned before the Compose Specification keys existed: containers are not recreated
    // by an upgrade.
    let d = desired(&svc("    command: [sh]\n    ports: [\"8080:80\"]\n"), &[]).expect("valid");
    assert_eq!(
        spec_of(&d, "web").hash(),
        PINNED_HASH,
        "{}",
        serde_json::to_string(spec_of(&d, "web")).expect("json")
    );
}

const PINNED_HASH: &str = "788c535a580419068585aa58fc6ccc18cbcd9101c55ba9fb5c2b0e95180c171b";

#[test]
fn ulimits_and_cap_drop_keep_file_order() {
    let h = host(&svc(
        "    ulimits: {nproc: 512, nofile: 1024}\n    cap_drop: [NET_RAW, MKNOD]\n",
    ));
    let names: Vec<String> = h
        .ulimits
        .expect("ulimits")
        .into_iter()
        .filter_map(|u| u.name)
        .collect();
    assert_eq!(names, ["nproc", "nofile"]);
    assert_eq!(h.cap_drop, Some(vec!["NET_RAW".into(), "MKNOD".into()]));
}

#[test]
fn include_brings_in_files_with_their_own_directory() {
    let d = desired(
        "include:\n  - ./db/compose.yaml\n  - path: [./cache.yaml]\nservices:\n  web:\n    image: busybox\n    networks: [back]\n    depends_on: [db]\nnetworks:\n  back: {}\n",
        &[
            (
                "db/compose.yaml",
                "services:\n  db:\n    image: busybox\n    volumes: [\"./init:/init:ro\"]\n    networks: [back]\n    secrets: [pw]\nsecrets:\n  pw: {file: ./pw.txt}\n",
            ),
            ("db/init/schema.sql", "create table t();"),
            ("db/pw.txt", "pw"),
            ("cache.yaml", "services:\n  cache: {image: busybox}\n"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = d.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names, ["web", "db", "cache"]);
    let db = spec_of(&d, "db");
    assert!(db.networks.contains_key("app_back"), "shared network");
    let sources: Vec<String> = db
        .mounts
        .iter()
        .filter_map(|m| match &m.source {
            crate::desired::spec::MountSource::Repo { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sources, ["stacks/app/db/init", "stacks/app/db/pw.txt"]);

    let e = errors("include: [./a.yaml]\nservices:\n  web: {image: busybox}\n");
    assert!(e.contains("include[0]: \"./a.yaml\" does not exist"), "{e}");
    let dir = tempfile::tempdir().expect("temp dir");
    let e = desired_at(
        dir.path(),
        "include: [./a.yaml]\nservices:\n  web: {image: busybox}\n",
        &[(
            "a.yaml",
            "include: [./compose.yaml]\nservices:\n  web: {image: busybox}\n",
        )],
    )
    .expect_err("a cycle is an error");
    assert!(e.contains("include cycle"), "{e}");
}

#[test]
fn replicas_are_numbered_as_compose_numbers_them() {
    let d = desired(
        &svc("    deploy: {replicas: 3}\n    ports: [\"127.0.0.1:8000-8002:80\", \"80\"]\n"),
        &[],
    )
    .expect("valid");
    let web = spec_of(&d, "web");
    assert_eq!(web.replicas, 3);
    let third = web.replica(3);
    assert_eq!(third.container_name, "app-web-3");
    let b = container_body(&third, &ctx());
    let labels = b.labels.expect("labels");
    assert_eq!(labels["com.docker.compose.container-number"], "3");
    assert_eq!(labels["com.docker.compose.service"], "web");
    // Replica 1 is the service's own spec: a service that scales keeps its first container.
    assert_eq!(web.replica(1).hash(), web.hash());
    assert_eq!(web.replica_named("app-web-2").map(|r| r.number), Some(2));
    assert!(web.replica_named("app-web-4").is_none());
    assert_eq!(
        spec_of(&desired(&svc("    scale: 0\n"), &[]).expect("valid"), "web").replicas,
        0
    );
}

#[test]
fn what_one_container_holds_cannot_be_replicated() {
    let e = errors(&svc("    container_name: one\n    scale: 2\n    ports: [\"8080:80\", \"9000-9001:90\", \"7000-7001:70\"]\n    mac_address: 02:42:ac:11:00:02\n"));
    for want in [
        "services.web.container_name: container_name \"one\" names one container and scale asks for 2 containers",
        "services.web.ports[0]: host port 8080 can be published by one container only and scale asks for 2 containers: give a range (\"8080-8081:80\")",
        "services.web.mac_address: one mac_address cannot be given to several containers",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
    assert!(
        !e.contains("ports[1]") && !e.contains("ports[2]"),
        "ranges with room are fine: {e}"
    );
    let e = errors(&svc(
        "    deploy: {replicas: 3}\n    ports: [\"9000-9001:90\"]\n",
    ));
    assert!(e.contains("services.web.ports[0]: host port range 9000-9001 has fewer ports than the 3 containers deploy.replicas asks for"), "{e}");
    let e = errors("services:\n  web: {image: busybox, scale: 2}\n  other: {image: busybox, container_name: app-web-2}\n");
    assert!(
        e.contains(
            "services.other.container_name: container name \"app-web-2\" is also used by app/web"
        ),
        "{e}"
    );
    let e = errors(&svc("    deploy: {replicas: 3}\n    scale: 2\n"));
    assert!(
        e.contains("services.web.scale: scale: 2 and deploy.replicas: 3 disagree"),
        "{e}"
    );
}
