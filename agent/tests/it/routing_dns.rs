//! DNS backends against the real thing: a hosts file with foreign lines, dnsmasq and PowerDNS
//! (gsqlite3) started by the test on high loopback ports and queried with `dig`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, KillOnDrop};
use macula_gitops::desired::catalog::Catalog;
use macula_gitops::desired::interpolate::Env;
use macula_gitops::routing::dns::{self, hosts};
use macula_gitops::routing::{self, DnsSpec};

/// Load `yaml` as routing.yaml in `dir` and resolve its DNS part (must be valid).
fn dns_spec(dir: &Path, yaml: &str, env: &Env) -> DnsSpec {
    let file = dir.join("routing.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (f, d) = routing::load(&file, env);
    assert!(d.is_empty(), "{d}");
    let r =
        routing::resolve_specs(&f.unwrap(), &Catalog::default()).unwrap_or_else(|d| panic!("{d}"));
    r.dns.expect("dns section")
}

fn dig(port: u16, name: &str) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+tries=1",
            "+time=2",
            name,
            "A",
        ])
        .output()
        .expect("dig is installed (dnsutils)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Poll `dig` until it answers `want` (servers start and reload asynchronously).
fn dig_until(port: u16, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = dig(port, name);
    while got != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = dig(port, name);
    }
    assert_eq!(got, want, "dig {name} on port {port}");
}

#[tokio::test]
async fn hosts_file_block_round_trip_keeps_foreign_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let hosts_path = tmp.path().join("hosts");
    let foreign = "127.0.0.1\tlocalhost\n# a comment someone wrote\n10.1.2.3 nas.home\n";
    std::fs::write(&hosts_path, foreign).unwrap();
    let yaml = |names: &str| {
        format!(
            "dns:\n  zone: macula.local\n  names: {{{names}}}\n  backends:\n    hosts: {{path: {}}}\n",
            hosts_path.display()
        )
    };
    let spec = dns_spec(
        tmp.path(),
        &yaml("grafana.macula.local: 127.0.0.4, prometheus.macula.local: 127.0.0.3"),
        &Env::default(),
    );
    let backends = dns::backends(&spec);
    let r = dns::reconcile(&spec, &backends).await;
    assert_eq!(
        (r.tried, r.failed, r.changed.clone()),
        (1, 0, vec!["hosts"])
    );
    let text = std::fs::read_to_string(&hosts_path).unwrap();
    assert_eq!(
        text,
        format!(
            "{foreign}{}\n127.0.0.4\tgrafana.macula.local\n127.0.0.3\tprometheus.macula.local\n{}\n",
            hosts::BEGIN,
            hosts::END
        )
    );
    // Someone appends a line after the block; a second pass changes nothing.
    std::fs::write(&hosts_path, format!("{text}192.168.1.1 router\n")).unwrap();
    let r = dns::reconcile(&spec, &backends).await;
    assert!(r.changed.is_empty() && r.failed == 0, "{r:?}");

    let spec = dns_spec(tmp.path(), &yaml(""), &Env::default());
    let r = dns::reconcile(&spec, &dns::backends(&spec)).await;
    assert_eq!(r.changed, ["hosts"]);
    assert_eq!(
        std::fs::read_to_string(&hosts_path).unwrap(),
        format!("{foreign}192.168.1.1 router\n")
    );
}

/// Kills the process whose pid is in `pidfile` (dnsmasq daemonises itself).
struct PidfileGuard(PathBuf);

impl Drop for PidfileGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn dnsmasq_pid(pidfile: &Path) -> Option<String> {
    std::fs::read_to_string(pidfile)
        .ok()
        .map(|s| s.trim().to_string())
}

