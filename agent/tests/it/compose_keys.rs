//! The Compose Specification keys beyond the first subset, applied by the agent binary on the
//! real engine and read back with `docker inspect` and `docker exec`: what the container really
//! gets, not what the agent meant to send.

use crate::support::docker::{container_id, docker, Cleanup};
use crate::support::fixture::Fixture;

const STACK: &str = r#"
name: t{id}
services:
  app:
    build:
      context: ./app
      target: prod
      dockerfile_inline: |
        FROM {image} AS base
        COPY . /ctx
        FROM base AS prod
        LABEL stage=prod
      args: {V: "1"}
      labels: {built.by: compose-test}
    container_name: t{id}-app
    command: [sh, -c, "sleep 3600"]
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    init: true
    read_only: true
    cap_drop: [NET_RAW]
    shm_size: 32m
    mem_limit: 64m
    cpus: 0.5
    pids_limit: 64
    ulimits: {nofile: {soft: 1024, hard: 2048}}
    sysctls: {net.ipv4.ip_unprivileged_port_start: "1024"}
    tmpfs: ["/run/cache:size=1m"]
    dns: [192.0.2.53]
    dns_search: [example.org]
    tty: true
    stdin_open: true
    logging: {driver: json-file, options: {max-size: 1m}}
    extra_hosts: ["alias.test:192.0.2.1"]
    volumes:
      - {type: tmpfs, target: /scratch, tmpfs: {size: 2m}}
    secrets: [pw, {source: token, target: api_token, mode: 0400}]
    configs: [{source: conf, target: /etc/app.conf}]
    deploy:
      resources: {limits: {memory: 48m}}
      restart_policy: {condition: on-failure, max_attempts: 2}
      placement: {constraints: [node.role==manager]}
    networks:
      back: {aliases: [api]}
  side:
    image: {image}
    container_name: t{id}-side
    command: [sh, -c, "sleep 3600"]
    network_mode: service:app
  extra:
    image: {image}
    container_name: t{id}-extra
    profiles: [debug]
networks:
  back:
    name: t{id}-back
    internal: true
    ipam: {config: [{subnet: "{net}.0/24", ip_range: "{net}.128/25"}]}
secrets:
  pw: {file: ./pw.txt}
  token: {environment: T_TOKEN}
configs:
  conf: {content: "mode=prod\n"}
"#;

fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name])
}

