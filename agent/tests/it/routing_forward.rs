//! Forwarders with real sockets on loopback: TCP (buffered and splice), half-close, UDP flows,
//! live reconfiguration with long connections open, and bind errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use macula_gitops::desired::catalog::Protocol;
use macula_gitops::routing::forward::ForwarderOptions;
use macula_gitops::routing::resolve::StaticResolver;
use macula_gitops::routing::{ForwardSpec, Forwarder, TargetSpec};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A loopback address of this test process's own (127.<pid-derived>.x), so tests running in
/// parallel — here and in other suites — do not race for the same ports.
fn addr(n: u8) -> String {
    let pid = std::process::id();
    format!(
        "127.{}.{}.{n}",
        100 + (pid % 100) as u8,
        (pid / 100 % 250) as u8
    )
}

fn free_port(ip: &str, proto: Protocol) -> SocketAddr {
    let a: SocketAddr = format!("{ip}:0").parse().unwrap();
    match proto {
        Protocol::Tcp => std::net::TcpListener::bind(a)
            .unwrap()
            .local_addr()
            .unwrap(),
        Protocol::Udp => std::net::UdpSocket::bind(a).unwrap().local_addr().unwrap(),
    }
}

fn spec(name: &str, listen: SocketAddr, protocol: Protocol, target: SocketAddr) -> ForwardSpec {
    ForwardSpec {
        name: name.into(),
        listen,
        protocol,
        target: TargetSpec::Address {
            host: target.ip().to_string(),
            port: target.port(),
        },
    }
}

fn forwarder(splice: bool) -> Forwarder {
    Forwarder::new(
        Arc::new(StaticResolver),
        ForwarderOptions {
            udp_idle: Duration::from_millis(300),
            splice,
        },
    )
}

/// TCP server that greets with `<id>\n`, then echoes until the client half-closes, then
/// half-closes itself.
async fn tagged_echo(id: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                w.write_all(format!("{id}\n").as_bytes()).await.unwrap();
                tokio::io::copy(&mut r, &mut w).await.ok();
                w.shutdown().await.ok();
            });
        }
    });
    a
}

struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    server: String,
}

async fn open(listen: SocketAddr) -> Conn {
    let s = TcpStream::connect(listen).await.unwrap();
    let (r, w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut server = String::new();
    r.read_line(&mut server).await.unwrap();
    Conn {
        r,
        w,
        server: server.trim().to_string(),
    }
}

impl Conn {
    async fn ping(&mut self, msg: &str) -> String {
        self.w
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .unwrap();
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line))
            .await
            .expect("echo within 10s")
            .unwrap();
        line.trim().to_string()
    }
}

async fn bulk_round_trip(splice: bool) {
    let echo = tagged_echo("bulk").await;
    let fwd = forwarder(splice);
    let listen = free_port(&addr(1 + splice as u8), Protocol::Tcp);
    let r = fwd
        .apply(&[spec("bulk", listen, Protocol::Tcp, echo)])
        .await;
    assert_eq!((r.tried, r.failed), (1, 0), "{r:?}");

    let payload: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let s = TcpStream::connect(listen).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let p = payload.clone();
    // Write everything, then half-close: the echo must still come back in full and end in EOF.
    let writer = tokio::spawn(async move {
        wr.write_all(&p).await.unwrap();
        wr.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    rd.read_to_end(&mut got).await.unwrap();
    writer.await.unwrap();
    assert_eq!(&got[..5], b"bulk\n");
    assert_eq!(got.len() - 5, payload.len());
    assert!(got[5..] == payload[..], "echoed bytes differ");

    // Counters settle once the connection task has finished.
    let mut st = fwd.stats().await;
    for _ in 0..100 {
        if st[0].connections_active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        st = fwd.stats().await;
    }
    let st = &st[0];
    assert_eq!(
        (st.state, st.connections_total, st.connections_active),
        ("listening", 1, 0)
    );
    assert_eq!(st.bytes_to_target, payload.len() as u64);
    assert_eq!(st.bytes_from_target, payload.len() as u64 + 5);

    let mut registry = prometheus_client::registry::Registry::default();
    fwd.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let line = format!(
        "macula_forward_bytes_total{{forward=\"bulk\",listen=\"{listen}\",protocol=\"tcp\",direction=\"to_target\"}} {}",
        payload.len()
    );
    assert!(text.contains(&line), "{line} not in\n{text}");
    assert!(
        text.contains("macula_forward_connections_active{"),
        "{text}"
    );
    fwd.shutdown().await;
}

#[tokio::test]
async fn tcp_bulk_with_half_close_buffered() {
    bulk_round_trip(false).await;
}

#[tokio::test]
async fn tcp_bulk_with_half_close_splice() {
    bulk_round_trip(true).await;
}

#[tokio::test]
async fn live_reconfiguration_touches_only_changed_forwards() {
    let (one, two) = (tagged_echo("one").await, tagged_echo("two").await);
    let fwd = forwarder(true);
    let la = free_port(&addr(10), Protocol::Tcp);
    let lb = free_port(&addr(11), Protocol::Tcp);
    let a = spec("a", la, Protocol::Tcp, one);
    let b = spec("b", lb, Protocol::Tcp, one);

    fwd.apply(std::slice::from_ref(&b)).await;
    let mut long_b = open(lb).await;
    assert_eq!(long_b.ping("b1").await, "b1");

    // Add a forward: the open connection on b is untouched.
    let r = fwd.apply(&[a.clone(), b.clone()]).await;
    assert_eq!(
        (r.started.clone(), r.stopped.len()),
        (vec!["a".to_string()], 0)
    );
    let mut long_a = open(la).await;
    assert_eq!(long_a.server, "one");
    assert_eq!(long_a.ping("a1").await, "a1");
    assert_eq!(long_b.ping("b2").await, "b2");

    // Retarget a: open connections keep their server, new ones reach the new target.
    let a2 = spec("a", la, Protocol::Tcp, two);
    let r = fwd.apply(&[a2.clone(), b.clone()]).await;
    assert_eq!(r.retargeted, ["a"]);
    assert_eq!(long_a.ping("a2").await, "a2");
    assert_eq!(open(la).await.server, "two");

    // Re-applying the same specs changes nothing.
    let r = fwd.apply(&[a2.clone(), b.clone()]).await;
    assert!(
        r.started.is_empty() && r.stopped.is_empty() && r.retargeted.is_empty(),
        "{r:?}"
    );

    // Remove a: its listener is gone, b's connection still flows.
    let r = fwd.apply(std::slice::from_ref(&b)).await;
    assert_eq!(r.stopped, ["a"]);
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(la).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "listener of a removed forward still accepts");
    assert_eq!(long_b.ping("b3").await, "b3");
    assert_eq!(long_b.server, "one");
    let st = fwd.stats().await;
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].name.as_str(), st[0].connections_active), ("b", 1));

    // A rename restarts that listener on the same address (the old socket is closed first).
    let renamed = ForwardSpec {
        name: "b-renamed".into(),
        ..b.clone()
    };
    let r = fwd.apply(&[renamed]).await;
    assert_eq!(
        (r.stopped, r.started, r.failed),
        (vec!["b".to_string()], vec!["b-renamed".to_string()], 0)
    );
    assert_eq!(open(lb).await.server, "one");
    fwd.shutdown().await;
}

