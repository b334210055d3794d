//! Privileges from the host's agent config only, and binds that keep data — on the real engine:
//! host paths and capabilities refused until `policy:` grants them (`validate`, `diff` and
//! `apply` alike), read-write relative binds as persistent data directories seeded once,
//! read-only repo copies verified and re-made, links out of a bound directory refused.
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::docker::docker;
use crate::support::fixture::Fixture;

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const PRIVILEGED: &str = r#"
services:
  app:
    image: {image}
    container_name: t{id}-app
    command: sh -c "echo from-container > /media/written; sleep 3600"
    volumes:
      - {media}:/media
      - /etc/localtime:/etc/localtime:ro
      - ~/notes:/notes:ro
    cap_add: [NET_ADMIN]
    privileged: true
    pid: host
    devices: ["/dev/null:/dev/xnull"]
    security_opt: ["seccomp=unconfined", "no-new-privileges:true"]
"#;

#[test]
fn host_paths_and_capabilities_only_when_the_host_grants_them() {
    let f = Fixture::new();
    let host = tempfile::tempdir().expect("tempdir");
    let media = host.path().join("media");
    let home = host.path().join("home");
    std::fs::create_dir_all(&media).expect("mkdir");
    std::fs::create_dir_all(home.join("notes")).expect("mkdir");
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write(
        "stacks/s/compose.yaml",
        &f.fill(PRIVILEGED)
            .replace("{media}", &media.display().to_string()),
    );
    let config = f.repo.path().join("agent.yaml");
    let run = |args: &[&str]| {
        f.command("h", args)
            .env("MACULA_GITOPS_CONFIG", &config)
            .env("HOME", &home)
            .output()
            .expect("agent runs")
    };

    // Nothing granted: every refusal at once, naming the key and the file; the same for all verbs.
    std::fs::write(&config, "policy: {}\n").expect("write config");
    let cfg = config.display().to_string();
    for verb in ["validate", "diff", "apply"] {
        let o = run(&[verb]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{verb}: {out}");
        for want in [
            format!("stacks/s/compose.yaml:8: services.app.volumes[0]: host path {} is not allowed by the host's policy (grant it with `policy.host_paths: [\"{}:rw\"]`", media.display(), media.display()),
            format!("services.app.volumes[2]: host path {}/notes is not allowed", home.display()),
            format!("stacks/s/compose.yaml:11: services.app.cap_add: capability NET_ADMIN is not allowed by the host's policy (add it to `policy.cap_add` in {cfg})"),
            format!("stacks/s/compose.yaml:12: services.app.privileged: `privileged: true` (root on the host) is not allowed by the host's policy (set `policy.privileged: true` in {cfg})"),
            format!("stacks/s/compose.yaml:13: services.app.pid: `pid: host` is not allowed by the host's policy (set `policy.pid_host: true` in {cfg})"),
            format!("stacks/s/compose.yaml:14: services.app.devices: host device /dev/null is not allowed by the host's policy (add it to `policy.devices` in {cfg})"),
            format!("stacks/s/compose.yaml:15: services.app.security_opt: security_opt \"seccomp=unconfined\" is not allowed by the host's policy (add it to `policy.security_opt` in {cfg})"),
        ] {
            assert!(out.contains(&want), "{verb}: missing {want:?} in\n{out}");
        }
        assert!(
            !out.contains("/etc/localtime"),
            "{verb}: localtime is allowed by default: {out}"
        );
    }
    assert!(docker(&["ps", "-aq", "-f", &format!("name=t{}-app", f.id)]).is_empty());

    // `:ro` grants read-only only.
    std::fs::write(
        &config,
        format!(
            "policy:\n  host_paths: [\"{}:ro\", \"{}/notes:ro\"]\n  cap_add: [CAP_NET_ADMIN]\n",
            media.display(),
            home.display()
        ),
    )
    .expect("write config");
    let out = text(&run(&["validate"]));
    assert!(
        out.contains("is allowed read-only by the host's policy; bind it with `:ro`"),
        "{out}"
    );

    // Granted read-write: applied, and what the container writes lands in the host directory.
    // (This engine runs nested: privileged/pid/devices are checked above, not started here.)
    let privileged_keys = PRIVILEGED
        .find("    privileged")
        .expect("fixture has privileged");
    f.write(
        "stacks/s/compose.yaml",
        &f.fill(&PRIVILEGED[..privileged_keys])
            .replace("{media}", &media.display().to_string()),
    );
    std::fs::write(
        &config,
        format!(
            "policy:\n  host_paths: [\"{}\", \"{}:ro\"]\n  cap_add: [NET_ADMIN]\n  privileged: true\n  pid_host: true\n  devices: [/dev/null]\n  security_opt: [seccomp=unconfined]\n",
            host.path().display(),
            home.display()
        ),
    )
    .expect("write config");
    let o = run(&["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    crate::support::wait_until(
        std::time::Duration::from_secs(10),
        "the container wrote to the host path",
        || std::fs::read_to_string(media.join("written")).is_ok_and(|s| s == "from-container\n"),
    );
}

const BIND_VOLUME: &str = r#"
name: t{id}v
services:
  app:
    image: {image}
    container_name: t{id}-v-app
    command: sh -c "echo through-volume > /shared/written; sleep 3600"
    volumes: [shared:/shared]
volumes:
  shared:
    driver_opts: {type: none, o: bind, device: {dir}}
  disk:
    driver_opts: {type: ext4, device: /dev/null}
"#;

/// A `local` volume with `o: bind` is a bind mount of its `device`, and one of a `/dev/` device a
/// host device: the same grants as `- /path:/target` and `devices:`.
#[test]
fn bind_and_device_volumes_need_the_grants_a_bind_mount_and_a_device_need() {
    let f = Fixture::new();
    let host = tempfile::tempdir().expect("tempdir");
    let dir = host.path().join("shared");
    std::fs::create_dir_all(&dir).expect("mkdir");
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    let compose = f
        .fill(BIND_VOLUME)
        .replace("{dir}", &dir.display().to_string());
    f.write("stacks/s/compose.yaml", &compose);
    f.agent_config("policy: {}\n");
    let cfg = f.config_path().display().to_string();
    let o = f.run("h", &["validate"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for want in [
        format!("stacks/s/compose.yaml:11: volumes.shared.driver_opts.device: host path {} is not allowed by the host's policy (a volume with `o: bind` binds that host path; grant it with `policy.host_paths: [\"{}:rw\"]` — or a parent directory — in {cfg})", dir.display(), dir.display()),
        format!("stacks/s/compose.yaml:13: volumes.disk.driver_opts.device: a volume mounting host device /dev/null is not allowed by the host's policy (add it to `policy.devices` in {cfg})"),
    ] {
        assert!(out.contains(&want), "missing {want:?} in\n{out}");
    }

    // Granted: the container writes into the host directory through the volume.
    let runnable = &compose[..compose.find("  disk:").expect("fixture has disk")];
    f.write("stacks/s/compose.yaml", runnable);
    f.agent_config(&format!("policy:\n  host_paths: [\"{}\"]\n", dir.display()));
    f.ok("h", &["apply"]);
    crate::support::wait_until(
        std::time::Duration::from_secs(10),
        "the container wrote to the host path through the volume",
        || std::fs::read_to_string(dir.join("written")).is_ok_and(|s| s == "through-volume\n"),
    );
}

const JOINED: &str = r#"
services:
  app:
    image: {image}
    container_name: t{id}-a-app
    command: sleep 3600
    volumes: ["/shared"]
  side:
    image: {image}
    container_name: t{id}-a-side
    command: sleep 3600
    network_mode: service:app
    volumes_from: [app]
"#;

const JOINS: &str = r#"
services:
  x:
    image: {image}
    container_name: t{id}-b-x
    command: sleep 3600
    uts: host
    userns_mode: host
    cgroup: host
    device_cgroup_rules: ["c 1:3 rmw"]
    pid: container:t{id}-a-app
    ipc: container:t{id}-elsewhere
    network_mode: container:t{id}-a-app
    volumes_from: ["container:t{id}-a-app:ro"]
    deploy:
      resources:
        reservations:
          devices: [{capabilities: [gpu]}]
    gpus: all
    devices: [nvidia.com/gpu=all]
"#;

/// Namespaces, devices and other stacks' containers: the same stack's containers may be joined
/// freely, anything else only when the host's policy grants it.
#[test]
fn namespaces_devices_and_other_stacks_containers_only_when_the_host_grants_them() {
    let f = Fixture::new();
    f.write(
        "hosts.yaml",
        "hosts:
  default: {stacks: [a, b]}
",
    );
    f.write("stacks/a/compose.yaml", &f.fill(JOINED));
    f.write("stacks/b/compose.yaml", &f.fill(JOINS));
    f.agent_config("policy: {}\n");
    let cfg = f.config_path().display().to_string();
    let o = f.run("h", &["validate"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let app = format!("t{}-a-app", f.id);
    for want in [
        format!("stacks/b/compose.yaml:7: services.x.uts: `uts: host` is not allowed by the host's policy (set `policy.uts_host: true` in {cfg})"),
        format!("stacks/b/compose.yaml:8: services.x.userns_mode: `userns_mode: host` (root in the container is root on the host) is not allowed by the host's policy (set `policy.userns_host: true` in {cfg})"),
        format!("stacks/b/compose.yaml:9: services.x.cgroup: `cgroup: host` is not allowed by the host's policy (set `policy.cgroup_host: true` in {cfg})"),
        format!("stacks/b/compose.yaml:10: services.x.device_cgroup_rules: device_cgroup_rules \"c 1:3 rmw\" is not allowed by the host's policy (add it to `policy.device_cgroup_rules` in {cfg})"),
        format!("stacks/b/compose.yaml:11: services.x.pid: joining container {app} (its processes) is not allowed by the host's policy: it is not a service of stack b (add it to `policy.join_containers` in {cfg})"),
        format!("stacks/b/compose.yaml:12: services.x.ipc: joining container t{}-elsewhere (its shared memory) is not allowed", f.id),
        format!("stacks/b/compose.yaml:13: services.x.network_mode: joining container {app} (its network)"),
        format!("stacks/b/compose.yaml:14: services.x.volumes_from[0]: joining container {app} (its volumes)"),
        format!("services.x.deploy.resources.reservations.devices: a device request (`deploy.resources.reservations.devices`: GPUs and other host devices) is not allowed by the host's policy (set `policy.device_requests: true` in {cfg})"),
        format!("stacks/b/compose.yaml:19: services.x.gpus: a device request (`gpus`: GPUs and other host devices) is not allowed by the host's policy (set `policy.device_requests: true` in {cfg})"),
        format!("stacks/b/compose.yaml:20: services.x.devices: a device request (`devices`: GPUs and other host devices) is not allowed by the host's policy (set `policy.device_requests: true` in {cfg})"),
    ] {
        assert!(out.contains(&want), "missing {want:?} in\n{out}");
    }
    assert!(
        !out.contains("services.side"),
        "same-stack joins need no grant: {out}"
    );

    // Granted: the service runs in the other stack's container's namespaces, with its volumes.
    // (No GPU here and `ipc:` of a container that does not exist: those two are left out.)
    let joins = f.fill(JOINS);
    let runnable: String = joins[..joins.find("    deploy:").expect("fixture has deploy")]
        .lines()
        .filter(|l| !l.contains("ipc:"))
        .map(|l| format!("{l}\n"))
        .collect();
    f.write("stacks/b/compose.yaml", &runnable);
    f.agent_config(&format!(
        "policy:\n  uts_host: true\n  userns_host: true\n  cgroup_host: true\n  device_cgroup_rules: [\"c 1:3 rmw\"]\n  join_containers: [{app}]\n"
    ));
    assert!(f.ok("h", &["validate"]).starts_with("ok: 3 services"));
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [a]}\n");
    f.ok("h", &["apply"]);
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [a, b]}\n");
    f.ok("h", &["apply"]);
    let x = format!("t{}-b-x", f.id);
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.UTSMode}} {{.HostConfig.PidMode}} {{.HostConfig.NetworkMode}} {{json .HostConfig.VolumesFrom}}", &x]),
        format!(
            "host container:{id} container:{id} [\"{app}:ro\"]",
            id = crate::support::docker::container_id(&app)
        )
    );
    docker(&["exec", &app, "sh", "-c", "echo from-app > /shared/f"]);
    assert_eq!(docker(&["exec", &x, "cat", "/shared/f"]), "from-app");
}

const DATA: &str = r#"
name: t{id}
services:
  db:
    image: {image}
    container_name: t{id}-db
    user: "1000"
    command: sh -c "cat /etc/app.conf /conf/extra > /dev/null && sleep 3600"
    environment: {REV: one}
    volumes:
      - ./data:/data
      - ./fresh:/fresh
      - ./conf/app.conf:/etc/app.conf:ro
      - ./conf:/conf:ro
"#;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn bind_source(container: &str, target: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{range .Mounts}}}}{{{{if eq .Destination \"{target}\"}}}}{{{{.Source}}}}{{{{end}}}}{{{{end}}}}"),
        container,
    ])
}