#[test]
fn specification_keys_reach_the_container() {
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write("stacks/s/compose.yaml", &f.fill(STACK));
    f.write("stacks/s/pw.txt", "hunter2\n");
    f.write("stacks/s/app/keep.txt", "k\n");
    f.write("stacks/s/app/junk.log", "j\n");
    f.write("stacks/s/app/.dockerignore", "*.log\n");
    f.write(".env", "T_TOKEN=tok-123\n");
    let out = f.ok("a", &["apply"]);
    assert!(out.contains("0 failed"), "{out}");
    let app = f.name("app");
    let mut c = Cleanup::default();
    c.container(&app);
    c.container(&f.name("side"));
    c.network(&f.name("back"));
    c.image(&inspect(&app, "{{.Config.Image}}"));

    // Build: target stage, inline Dockerfile, .dockerignore honoured, labels.
    assert_eq!(inspect(&app, "{{index .Config.Labels \"stage\"}}"), "prod");
    assert_eq!(docker(&["exec", &app, "ls", "/ctx"]), "keep.txt");

    // Config and HostConfig, as compose maps the keys.
    let want = [
        ("{{.Config.StopSignal}}", "SIGINT"),
        ("{{.Config.StopTimeout}}", "90"),
        ("{{.Config.Tty}} {{.Config.OpenStdin}}", "true true"),
        ("{{.HostConfig.Init}}", "true"),
        ("{{.HostConfig.ReadonlyRootfs}}", "true"),
        ("{{.HostConfig.CapDrop}}", "[NET_RAW]"),
        ("{{.HostConfig.ShmSize}}", &(32u64 << 20).to_string()),
        ("{{.HostConfig.Memory}}", &(48u64 << 20).to_string()),
        ("{{.HostConfig.NanoCpus}}", "500000000"),
        ("{{.HostConfig.PidsLimit}}", "64"),
        (
            "{{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}}{{end}}",
            "nofile=1024:2048",
        ),
        (
            "{{index .HostConfig.Sysctls \"net.ipv4.ip_unprivileged_port_start\"}}",
            "1024",
        ),
        ("{{index .HostConfig.Tmpfs \"/run/cache\"}}", "size=1m"),
        (
            "{{.HostConfig.Dns}} {{.HostConfig.DnsSearch}}",
            "[192.0.2.53] [example.org]",
        ),
        (
            "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}}",
            "json-file 1m",
        ),
        ("{{.HostConfig.ExtraHosts}}", "[alias.test:192.0.2.1]"),
        (
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
            "on-failure:2",
        ),
    ];
    for (format, expected) in want {
        assert_eq!(inspect(&app, format), expected, "{format}");
    }

    // Secrets and configs: read-only files where compose puts them, with the asked mode.
    assert_eq!(docker(&["exec", &app, "cat", "/run/secrets/pw"]), "hunter2");
    assert_eq!(
        docker(&["exec", &app, "cat", "/run/secrets/api_token"]),
        "tok-123"
    );
    assert_eq!(docker(&["exec", &app, "cat", "/etc/app.conf"]), "mode=prod");
    assert_eq!(
        docker(&["exec", &app, "stat", "-c", "%a", "/run/secrets/api_token"]),
        "400"
    );
    let write = std::process::Command::new("docker")
        .args(["exec", &app, "sh", "-c", "echo x > /run/secrets/pw"])
        .output()
        .expect("docker exec");
    assert!(!write.status.success(), "secret files are read-only");
    assert!(
        !inspect(&app, "{{json .Config}}").contains("tok-123"),
        "secret not in the config"
    );
    assert!(!out.contains("tok-123"), "secret not in the agent's output");

    // tmpfs volume, internal network with ip_range, network_mode service:, profiles.
    assert_eq!(
        inspect(
            &app,
            "{{range .Mounts}}{{if eq .Destination \"/scratch\"}}{{.Type}}{{end}}{{end}}"
        ),
        "tmpfs"
    );
    let back = f.name("back");
    assert_eq!(inspect(&back, "{{.Internal}}"), "true");
    assert_eq!(
        inspect(&back, "{{range .IPAM.Config}}{{.IPRange}}{{end}}"),
        format!("{}.128/25", f.subnet_prefix())
    );
    assert_eq!(
        inspect(&f.name("side"), "{{.HostConfig.NetworkMode}}"),
        format!("container:{}", container_id(&app))
    );
    assert!(
        !docker(&["ps", "-a", "--format", "{{.Names}}"]).contains(&f.name("extra")),
        "a service whose profile the host does not enable is not created"
    );

    // A second apply changes nothing: the new keys hash stably.
    let out = f.ok("a", &["apply"]);
    assert!(out.contains("0 failed, 0 tried"), "{out}");
}

const HOOKS: &str = r#"
name: t{id}
services:
  app:
    image: {image}
    container_name: t{id}-app
    command: [sh, -c, "sleep 3600"]
    tmpfs: ["/work:mode=1777"]
    post_start:
      - command: [sh, -c, "echo $$HOOK_VAR-$$(id -u) > /work/started"]
        user: "1000"
        environment: {HOOK_VAR: from-hook}
      - command: sh -c 'pwd >> /work/started'
        working_dir: /etc
  bad:
    image: {image}
    container_name: t{id}-bad
    command: [sh, -c, "sleep 3600"]
    post_start:
      - command: [sh, -c, "echo no bucket yet; exit 3"]
"#;

#[test]
fn post_start_hooks_run_in_the_started_container_and_a_failing_one_fails_the_service() {
    // ente's minio creates its buckets with a post_start hook; compose runs each hook in the
    // started container (its user, working_dir, environment) and fails `up` when one fails.
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write("stacks/s/compose.yaml", &f.fill(HOOKS));
    let out = f.run("a", &["apply"]);
    let mut c = Cleanup::default();
    c.container(&f.name("app"));
    c.container(&f.name("bad"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a failing hook fails apply:\n{text}");
    assert_eq!(
        docker(&["exec", &f.name("app"), "cat", "/work/started"]),
        "from-hook-1000\n/etc",
        "{text}"
    );
    assert!(
        text.contains("post_start[0] hook exited with status 3: no bucket yet"),
        "{text}"
    );
}
