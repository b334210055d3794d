//! Forwarding to a container on the real Docker engine: busybox httpd and `udpecho` in the test
//! image, reached by container name on a test network; when the container is recreated with a
//! new IP, new connections reach the new one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::RemoveContainerOptionsBuilder;
use macula_gitops::desired::catalog::Protocol;
use macula_gitops::routing::forward::ForwarderOptions;
use macula_gitops::routing::{DockerResolver, ForwardSpec, Forwarder, TargetSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::docker::Sandbox;
use crate::support::image;

/// Start `web` on `network` at `ip`: `body` over HTTP on :8080 and as the UDP echo's tag on :9000.
async fn start_web(g: &mut Sandbox, network: &str, ip: &str, body: &str) -> String {
    let script = format!(
        "udpecho 0.0.0.0:9000 {body} & mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www"
    );
    g.container_at("web", image::busybox(), &["sh", "-c", &script], network, ip)
        .await
}

async fn http_get(addr: SocketAddr) -> Result<String, std::io::Error> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .map_err(|_| std::io::Error::other("timeout"))??;
    Ok(out)
}

/// Send from a fresh client socket (a new flow) until the reply starts with `want:`.
async fn udp_until(addr: SocketAddr, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let c = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.connect(addr).await.unwrap();
    let mut last = String::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        c.send(b"ping").await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), c.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                last = String::from_utf8_lossy(&buf[..n]).to_string();
                if last == format!("{want}:ping") {
                    return;
                }
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timeout".into(),
        }
    }
    panic!("no UDP reply from {want:?} through {addr} within 30s; last: {last}");
}

/// GET through the forwarder until the body contains `want` or 30 s pass.
async fn get_until(addr: SocketAddr, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match http_get(addr).await {
            Ok(body) if body.contains(want) => return body,
            Ok(body) => last = body,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {want:?} through {addr} within 30s; last answer: {last}");
}

#[tokio::test]
async fn forwards_to_a_container_and_follows_it_to_a_new_ip() {
    let mut g = Sandbox::new().await;
    let (net, prefix) = g.subnet_network("net").await;
    let name = start_web(&mut g, &net, &format!("{prefix}.10"), "one").await;

    let listen: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let resolver = Arc::new(DockerResolver::connect().await.unwrap());
    resolver.spawn_invalidation();
    let fwd = Forwarder::new(resolver, ForwarderOptions::default());
    let spec = ForwardSpec {
        name: "web".into(),
        listen,
        protocol: Protocol::Tcp,
        target: TargetSpec::Container {
            containers: vec![name.clone()],
            network: net.clone(),
            port: 8080,
        },
    };
    let udp_listen: SocketAddr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let udp_spec = ForwardSpec {
        name: "quic".into(),
        listen: udp_listen,
        protocol: Protocol::Udp,
        target: TargetSpec::Container {
            containers: vec![name.clone()],
            network: net.clone(),
            port: 9000,
        },
    };
    let r = fwd.apply(&[spec, udp_spec]).await;
    assert_eq!(r.failed, 0, "{r:?}");
    get_until(listen, "one").await;
    udp_until(udp_listen, "one").await;

    // Recreate the container under the same name with another IP and content.
    let rm = RemoveContainerOptionsBuilder::new().force(true).build();
    g.docker.remove_container(&name, Some(rm)).await.unwrap();
    start_web(&mut g, &net, &format!("{prefix}.20"), "two").await;
    let body = get_until(listen, "two").await;
    assert!(!body.contains("one"));
    udp_until(udp_listen, "two").await;

    let stats = fwd.stats().await;
    let st = stats.iter().find(|s| s.name == "web").unwrap();
    assert!(st.connections_total >= 2, "{st:?}");
    assert!(st.bytes_from_target > 0);
    fwd.shutdown().await;
}