#[test]
fn read_write_binds_are_data_dirs_seeded_once_and_repo_copies_are_verified() {
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write("stacks/s/compose.yaml", &f.fill(DATA));
    f.write("stacks/s/data/seed.txt", "v1\n");
    f.write("stacks/s/conf/app.conf", "setting=1\n");
    f.write("stacks/s/conf/extra", "x\n");
    let db = f.name("db");
    let data_dir = f.data.path().join("s/data");

    let diff = f.ok("h", &["diff"]);
    assert!(
        diff.contains(&format!(
            "+ data s/data at {} (seeded once from the repo)",
            data_dir.display()
        )),
        "{diff}"
    );
    assert!(diff.contains("+ data s/fresh at"), "{diff}");
    assert!(diff.contains("(empty)"), "{diff}");
    f.ok("h", &["apply"]);
    assert_eq!(bind_source(&db, "/data"), data_dir.display().to_string());
    assert_eq!(
        std::fs::read_to_string(data_dir.join("seed.txt")).expect("seeded"),
        "v1\n"
    );
    assert!(
        f.data.path().join("s/fresh").is_dir(),
        "a missing bind dir is created"
    );
    // Container-written data: the container (as root, via exec) appends.
    docker(&[
        "exec",
        "-u",
        "0",
        &db,
        "sh",
        "-c",
        "echo row1 >> /data/table",
    ]);

    // A new revision: the repo's seed changes and the env changes (recreate). Data stays.
    f.write("stacks/s/data/seed.txt", "v2\n");
    f.write(
        "stacks/s/compose.yaml",
        &f.fill(DATA).replace("REV: one", "REV: two"),
    );
    let diff = f.ok("h", &["diff"]);
    assert!(!diff.contains("+ data"), "{diff}");
    f.ok("h", &["apply"]);
    assert_eq!(
        std::fs::read_to_string(data_dir.join("seed.txt")).expect("kept"),
        "v1\n"
    );
    assert_eq!(
        std::fs::read_to_string(data_dir.join("table")).expect("kept"),
        "row1\n"
    );
    // The report (and so the daemon's status) lists the data directories.
    let json = f.ok("h", &["apply", "--output", "json"]);
    assert!(
        json.contains(&format!("\"dir\": \"{}\"", data_dir.display())),
        "{json}"
    );

    // Repo copies: the state dir is 0700, the copy readable by the container's user 1000.
    let copy = bind_source(&db, "/etc/app.conf");
    assert!(
        copy.starts_with(&f.state.path().display().to_string()),
        "{copy}"
    );
    assert_eq!(mode(f.state.path()), 0o700);
    assert_eq!(mode(Path::new(&copy)), 0o644);
    assert_eq!(docker(&["exec", &db, "cat", "/etc/app.conf"]), "setting=1");
    // Tampered with and deleted under the state dir: re-made on the next pass, nothing recreated.
    let id = crate::support::docker::container_id(&db);
    std::fs::write(&copy, "tampered\n").expect("tamper");
    let conf_copy = bind_source(&db, "/conf");
    std::fs::remove_dir_all(&conf_copy).expect("delete");
    f.ok("h", &["apply"]);
    assert_eq!(
        std::fs::read_to_string(&copy).expect("re-made"),
        "setting=1\n"
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&conf_copy).join("extra")).expect("re-made"),
        "x\n"
    );
    assert_eq!(crate::support::docker::container_id(&db), id);

    // A link out of the repo inside a bound directory refuses the revision.
    std::os::unix::fs::symlink("/etc/shadow", f.root().join("stacks/s/conf/shadow"))
        .expect("symlink");
    let o = f.run("h", &["validate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains(
            "services.db.volumes[3]: \"./conf/shadow\" resolves through a symlink to /etc/shadow"
        ),
        "{}",
        text(&o)
    );
    std::fs::remove_file(f.root().join("stacks/s/conf/shadow")).expect("rm");

    // Prune never removes data; only `data rm --yes` does.
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [other]}\n");
    f.write("stacks/other/compose.yaml", &f.fill("services:\n  o:\n    image: {image}\n    container_name: t{id}-o\n    command: sleep 3600\n"));
    f.ok("h", &["apply", "--prune-volumes"]);
    assert!(docker(&["ps", "-aq", "-f", &format!("name=^{db}$")]).is_empty());
    assert!(data_dir.join("table").exists());
    let ls = f.ok("h", &["data", "ls"]);
    assert!(ls.contains("s/data\t"), "{ls}");
    let o = f.run("h", &["data", "rm", "s", "data"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(data_dir.exists());
    f.ok("h", &["data", "rm", "s", "data", "--yes"]);
    assert!(!data_dir.exists());
}
