//! Every validation rule on one broken fixture: all problems reported at once, each with file,
//! path and line, exit non-zero — and nothing already running is torn down.
use crate::support::docker::{container_id, container_state, docker};
use crate::support::fixture::Fixture;

const GOOD: &str = "name: t{id}-good\nservices:\n  keep:\n    image: {image}\n    container_name: t{id}-keep\n    command: sleep 3600\n    restart: unless-stopped\n";

const BROKEN: &str = r#"services:
  api:
    imagee: {image}
    image: {image}
    container_name: t{id}-keep
    environment:
      TOKEN: ${T{id}_UNSET_TOKEN}
    env_file: /etc/environment
    volumes:
      - ../../../outside:/x
      - ./escape:/y
      - /var/run/docker.sock:/var/run/docker.sock
    ports: ["127.0.0.1:18500:80"]
    networks:
      infra: {ipv4_address: "{net}.5"}
    depends_on: [ghost, web]
  web:
    image: {image}
    build: {context: ./ctx-link}
    ports: ["18500:80"]
    networks:
      infra: {ipv4_address: "{net}.5"}
    depends_on: [api]
  far:
    image: {image}
    networks:
      infra: {ipv4_address: "10.1.2.3"}
networks:
  infra:
    ipam: {config: [{subnet: "{net}.0/24"}]}
"#;

#[test]
fn every_problem_at_once_and_nothing_torn_down() {
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [good]}\n");
    f.write("stacks/good/compose.yaml", &f.fill(GOOD));
    f.ok("h", &["apply"]);
    let keep = container_id(&f.name("keep"));

    f.write(
        "hosts.yaml",
        "hosts:\n  default: {stacks: [good, bad, syntax]}\n",
    );
    f.write("stacks/bad/compose.yaml", &f.fill(BROKEN));
    f.write("stacks/syntax/compose.yaml", "services:\n  x: [unclosed\n");
    // Symlinks that lead out of the repo: a bind source and a build context.
    let outside = f.repo.path().parent().unwrap();
    std::os::unix::fs::symlink(outside, f.root().join("stacks/bad/escape")).unwrap();
    std::os::unix::fs::symlink(outside, f.root().join("stacks/bad/ctx-link")).unwrap();

    let o = f.run("h", &["validate"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let bad = "stacks/bad/compose.yaml";
    let expect = [
        format!("{bad}:3: services.api.imagee: unknown key \"imagee\"; did you mean \"image\"? (supported: image, build,"),
        format!("{bad}:7: services.api.environment.TOKEN: variable T{}_UNSET_TOKEN is not set", f.id),
        format!("{bad}:8: services.api.env_file: \"/etc/environment\" is absolute"),
        format!("{bad}:10: services.api.volumes[0]: \"../../../outside\" leaves the desired-state directory"),
        format!("{bad}:11: services.api.volumes[1]: \"./escape\" resolves through a symlink"),
        format!("{bad}:12: services.api.volumes[2]: binding the Docker socket /var/run/docker.sock gives the container root"),
        format!("{bad}:19: services.web.build.context: \"./ctx-link\" resolves through a symlink"),
        format!("{bad}:5: services.api.container_name: container name \"t{}-keep\" is also used by good/keep", f.id),
        format!("{bad}:22: services.web.networks.infra.ipv4_address: {}.5 is also assigned to bad/api", f.subnet_prefix()),
        format!("{bad}:27: services.far.networks.infra.ipv4_address: 10.1.2.3 is outside network bad_infra's subnet {}.0/24", f.subnet_prefix()),
        format!("{bad}:20: services.web.ports[0]: host port 0.0.0.0:18500/tcp is also published by bad/api"),
        format!("{bad}:16: services.api.depends_on.ghost: depends on unknown service \"ghost\""),
        "depends_on forms a cycle: api -> web -> api".to_string(),
        // The line of the `[` left open (granit-parser names it, not the end of input).
        "stacks/syntax/compose.yaml:2: YAML syntax:".to_string(),
    ];
    let missing: Vec<&String> = expect
        .iter()
        .filter(|e| !err.contains(e.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing diagnostics {missing:#?}\nin:\n{err}"
    );

    // apply refuses the same way and the running service is left alone.
    let o = f.run("h", &["apply"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was changed"));
    assert_eq!(container_id(&f.name("keep")), keep);
    assert_eq!(container_state(&f.name("keep")), "running");
}

#[test]
fn docker_socket_is_granted_by_the_host_policy_never_by_the_repo() {
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write(
        "stacks/s/compose.yaml",
        &f.fill("services:\n  agent:\n    image: {image}\n    volumes: [/var/run/docker.sock:/var/run/docker.sock:ro]\n    x-macula: {allow_docker_socket: true}\nx-notes: ignored like Compose does\n"),
    );
    let config = f.repo.path().join("agent.yaml");
    let validate = || {
        f.command("h", &["validate"])
            .env("MACULA_GITOPS_CONFIG", &config)
            .output()
            .unwrap()
    };
    std::fs::write(&config, "host: ignored\n").unwrap();
    let o = validate();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "stacks/s/compose.yaml:4: services.agent.volumes[0]: binding the Docker socket /var/run/docker.sock gives the container root on the host; the host's policy does not allow it (set `policy.docker_socket: true` in {})",
            config.display()
        )),
        "{err}"
    );
    std::fs::write(&config, "policy: {docker_socket: true}\n").unwrap();
    let o = validate();
    // The repo's opt-in is only a warning now.
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("x-macula.allow_docker_socket: no longer grants anything"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("ok: 1 services"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// YAML as Compose reads it, end to end: BOM + CRLF, an `x-` anchor merged with `<<`, numbers
/// and booleans from the project `.env`, and an unset variable that is only a warning.
#[test]
fn compose_yaml_as_compose_reads_it_reaches_the_engine() {
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [app]}\n");
    f.write("stacks/app/.env", "N=4\nRO=true\n");
    let text = "\u{feff}name: t{id}-app\r\nx-base: &base\r\n  image: {image}\r\n  command: sleep 3600\r\nservices:\r\n  web:\r\n    <<: *base\r\n    container_name: t{id}-web\r\n    read_only: ${RO}\r\n    labels: {note: 'x${T{id}_UNSET}'}\r\n    healthcheck:\r\n      test: [CMD, 'true']\r\n      retries: ${N}\r\n";
    f.write("stacks/app/compose.yaml", &f.fill(text));

    let o = f.run("h", &["validate"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "only a warning: {err}");
    let want = format!("warning: stacks/app/compose.yaml:10: services.web.labels.note: variable T{}_UNSET is not set", f.id);
    assert!(err.contains(&want), "{err}");

    f.ok("h", &["apply"]);
    let web = format!("t{}-web", f.id);
    let got = docker(&[
        "inspect",
        "-f",
        "{{.Config.Cmd}}|{{.HostConfig.ReadonlyRootfs}}|{{.Config.Healthcheck.Retries}}|{{index .Config.Labels \"note\"}}",
        &web,
    ]);
    assert_eq!(got.trim(), "[sleep 3600]|true|4|x");
}