#[tokio::test]
async fn dnsmasq_serves_the_generated_names_and_reloads_only_on_change() {
    let tmp = tempfile::tempdir().unwrap();
    let conf_dir = tmp.path().join("dnsmasq.d");
    let pidfile = tmp.path().join("dnsmasq.pid");
    let _guard = PidfileGuard(pidfile.clone());
    let port = free_port();
    // The "reload" is what a supervisor would do: stop the running dnsmasq, start it again.
    let restart = format!(
        "if [ -f {pid} ]; then p=$(cat {pid}); kill $p; while kill -0 $p 2>/dev/null; do sleep 0.05; done; fi; \
         exec dnsmasq --conf-file=/dev/null --conf-dir={dir} --no-resolv --no-hosts --bind-interfaces \
         --listen-address=127.0.0.1 --port={port} --pid-file={pid} --user=root --group=root",
        pid = pidfile.display(),
        dir = conf_dir.display(),
    );
    std::fs::write(tmp.path().join("restart.sh"), restart).unwrap();
    let yaml = |names: &str| {
        format!(
            "dns:\n  zone: macula.local\n  names: {{{names}}}\n  backends:\n    dnsmasq: {{dir: {}, reload: [sh, {}]}}\n",
            conf_dir.display(),
            tmp.path().join("restart.sh").display()
        )
    };

    let spec = dns_spec(
        tmp.path(),
        &yaml("grafana.macula.local: 127.0.0.4, tempo.macula.local: 127.0.0.6"),
        &Env::default(),
    );
    let r = dns::reconcile(&spec, &dns::backends(&spec)).await;
    assert_eq!((r.failed, r.changed.clone()), (0, vec!["dnsmasq"]), "{r:?}");
    dig_until(port, "grafana.macula.local", "127.0.0.4");
    dig_until(port, "tempo.macula.local", "127.0.0.6");

    // Same names again: the file is unchanged and dnsmasq is not restarted.
    let pid = dnsmasq_pid(&pidfile);
    let r = dns::reconcile(&spec, &dns::backends(&spec)).await;
    assert!(r.changed.is_empty() && r.failed == 0, "{r:?}");
    assert_eq!(dnsmasq_pid(&pidfile), pid);

    // A changed address and a removed name take effect after the reload.
    let spec = dns_spec(
        tmp.path(),
        &yaml("grafana.macula.local: 127.0.0.14"),
        &Env::default(),
    );
    let r = dns::reconcile(&spec, &dns::backends(&spec)).await;
    assert_eq!(r.changed, ["dnsmasq"]);
    dig_until(port, "grafana.macula.local", "127.0.0.14");
    dig_until(port, "tempo.macula.local", "");
    assert_ne!(dnsmasq_pid(&pidfile), pid);
}

#[tokio::test]
async fn dnsmasq_reload_failure_is_reported_and_retried_next_time() {
    let tmp = tempfile::tempdir().unwrap();
    let conf_dir = tmp.path().join("d");
    let yaml = |reload: &str| {
        format!(
            "dns:\n  zone: z.test\n  names: {{a.z.test: 127.0.0.5}}\n  backends:\n    dnsmasq: {{dir: {}, reload: [{reload}]}}\n",
            conf_dir.display()
        )
    };
    let spec = dns_spec(tmp.path(), &yaml("\"false\""), &Env::default());
    let r = dns::reconcile(&spec, &dns::backends(&spec)).await;
    assert_eq!(r.failed, 1);
    assert!(r.errors[0].contains("reload command"), "{:?}", r.errors);
    // The file was put back, so the next pass writes it and reloads again.
    let spec = dns_spec(tmp.path(), &yaml("\"true\""), &Env::default());
    let r = dns::reconcile(&spec, &dns::backends(&spec)).await;
    assert_eq!((r.failed, r.changed.clone()), (0, vec!["dnsmasq"]));
    let conf = std::fs::read_to_string(conf_dir.join("macula-gitops.conf")).unwrap();
    assert!(conf.contains("address=/a.z.test/127.0.0.5"), "{conf}");
}

/// pdns_server with a fresh gsqlite3 database, API on `web`, DNS on `dns`.
fn start_pdns(dir: &Path, key: &str) -> (KillOnDrop, u16, u16) {
    let db = dir.join("pdns.sqlite3");
    let schema = std::fs::read("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql")
        .expect("pdns-backend-sqlite3 is installed");
    let mut sqlite = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sqlite3 is installed");
    std::io::Write::write_all(&mut sqlite.stdin.take().unwrap(), &schema).unwrap();
    assert!(sqlite.wait().unwrap().success());
    std::fs::write(dir.join("pdns.conf"), "").unwrap();
    let (dns_port, web_port) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join("pdns.log")).unwrap();
    let child = Command::new("pdns_server")
        .arg(format!("--config-dir={}", dir.display()))
        .arg(format!("--socket-dir={}", dir.display()))
        .arg("--launch=gsqlite3")
        .arg(format!("--gsqlite3-database={}", db.display()))
        .arg("--local-address=127.0.0.1")
        .arg(format!("--local-port={dns_port}"))
        .args(["--api=yes", &format!("--api-key={key}"), "--webserver=yes"])
        .args([
            "--webserver-address=127.0.0.1",
            "--webserver-allow-from=127.0.0.0/8",
        ])
        .arg(format!("--webserver-port={web_port}"))
        .args([
            "--daemon=no",
            "--guardian=no",
            "--disable-syslog",
            "--write-pid=no",
        ])
        .args([
            "--cache-ttl=0",
            "--negquery-cache-ttl=0",
            "--query-cache-ttl=0",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("pdns-server is installed");
    (KillOnDrop(child), dns_port, web_port)
}

async fn wait_api(client: &reqwest::Client, url: &str, key: &str, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = client
            .get(format!("{url}/api/v1/servers/localhost"))
            .header("X-API-Key", key)
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "pdns API did not come up: {}",
        std::fs::read_to_string(dir.join("pdns.log")).unwrap_or_default()
    );
}

