//! `plan` time for a 500-service desired state (goal < 50 ms): converged (empty plan) and cold
//! (everything to create). Plain timing loop; run with `cargo bench --bench plan`.

use std::time::Instant;

use macula_gitops::desired::{interpolate::Env, load_desired};
use macula_gitops::plan::{plan, Observed, PlanOptions};

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let stacks = 10;
    let per_stack = 50;
    let names: Vec<String> = (0..stacks).map(|i| format!("s{i}")).collect();
    std::fs::write(
        root.join("hosts.yaml"),
        format!("hosts:\n  default: {{stacks: [{}]}}\n", names.join(", ")),
    )
    .expect("write");
    for (si, s) in names.iter().enumerate() {
        let mut c = String::from("services:\n");
        for i in 0..per_stack {
            c += &format!(
                "  svc{i}:\n    image: busybox:1\n    command: httpd -f -p 80\n    environment: {{A: \"{i}\", B: x}}\n    ports: [\"127.0.{si}.{}:8080:80\"]\n    networks: {{net: {{ipv4_address: 10.{si}.0.{}}}}}\n    healthcheck: {{test: [CMD, true], interval: 5s}}\n    labels: {{tier: web}}\n",
                i + 1,
                i + 10
            );
        }
        c += &format!("networks:\n  net:\n    ipam: {{config: [{{subnet: 10.{si}.0.0/24}}]}}\n");
        let d = root.join("stacks").join(s);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("compose.yaml"), c).expect("write");
    }
    let t = Instant::now();
    let desired = load_desired(root, "bench", &Env::default()).expect("valid bench state");
    let load = t.elapsed();
    assert_eq!(desired.services.len(), stacks * per_stack);
    let converged = Observed::as_applied(&desired);
    let cold = Observed::default();
    let opts = PlanOptions {
        prune: true,
        ..Default::default()
    };
    for (label, observed) in [("converged", &converged), ("cold", &cold)] {
        let runs = 50;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let p = plan(&desired, observed, &opts);
            times.push(t.elapsed());
            std::hint::black_box(p);
        }
        times.sort();
        println!(
            "plan 500 services ({label}): median {:.2} ms, p95 {:.2} ms",
            times[runs / 2].as_secs_f64() * 1e3,
            times[runs * 95 / 100].as_secs_f64() * 1e3
        );
    }
    println!(
        "load+validate 500 services: {:.2} ms",
        load.as_secs_f64() * 1e3
    );
}
