//! Forwarding to a container on the real Docker engine: a busybox httpd image built by the
//! test, reached by container name on a test network; when the container is recreated with a
//! new IP, new connections reach the new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use macula_gitops::desired::catalog::Protocol;
use macula_gitops::routing::forward::ForwarderOptions;
use macula_gitops::routing::{DockerResolver, ForwardSpec, Forwarder, TargetSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LABEL: &str = "macula-gitops.test";

fn unique_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("rt{:x}{:x}", std::process::id(), nanos)
}

/// Removes everything the test created, even when it fails.
struct Cleanup {
    docker: Docker,
    containers: Vec<String>,
    network: Option<String>,
    image: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let containers = std::mem::take(&mut self.containers);
        let network = self.network.take();
        let image = self.image.take();
        // Drop runs inside the test's runtime; do the async cleanup on a thread of its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for c in containers {
                    let opts = RemoveContainerOptionsBuilder::new().force(true).build();
                    let _ = docker.remove_container(&c, Some(opts)).await;
                }
                if let Some(n) = network {
                    let _ = docker.remove_network(&n).await;
                }
                if let Some(i) = image {
                    let opts = RemoveImageOptionsBuilder::new().force(true).build();
                    let _ = docker.remove_image(&i, Some(opts), None).await;
                }
            });
        })
        .join()
        .ok();
    }
}

/// `udpecho ADDR TAG`: answers every datagram with `TAG:` + the datagram.
const UDP_ECHO_SRC: &str = r#"
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let s = std::net::UdpSocket::bind(&args[1]).unwrap();
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = s.recv_from(&mut buf).unwrap();
        let mut out = format!("{}:", args[2]).into_bytes();
        out.extend_from_slice(&buf[..n]);
        let _ = s.send_to(&out, from);
    }
}
"#;

async fn build_busybox(docker: &Docker, tag: &str) {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM scratch\nCOPY busybox /bin/busybox\nCOPY udpecho /bin/udpecho\nLABEL {LABEL}=routing\n"),
    )
    .unwrap();
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).expect("busybox-static is installed");
    // busybox has no UDP server applet: a 20-line echo server, linked statically for scratch.
    std::fs::write(ctx.path().join("udpecho.rs"), UDP_ECHO_SRC).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc)
        .args(["-O", "-C", "target-feature=+crt-static", "-o"])
        .arg(ctx.path().join("udpecho"))
        .arg(ctx.path().join("udpecho.rs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tar = std::process::Command::new("tar")
        .args(["-C", ctx.path().to_str().unwrap(), "-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let opts = BuildImageOptionsBuilder::new().t(tag).rm(true).build();
    let mut stream = docker.build_image(opts, None, Some(bollard::body_full(tar.stdout.into())));
    while let Some(item) = stream.next().await {
        let info = item.expect("image build");
        assert!(
            info.error_detail.is_none(),
            "build failed: {:?}",
            info.error_detail
        );
    }
}

async fn create_network(docker: &Docker, name: &str) -> String {
    // A /24 in 172.31.0.0/16 unlikely to be taken; retry another one if it is.
    let seed = std::process::id() as usize;
    for i in 0..20 {
        let third = 100 + (seed + i * 7) % 150;
        let subnet = format!("172.31.{third}.0/24");
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(HashMap::from([(LABEL.to_string(), "routing".to_string())])),
            ..Default::default()
        };
        if docker.create_network(req).await.is_ok() {
            return format!("172.31.{third}");
        }
    }
    panic!("no free test subnet in 172.31.100-249.0/24");
}

/// Start `name` on `network` at `ip`, serving `body` on :8080.
async fn start_httpd(
    docker: &Docker,
    image: &str,
    name: &str,
    network: &str,
    ip: &str,
    body: &str,
) {
    let script = format!(
        "/bin/udpecho 0.0.0.0:9000 {body} & /bin/busybox mkdir -p /www && echo {body} > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www"
    );
    let config = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            script,
        ]),
        labels: Some(HashMap::from([(LABEL.to_string(), "routing".to_string())])),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_string(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(ip.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new().name(name).build();
    docker
        .create_container(Some(opts), config)
        .await
        .expect("create container");
    docker
        .start_container(name, None)
        .await
        .expect("start container");
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
    let docker = Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let id = unique_id();
    let (image, net, name) = (
        format!("{id}-busybox:test"),
        format!("{id}-net"),
        format!("{id}-web"),
    );
    let mut cleanup = Cleanup {
        docker: docker.clone(),
        containers: vec![name.clone()],
        network: None,
        image: Some(image.clone()),
    };
    build_busybox(&docker, &image).await;
    let prefix = create_network(&docker, &net).await;
    cleanup.network = Some(net.clone());
    start_httpd(&docker, &image, &name, &net, &format!("{prefix}.10"), "one").await;

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
            container: name.clone(),
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
            container: name.clone(),
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
    docker.remove_container(&name, Some(rm)).await.unwrap();
    start_httpd(&docker, &image, &name, &net, &format!("{prefix}.20"), "two").await;
    let body = get_until(listen, "two").await;
    assert!(!body.contains("one"));
    udp_until(udp_listen, "two").await;

    let stats = fwd.stats().await;
    let st = stats.iter().find(|s| s.name == "web").unwrap();
    assert!(st.connections_total >= 2, "{st:?}");
    assert!(st.bytes_from_target > 0);
    fwd.shutdown().await;
    drop(cleanup);
}