#[tokio::test]
async fn powerdns_zone_and_owned_records_only() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let key = format!("k{}", std::process::id());
    let (_pdns, dns_port, web_port) = start_pdns(tmp.path(), &key);
    let url = format!("http://127.0.0.1:{web_port}");
    let client = reqwest::Client::new();
    wait_api(&client, &url, &key, tmp.path()).await;

    let env = Env::from_pairs([("PDNS_API_KEY", key.as_str()), ("PDNS_URL", url.as_str())]);
    let yaml = |names: &str| {
        format!(
            "dns:\n  zone: macula.local\n  names: {{{names}}}\n  backends:\n    powerdns: {{url: \"${{PDNS_URL}}\", server: localhost, api_key: \"${{PDNS_API_KEY}}\"}}\n"
        )
    };
    let spec = dns_spec(
        tmp.path(),
        &yaml("grafana.macula.local: 127.0.0.4, loki.macula.local: 127.0.0.5"),
        &env,
    );
    let r = dns::reconcile(&spec, &dns::backends(&spec)).await;
    assert_eq!(
        (r.failed, r.changed.clone()),
        (0, vec!["powerdns"]),
        "{r:?}"
    );
    dig_until(dns_port, "grafana.macula.local", "127.0.0.4");
    dig_until(dns_port, "loki.macula.local", "127.0.0.5");

    // Someone else adds records to the zone, one of them at a name we are about to want.
    let patch = serde_json::json!({"rrsets": [
        {"name": "foreign.macula.local.", "type": "A", "ttl": 300, "changetype": "REPLACE",
         "records": [{"content": "10.9.8.7", "disabled": false}]},
        {"name": "clash.macula.local.", "type": "A", "ttl": 300, "changetype": "REPLACE",
         "records": [{"content": "10.9.8.6", "disabled": false}]},
    ]});
    let resp = client
        .patch(format!(
            "{url}/api/v1/servers/localhost/zones/macula.local."
        ))
        .header("X-API-Key", &key)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);

    // loki removed, grafana moved, clash wanted: foreign records stay, the clash is reported.
    let spec = dns_spec(
        tmp.path(),
        &yaml("grafana.macula.local: 127.0.0.14, clash.macula.local: 127.0.0.9"),
        &env,
    );
    let r = dns::reconcile(&spec, &dns::backends(&spec)).await;
    assert_eq!(r.failed, 1, "{r:?}");
    assert!(
        r.errors[0].contains("clash.macula.local. already exist"),
        "{:?}",
        r.errors
    );
    dig_until(dns_port, "grafana.macula.local", "127.0.0.14");
    dig_until(dns_port, "loki.macula.local", "");
    dig_until(dns_port, "foreign.macula.local", "10.9.8.7");
    dig_until(dns_port, "clash.macula.local", "10.9.8.6");

    // A wrong key is an error that deletes nothing.
    let bad = Env::from_pairs([("PDNS_API_KEY", "wrong"), ("PDNS_URL", url.as_str())]);
    let spec_bad = dns_spec(tmp.path(), &yaml(""), &bad);
    let r = dns::reconcile(&spec_bad, &dns::backends(&spec_bad)).await;
    assert_eq!(r.failed, 1, "{r:?}");
    dig_until(dns_port, "grafana.macula.local", "127.0.0.14");

    // Unreachable API: retried, then reported; nothing changes.
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dead_url = format!("http://{dead}");
    let down = Env::from_pairs([
        ("PDNS_API_KEY", key.as_str()),
        ("PDNS_URL", dead_url.as_str()),
    ]);
    let spec_down = dns_spec(tmp.path(), &yaml(""), &down);
    let r = dns::reconcile(&spec_down, &dns::backends(&spec_down)).await;
    assert!(
        r.failed == 1 && r.errors[0].contains("after 4 attempts"),
        "{r:?}"
    );
    dig_until(dns_port, "grafana.macula.local", "127.0.0.14");
}