/// UDP server answering `<id>:<payload>`.
async fn udp_echo(id: &'static str) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, from) = s.recv_from(&mut buf).await.unwrap();
            let mut out = format!("{id}:").into_bytes();
            out.extend_from_slice(&buf[..n]);
            s.send_to(&out, from).await.unwrap();
        }
    });
    a
}

async fn udp_ask(c: &UdpSocket, msg: &str) -> String {
    c.send(msg.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(10), c.recv(&mut buf))
        .await
        .expect("udp reply within 10s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test]
async fn udp_replies_go_back_to_the_right_client_and_flows_idle_out() {
    let echo = udp_echo("u").await;
    let fwd = forwarder(false);
    let listen = free_port(&addr(20), Protocol::Udp);
    let r = fwd
        .apply(&[spec("quic", listen, Protocol::Udp, echo)])
        .await;
    assert_eq!(r.failed, 0, "{r:?}");

    let c1 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let c2 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c1.connect(listen).await.unwrap();
    c2.connect(listen).await.unwrap();
    for i in 0..20 {
        assert_eq!(
            udp_ask(&c1, &format!("one-{i}")).await,
            format!("u:one-{i}")
        );
        assert_eq!(
            udp_ask(&c2, &format!("two-{i}")).await,
            format!("u:two-{i}")
        );
    }
    let st = &fwd.stats().await[0];
    assert_eq!((st.connections_total, st.connections_active), (2, 2));
    assert_eq!(st.bytes_to_target, 2 * (10 * 5 + 10 * 6));

    // Flows end after the idle timeout; the next datagram opens a new one.
    let mut active = 2;
    for _ in 0..200 {
        active = fwd.stats().await[0].connections_active;
        if active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(active, 0, "idle flows were not closed");
    assert_eq!(udp_ask(&c1, "again").await, "u:again");
    assert_eq!(fwd.stats().await[0].connections_total, 3);
    fwd.shutdown().await;
}

#[tokio::test]
async fn bind_errors_are_reported_and_other_forwards_still_start() {
    let echo = tagged_echo("x").await;
    let holder = TcpListener::bind(format!("{}:0", addr(30))).await.unwrap();
    let taken = holder.local_addr().unwrap();
    let ok = free_port(&addr(31), Protocol::Tcp);
    let fwd = forwarder(false);
    let r = fwd
        .apply(&[
            spec("taken", taken, Protocol::Tcp, echo),
            spec("ok", ok, Protocol::Tcp, echo),
        ])
        .await;
    assert_eq!((r.tried, r.failed), (2, 1));
    assert!(
        r.errors[0].to_string().contains("address in use"),
        "{:?}",
        r.errors
    );
    assert_eq!(r.errors[0].forward(), Some("taken"));
    let st = fwd.stats().await;
    let failed = st.iter().find(|s| s.name == "taken").unwrap();
    assert_eq!(failed.state, "failed");
    assert_eq!(open(ok).await.server, "x");

    // Once the port is free, the next apply starts the failed forward.
    drop(holder);
    let r = fwd
        .apply(&[
            spec("taken", taken, Protocol::Tcp, echo),
            spec("ok", ok, Protocol::Tcp, echo),
        ])
        .await;
    assert_eq!(
        (r.started.clone(), r.failed),
        (vec!["taken".to_string()], 0)
    );
    assert_eq!(open(taken).await.server, "x");
    fwd.shutdown().await;
}
