//! TCP forwarding: accept, resolve the target for this connection, connect, relay both ways
//! with half-close passed through (one side's EOF shuts down writing on the other, the other
//! direction keeps flowing until it ends too).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Shared;
use crate::routing::RoutingError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BUF: usize = 64 * 1024;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((client, peer)) => {
                shared.stats.total.inc();
                shared.stats.active.inc();
                let shared = shared.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shared.cancel.cancelled() => {}
                        r = handle(client, &shared) => if let Err(e) = r {
                            shared.stats.errors.inc();
                            tracing::debug!(%peer, error = %e, "forwarded connection ended with an error");
                        }
                    }
                    shared.stats.active.dec();
                });
            }
            Err(e) => {
                shared.stats.errors.inc();
                tracing::debug!(error = %e, "accept failed");
                // Out of fds or similar: back off instead of spinning on the error.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error(transparent)]
    Resolve(#[from] RoutingError),
    #[error("connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("relay: {0}")]
    Relay(#[from] io::Error),
}

async fn handle(client: TcpStream, shared: &Shared) -> Result<(), ConnError> {
    let upstream = connect(shared).await?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let s = &shared.stats;
    #[cfg(target_os = "linux")]
    if shared.use_splice {
        tokio::try_join!(
            super::splice::copy(&client, &upstream, &s.bytes_up),
            super::splice::copy(&upstream, &client, &s.bytes_down),
        )?;
        return Ok(());
    }
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::try_join!(copy(cr, uw, &s.bytes_up), copy(ur, cw, &s.bytes_down))?;
    Ok(())
}

/// Connect to the current target; if that fails, drop any cached address and try once more,
/// which is how a recreated container's new IP is picked up at once.
async fn connect(shared: &Shared) -> Result<TcpStream, ConnError> {
    let target = shared.target();
    let mut last = None;
    for attempt in 0..2 {
        if attempt > 0 {
            shared.resolver.invalidate(&target);
        }
        let addr = shared.resolver.resolve(&target).await?;
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(source)) => last = Some(ConnError::Connect { addr, source }),
            Err(_) => {
                last = Some(ConnError::Connect {
                    addr,
                    source: io::Error::new(io::ErrorKind::TimedOut, "timed out"),
                })
            }
        }
    }
    Err(last.expect("the loop ran at least once"))
}

async fn copy<R, W>(mut r: R, mut w: W, counter: &Counter) -> io::Result<()>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return match w.shutdown().await {
                Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
                _ => Ok(()),
            };
        }
        w.write_all(&buf[..n]).await?;
        counter.inc_by(n as u64);
    }
}
