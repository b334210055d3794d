use super::*;

#[test]
fn mixed_syntaxes_load() {
    let text = r#"
services:
  web:
    image: busybox
    command: httpd -f -p 8080
    environment: [A=1, B]
    ports:
      - "8080:80"
      - {target: 53, published: "5353", protocol: udp, host_ip: 127.0.0.1}
    volumes:
      - data:/data
      - ./conf/httpd.conf:/etc/httpd.conf:ro
      - {type: bind, source: ./x, target: /x, read_only: true}
    networks:
      infra: {ipv4_address: 172.30.0.5, aliases: [www]}
    depends_on:
      db: {condition: service_healthy}
    healthcheck: {test: "wget -q -O- localhost:8080", interval: 5s, retries: 3}
    labels: {tier: "1"}
  db:
    image: busybox
    depends_on: [web]
    networks: [infra]
    environment: {N: 3, T: true}
    expose: [9090, "4433/udp"]
"#;
    let f: ComposeFile = serde_yaml::from_str(text).unwrap();
    let web = &f.services["web"];
    assert_eq!(
        web.command.as_ref().unwrap().0,
        ["httpd", "-f", "-p", "8080"]
    );
    assert_eq!(web.environment.0["B"], None);
    assert_eq!(web.ports[1].0[0].protocol, Protocol::Udp);
    assert_eq!(web.ports[1].0[0].published, Some(5353));
    assert_eq!(web.volumes[0].kind, MountKind::Volume);
    assert_eq!(web.volumes[1].kind, MountKind::Bind);
    assert!(web.volumes[1].read_only && web.volumes[2].read_only);
    assert_eq!(web.networks.0["infra"].aliases, ["www"]);
    assert_eq!(web.depends_on.0["db"], Condition::ServiceHealthy);
    assert_eq!(
        web.healthcheck.as_ref().unwrap().test.as_ref().unwrap().0,
        ["CMD-SHELL", "wget -q -O- localhost:8080"]
    );
    let db = &f.services["db"];
    assert_eq!(db.depends_on.0["web"], Condition::ServiceStarted);
    assert_eq!(db.environment.0["N"].as_deref(), Some("3"));
    assert_eq!(db.environment.0["T"].as_deref(), Some("true"));
    let exposed: Vec<_> = db
        .expose
        .iter()
        .flat_map(|s| parse_expose(s.text()).unwrap())
        .collect();
    assert_eq!(exposed, [(9090, Protocol::Tcp), (4433, Protocol::Udp)]);
    assert!(parse_expose("99999").is_err());
}

#[test]
fn long_forms_load() {
    let text = r#"
services:
  app:
    build:
      context: ./app
      target: prod
      dockerfile_inline: "FROM scratch\n"
      args: [A=1]
      cache_from: [x]
    env_file:
      - ./a.env
      - {path: ./b.env, required: false}
    ulimits: {nproc: 65535, nofile: {soft: 1024, hard: 2048}}
    devices: ["/dev/fuse", "/dev/a:/dev/b:r", {source: /dev/c, permissions: rw}]
    volumes:
      - {type: tmpfs, target: /t, tmpfs: {size: 64m, mode: 1777}}
      - {type: bind, source: ./d, target: /d, bind: {propagation: rshared, create_host_path: true}}
      - {type: volume, source: v, target: /v, volume: {nocopy: true}}
      - ./e:/e:ro,z
    secrets: [s1, {source: s2, target: /etc/s2, mode: 0400}]
    extends: {service: base, file: common.yaml}
    deploy: {replicas: 2, resources: {limits: {cpus: "0.5", memory: 512M}}, placement: {constraints: [x]}}
    extra_hosts: {h: ["10.0.0.1", "10.0.0.2"]}
"#;
    let f: ComposeFile = serde_yaml::from_str(text).unwrap();
    let app = &f.services["app"];
    let b = app.build.as_ref().unwrap();
    assert_eq!(
        (b.context.as_str(), b.target.as_deref()),
        ("./app", Some("prod"))
    );
    assert_eq!(b.dockerfile_inline.as_deref(), Some("FROM scratch\n"));
    let envs = &app.env_file.as_ref().unwrap().0;
    assert_eq!((envs[0].required, envs[1].required), (true, false));
    assert_eq!(
        app.ulimits["nofile"],
        Ulimit {
            soft: 1024,
            hard: 2048
        }
    );
    assert_eq!(app.ulimits["nproc"].hard, 65535);
    assert_eq!(
        app.devices
            .iter()
            .map(|d| (d.target.as_str(), d.permissions.as_str()))
            .collect::<Vec<_>>(),
        [("/dev/fuse", "rwm"), ("/dev/b", "r"), ("/dev/c", "rw")]
    );
    assert_eq!(app.volumes[0].kind, MountKind::Tmpfs);
    assert_eq!(app.volumes[0].tmpfs_mode, Some(1777));
    assert_eq!(app.volumes[1].propagation.as_deref(), Some("rshared"));
    assert!(app.volumes[2].nocopy);
    assert_eq!(app.volumes[3].selinux.as_deref(), Some("z"));
    assert_eq!(app.secrets[1].target.as_deref(), Some("/etc/s2"));
    assert_eq!(
        app.extends.as_ref().unwrap().file.as_deref(),
        Some("common.yaml")
    );
    let deploy = app.deploy.as_ref().unwrap();
    assert_eq!(deploy.replicas, Some(2));
    assert_eq!(deploy.swarm_only(), ["placement"]);
    assert_eq!(app.extra_hosts.0.len(), 2);
}

#[test]
fn external_both_shapes() {
    let n: NetworkDef = serde_yaml::from_str("external: {name: shared}").unwrap();
    assert_eq!(
        (n.external.external, n.external.name.as_deref()),
        (true, Some("shared"))
    );
    let n: NetworkDef = serde_yaml::from_str("external: true").unwrap();
    assert!(n.external.external);
}

#[test]
fn supported_keys_by_place() {
    assert!(supported_keys_at("services.web.build.targt").contains(&"target"));
    assert!(supported_keys_at("services.web.ports[0].x").contains(&"published"));
    assert!(supported_keys_at("services.web.volumes[1].bind.x").contains(&"propagation"));
    assert!(supported_keys_at("services.web.deploy.resources.limits.x").contains(&"memory"));
    assert!(supported_keys_at("secrets.s.x").contains(&"environment"));
    assert!(supported_keys_at("x").contains(&"version"));
}