/// `diff`'s routing half against the real stores: each backend's names are read (hosts block,
/// dnsmasq conf, PowerDNS owned records), compared per backend, and nothing is written; the
/// forwards are compared with the daemon's, and without a daemon that is said.
#[tokio::test]
async fn diff_reads_every_backend_and_writes_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let key = format!("k{}", std::process::id());
    let (_pdns, _, web_port) = start_pdns(tmp.path(), &key);
    let url = format!("http://127.0.0.1:{web_port}");
    wait_api(&reqwest::Client::new(), &url, &key, tmp.path()).await;
    let hosts_file = tmp.path().join("hosts");
    let conf_dir = tmp.path().join("dnsmasq.d");
    let env = Env::from_pairs([("PDNS_API_KEY", key.as_str()), ("PDNS_URL", url.as_str())]);
    let yaml = |names: &str| {
        format!(
            "loopback:\n  - {{address: 127.0.0.3, name: prometheus}}\n\
             forwards:\n  - {{name: prometheus, listen: 127.0.0.3:9090/tcp, target: {{address: 127.0.0.1:9090}}}}\n\
             dns:\n  zone: macula.local\n  names: {{{names}}}\n  backends:\n    hosts: {{path: {}}}\n    dnsmasq: {{dir: {}, reload: [\"true\"]}}\n    powerdns: {{url: \"${{PDNS_URL}}\", server: localhost, api_key: \"${{PDNS_API_KEY}}\"}}\n",
            hosts_file.display(),
            conf_dir.display()
        )
    };
    let file = tmp.path().join("routing.yaml");
    let resolved = |names: &str| {
        std::fs::write(&file, yaml(names)).unwrap();
        let (f, d) = routing::load(&file, &env);
        assert!(d.is_empty(), "{d}");
        routing::resolve_specs(&f.unwrap(), &Catalog::default()).unwrap_or_else(|d| panic!("{d}"))
    };
    // Published once: a, b.
    let r = resolved("a.macula.local: 127.0.0.4, b.macula.local: 127.0.0.5");
    let spec = r.dns.clone().unwrap();
    std::fs::write(&hosts_file, "127.0.0.1 localhost\n").unwrap();
    let rep = dns::reconcile(&spec, &dns::backends(&spec)).await;
    assert_eq!(rep.failed, 0, "{rep:?}");
    let snapshot = || {
        (
            std::fs::read_to_string(&hosts_file).unwrap(),
            std::fs::read_to_string(conf_dir.join("macula-gitops.conf")).unwrap(),
        )
    };
    let before = snapshot();

    // Wanted now: a moved, b gone, c new; no daemon at the address given.
    let r = resolved("a.macula.local: 127.0.0.9, c.macula.local: 127.0.0.6");
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let d = routing::diff::observe(&r, Some(nobody)).await;
    let lines: Vec<&str> = d.changes.iter().map(|c| c.line.as_str()).collect();
    let mut want = vec!["+ forward prometheus 127.0.0.3:9090/tcp → 127.0.0.1:9090".to_string()];
    for b in ["hosts", "dnsmasq", "powerdns"] {
        want.push(format!("~ dns a.macula.local 127.0.0.4 → 127.0.0.9 ({b})"));
        want.push(format!("+ dns c.macula.local → 127.0.0.6 ({b})"));
        want.push(format!("- dns b.macula.local 127.0.0.5 ({b})"));
    }
    assert_eq!(lines, want);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(
        d.warnings[0].starts_with("forwards: not compared with a running daemon (")
            && d.warnings[0].contains(&nobody.to_string()),
        "{:?}",
        d.warnings
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json["changes"][1]["subject"],
        serde_json::json!({"kind": "dns", "name": "a.macula.local"})
    );
    assert_eq!(
        json["changes"][1]["action"],
        serde_json::json!({"action": "update"})
    );
    // Read, never written.
    assert_eq!(snapshot(), before);
    let r = resolved("a.macula.local: 127.0.0.4, b.macula.local: 127.0.0.5");
    let d = routing::diff::observe(&r, None).await;
    assert_eq!(
        d.changes
            .iter()
            .map(|c| c.line.as_str())
            .collect::<Vec<_>>(),
        ["+ forward prometheus 127.0.0.3:9090/tcp → 127.0.0.1:9090"],
        "converged DNS: no dns lines"
    );
}
