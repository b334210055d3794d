//! `deploy.replicas` / `scale` on the real engine: containers named and numbered as docker
//! compose names them, scaled up and down without touching the containers that stay, each
//! replica given its own host port from a range — and docker-compose 1.29 sees them all;
//! `run` lists every replica in `status` and its forward reaches each of them.
use crate::support::docker::{container_id, docker, docker_compose};
use crate::support::fixture::Fixture;

const SCALED: &str = r#"
services:
  api:
    image: {image}
    command: sh -c "mkdir -p /w && hostname > /w/index.html && httpd -f -p 80 -h /w"
    scale: 1
    ports: ["127.0.0.1:{low}-{high}:80"]
"#;

/// A free port with the four after it free too, for a host port range.
fn free_range() -> u16 {
    loop {
        let low = crate::support::free_port();
        if low < 65_000
            && (1..5).all(|i| std::net::TcpListener::bind(("127.0.0.1", low + i)).is_ok())
        {
            return low;
        }
    }
}

#[test]
fn scale_one_to_three_to_two_keeps_the_containers_that_stay() {
    let f = Fixture::new();
    let stack = format!("t{}sc", f.id);
    f.write(
        "hosts.yaml",
        &format!("hosts:\n  default: {{stacks: [{stack}]}}\n"),
    );
    let low = free_range();
    let compose = |n: u32| {
        f.fill(SCALED)
            .replace("{low}", &low.to_string())
            .replace("{high}", &(low + 4).to_string())
            .replace("scale: 1", &format!("scale: {n}"))
    };
    let file = f.root().join("stacks").join(&stack).join("compose.yaml");
    let name = |n: u32| format!("{stack}-api-{n}");
    let containers = || {
        let mut v: Vec<String> = docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "-f",
            &format!("label=com.docker.compose.project={stack}"),
        ])
        .lines()
        .map(str::to_string)
        .collect();
        v.sort();
        v
    };

    f.write(&format!("stacks/{stack}/compose.yaml"), &compose(1));
    f.ok("h", &["apply"]);
    assert_eq!(containers(), [name(1)]);
    let first = container_id(&name(1));

    f.write(&format!("stacks/{stack}/compose.yaml"), &compose(3));
    let diff = f.ok("h", &["diff"]);
    assert!(
        diff.contains(&format!("+ container {} ({stack}/api)", name(2)))
            && diff.contains(&format!("+ container {} ({stack}/api)", name(3)))
            && !diff.contains(&name(1)),
        "{diff}"
    );
    f.ok("h", &["apply"]);
    assert_eq!(containers(), [name(1), name(2), name(3)]);
    assert_eq!(container_id(&name(1)), first, "the first container stays");
    let mut ports = Vec::new();
    for n in 1..=3 {
        assert_eq!(
            docker(&[
                "inspect",
                "-f",
                "{{index .Config.Labels \"com.docker.compose.container-number\"}}",
                &name(n)
            ]),
            n.to_string()
        );
        let port: u16 = docker(&[
            "inspect",
            "-f",
            "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}",
            &name(n),
        ])
        .parse()
        .expect("a published port");
        assert!((low..=low + 4).contains(&port), "{port} outside the range");
        ports.push(port);
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "one port of the range per replica");

    // docker-compose reads them as the service's three containers.
    let (ps, _) = docker_compose(&stack, &file, &["ps", "-q", "api"]);
    assert_eq!(ps.lines().count(), 3, "{ps}");

    let second = container_id(&name(2));
    f.write(&format!("stacks/{stack}/compose.yaml"), &compose(2));
    let out = f.ok("h", &["apply"]);
    assert!(out.contains("scaled down to 2"), "{out}");
    assert_eq!(containers(), [name(1), name(2)]);
    assert_eq!(
        (container_id(&name(1)), container_id(&name(2))),
        (first, second),
        "scaling down removes only the highest number"
    );
    assert!(f.ok("h", &["diff"]).contains("no changes"));

    // The daemon: `status` lists each replica against the two wanted, and a forward to the
    // service reaches both (each answers with its own hostname).
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    f.write(
        "hosts.yaml",
        &format!("hosts:\n  default: {{stacks: [{stack}], routing: true}}\n"),
    );
    f.write(
        "routing.yaml",
        &format!("forwards:\n  - {{name: api, listen: {listen}/tcp, target: {{service: {stack}/api, port: 80}}}}\n"),
    );
    let _daemon = f.spawn("h", &["run", "--interval", "1h"]);
    let limit = std::time::Duration::from_secs(60);
    let service = format!("{stack}/api");
    crate::support::wait_until(limit, "both replicas running in status", || {
        let o = f.run("h", &["status", "--output", "json"]);
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else {
            return false;
        };
        let replicas: Vec<(u64, u64, &str)> = v["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"] == service.as_str())
            .map(|s| {
                let n = |k: &str| s[k].as_u64().unwrap_or(0);
                (n("replica"), n("wanted"), s["state"].as_str().unwrap_or(""))
            })
            .collect();
        replicas == [(1, 2, "running"), (2, 2, "running")]
    });
    let text = f.ok("h", &["status"]);
    assert!(text.contains("2/2 running"), "{text}");
    let mut seen = std::collections::BTreeSet::new();
    crate::support::wait_until(limit, "the forward to reach both replicas", || {
        if let Some(body) = crate::support::http_get(&listen) {
            if let Some(host) = body.lines().last().filter(|l| !l.is_empty()) {
                seen.insert(host.to_string());
            }
        }
        seen.len() == 2
    });
}
