//! `deploy.replicas` / `scale` on the real engine: containers named and numbered as docker
//! compose names them, scaled up and down without touching the containers that stay, each
//! replica given its own host port from a range — and docker-compose 1.29 sees them all.
use crate::support::docker::{container_id, docker, docker_compose};
use crate::support::fixture::Fixture;

const SCALED: &str = r#"
services:
  api:
    image: {image}
    command: sleep 3600
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
}
