//! UDP forwarding: one upstream socket per client address (a "flow"), so replies coming back
//! on that socket belong to exactly that client. A flow ends after `udp_idle` without traffic
//! in either direction; the next datagram from that client starts a new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;

use super::Shared;

const MAX_DATAGRAM: usize = 65_535;

struct Flow {
    upstream: Arc<UdpSocket>,
    state: Arc<FlowState>,
}

struct FlowState {
    /// Milliseconds since `epoch` of the last datagram either way.
    last: AtomicU64,
    closed: AtomicBool,
    epoch: Instant,
}

impl FlowState {
    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64).saturating_sub(self.last.load(Ordering::Relaxed))
    }
}

pub async fn serve(socket: UdpSocket, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, client) = match received {
            Ok(r) => r,
            Err(e) => {
                // On Linux an ICMP error from an earlier send_to can surface here; not fatal.
                shared.stats.errors.inc();
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let live = flows
            .get(&client)
            .is_some_and(|f| !f.state.closed.load(Ordering::Relaxed));
        if !live {
            flows.retain(|_, f| !f.state.closed.load(Ordering::Relaxed));
            match open_flow(&socket, client, &shared).await {
                Ok(f) => {
                    flows.insert(client, f);
                }
                Err(e) => {
                    shared.stats.errors.inc();
                    tracing::debug!(%client, error = %e, "udp flow could not be opened; datagram dropped");
                    continue;
                }
            }
        }
        let flow = flows.get(&client).expect("flow inserted above");
        flow.state.touch();
        match flow.upstream.send(&buf[..n]).await {
            Ok(sent) => {
                shared.stats.bytes_up.inc_by(sent as u64);
            }
            Err(e) => {
                shared.stats.errors.inc();
                tracing::debug!(%client, error = %e, "udp send to target failed");
            }
        }
    }
}

async fn open_flow(
    listen: &Arc<UdpSocket>,
    client: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<Flow, Box<dyn std::error::Error + Send + Sync>> {
    let target = shared.resolver.resolve(&shared.target()).await?;
    let local: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let upstream = UdpSocket::bind(local).await?;
    upstream.connect(target).await?;
    let upstream = Arc::new(upstream);
    let state = Arc::new(FlowState {
        last: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        epoch: Instant::now(),
    });
    shared.stats.total.inc();
    shared.stats.active.inc();
    tokio::spawn(replies(
        listen.clone(),
        upstream.clone(),
        client,
        state.clone(),
        shared.clone(),
    ));
    Ok(Flow { upstream, state })
}

/// Relay the target's replies to `client` until the flow idles out or the forward stops.
async fn replies(
    listen: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    state: Arc<FlowState>,
    shared: Arc<Shared>,
) {
    let idle = shared.udp_idle;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let wait = idle.saturating_sub(std::time::Duration::from_millis(state.idle_ms()));
        if wait.is_zero() {
            break;
        }
        let r = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => continue,
            r = upstream.recv(&mut buf) => r,
        };
        match r {
            Ok(n) => {
                state.touch();
                match listen.send_to(&buf[..n], client).await {
                    Ok(sent) => {
                        shared.stats.bytes_down.inc_by(sent as u64);
                    }
                    Err(e) => {
                        shared.stats.errors.inc();
                        tracing::debug!(%client, error = %e, "udp reply to client failed");
                    }
                }
            }
            Err(e) => {
                // ECONNREFUSED from an ICMP port-unreachable: the target is down for now.
                shared.stats.errors.inc();
                tracing::debug!(%client, error = %e, "udp receive from target failed");
            }
        }
    }
    state.closed.store(true, Ordering::Relaxed);
    shared.stats.active.dec();
}
