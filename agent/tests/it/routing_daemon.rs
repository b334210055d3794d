//! Routing wired into the agent: `run` serves routing.yaml's forwards to a container service
//! and publishes its names (hosts backend on a temp file), alongside the host stacks.
use std::time::Duration;

use crate::support::docker::{container_state, docker};
use crate::support::fixture::{read, Fixture};
use crate::support::{http_get, wait_until};

#[test]
fn run_serves_forwards_to_a_service_and_publishes_names() {
    let f = Fixture::new();
    let v = u32::from_str_radix(&f.id, 16).unwrap_or(1);
    let ip = format!("127.77.{}.{}", v % 250 + 1, (v / 250) % 250 + 1);
    let hosts = f.repo.path().join("etc-hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    f.write(
        "hosts.yaml",
        "hosts:\n  default: {stacks: [s], routing: true}\n",
    );
    f.write(
        "stacks/s/compose.yaml",
        &f.fill("name: t{id}-s\nservices:\n  web:\n    image: {image}\n    container_name: t{id}-web\n    command: sh -c \"mkdir -p /w && echo routed > /w/index.html && httpd -f -p 8080 -h /w\"\n    expose: [\"8080\"]\n    restart: unless-stopped\n"),
    );
    f.write(
        "routing.yaml",
        &format!(
            "loopback:\n  - {{address: {ip}, name: web}}\nforwards:\n  - name: web\n    listen: {ip}:18080/tcp\n    target: {{service: s/web, port: 8080}}\ndns:\n  zone: t{id}.test\n  names:\n    web.t{id}.test: {ip}\n  backends:\n    hosts: {{path: {}}}\n",
            hosts.display(),
            id = f.id
        ),
    );
    let out = f.ok("h", &["validate"]);
    assert!(out.contains("1 forwards, 1 DNS names"), "{out}");
    // `diff` reads the forwards from the daemon at the layered `listen` (the fixture's
    // MACULA_GITOPS_LISTEN, which `run` below listens on too).
    let name = format!("web.t{}.test", f.id);
    let forward_line = format!(
        "+ forward web {ip}:18080/tcp → t{}-web:8080 on t{}-s_default",
        f.id, f.id
    );
    let out = f.ok("h", &["diff"]);
    assert!(out.contains(&forward_line), "{out}");
    assert!(
        out.contains(&format!("+ dns {name} → {ip} (hosts)")),
        "{out}"
    );
    assert!(
        out.contains("! forwards: not compared with a running daemon"),
        "{out}"
    );

    let daemon = f.spawn("h", &["run", "--interval", "1h"]);
    let addr = format!("{ip}:18080");
    let limit = Duration::from_secs(60);
    wait_until(limit, "the forward to answer", || {
        http_get(&addr).is_some_and(|r| r.contains("routed"))
    });
    let block = read(&hosts);
    assert!(block.starts_with("127.0.0.1 localhost\n"), "{block}");
    assert!(
        block
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [ip.as_str(), name.as_str()]),
        "{block}"
    );

    // The container is recreated by hand with a new IP: the forward follows it.
    docker(&["rm", "-f", &f.name("web")]);
    wait_until(limit, "the service to be back", || {
        container_state(&f.name("web")) == "running"
    });
    wait_until(limit, "the forward to reach the new container", || {
        http_get(&addr).is_some_and(|r| r.contains("routed"))
    });

    // Converged: `diff` reads the hosts file's block (no dns line) and the running daemon's
    // forwards (no forward line, no warning), in text and JSON.
    let out = f.ok("h", &["diff"]);
    assert!(!out.contains("dns"), "{out}");
    assert!(!out.contains("forward"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&f.ok("h", &["diff", "--output", "json"])).unwrap();
    let changes = json["routing"]["changes"].as_array().unwrap();
    assert!(changes.is_empty(), "{json:#}");
    assert!(
        json["routing"]["warnings"].as_array().unwrap().is_empty(),
        "{json:#}"
    );
    drop(daemon);
}
