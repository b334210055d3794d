//! Binding listen sockets with errors an operator can act on: who holds the port, which
//! capability is missing, which loopback alias is absent.
//!
//! On Linux all of 127.0.0.0/8 is routed to `lo`, so any 127.x address binds without setup.
//! On macOS only 127.0.0.1 exists until `ifconfig lo0 alias 127.0.0.x up` is run;
//! `ensure_loopback_alias` does that (needs root) when a bind fails with EADDRNOTAVAIL.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket, UdpSocket};

use super::RoutingError;
use crate::desired::catalog::Protocol;

pub async fn tcp(listen: SocketAddr) -> Result<TcpListener, RoutingError> {
    match try_tcp(listen) {
        Err(e) if e.raw_os_error() == Some(libc_eaddrnotavail()) && needs_alias(listen.ip()) => {
            ensure_loopback_alias(listen.ip()).await?;
            try_tcp(listen).map_err(|e| explain(listen, Protocol::Tcp, e))
        }
        r => r.map_err(|e| explain(listen, Protocol::Tcp, e)),
    }
}

fn try_tcp(listen: SocketAddr) -> io::Result<TcpListener> {
    let s = if listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Restarting the agent must not wait for TIME_WAIT of the previous run's connections.
    s.set_reuseaddr(true)?;
    s.set_nodelay(true)?;
    s.bind(listen)?;
    s.listen(1024)
}

pub async fn udp(listen: SocketAddr) -> Result<UdpSocket, RoutingError> {
    match UdpSocket::bind(listen).await {
        Err(e) if e.raw_os_error() == Some(libc_eaddrnotavail()) && needs_alias(listen.ip()) => {
            ensure_loopback_alias(listen.ip()).await?;
            UdpSocket::bind(listen)
                .await
                .map_err(|e| explain(listen, Protocol::Udp, e))
        }
        r => r.map_err(|e| explain(listen, Protocol::Udp, e)),
    }
}

/// Does `ip` exist on this host (binding it works)? Read-only: the probe socket is dropped.
pub fn address_present(ip: IpAddr) -> bool {
    !matches!(std::net::UdpSocket::bind((ip, 0)), Err(e) if e.raw_os_error() == Some(libc_eaddrnotavail()))
}

fn libc_eaddrnotavail() -> i32 {
    nix::errno::Errno::EADDRNOTAVAIL as i32
}

fn needs_alias(ip: IpAddr) -> bool {
    cfg!(target_os = "macos") && ip.is_loopback() && ip != IpAddr::from([127, 0, 0, 1])
}

/// Turn a bind error into one that says what to do about it.
pub fn explain(listen: SocketAddr, protocol: Protocol, e: io::Error) -> RoutingError {
    use nix::errno::Errno;
    let reason = match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EADDRINUSE) => match holder(listen, protocol) {
            Some(who) => format!("address in use by {who}"),
            None => "address in use (by a process this agent cannot see; try `ss -lntup`)".into(),
        },
        Some(Errno::EACCES) if listen.port() < 1024 => format!(
            "permission denied: port {} is below 1024; give the agent CAP_NET_BIND_SERVICE \
             (`setcap cap_net_bind_service=+ep <binary>` or AmbientCapabilities= in its unit) or run it as root",
            listen.port()
        ),
        Some(Errno::EADDRNOTAVAIL) if cfg!(target_os = "macos") => format!(
            "address not available: run `sudo ifconfig lo0 alias {} up` (the agent does this itself when run as root)",
            listen.ip()
        ),
        Some(Errno::EADDRNOTAVAIL) => "address not available on any interface of this host".into(),
        _ => e.to_string(),
    };
    RoutingError::Bind {
        listen,
        protocol,
        reason,
        source: e,
    }
}

/// `pid 123 (nginx)` holding `listen`, found through /proc the way `ss -p` does: the socket's
/// inode from /proc/net/{tcp,udp}[6], then the process with an fd on that inode. Needs
/// permission to read other processes' fds (root), otherwise None.
#[cfg(target_os = "linux")]
pub fn holder(listen: SocketAddr, protocol: Protocol) -> Option<String> {
    let tables: &[&str] = match protocol {
        Protocol::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        Protocol::Udp => &["/proc/net/udp", "/proc/net/udp6"],
    };
    let port = format!("{:04X}", listen.port());
    let mut inodes = Vec::new();
    for t in tables {
        let Ok(text) = std::fs::read_to_string(t) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN (tcp), 07 is unconnected (udp).
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let listening = matches!(
                (protocol, *state),
                (Protocol::Tcp, "0A") | (Protocol::Udp, "07")
            );
            if listening && local.ends_with(&format!(":{port}")) && *inode != "0" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                    let comm =
                        std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                    return Some(format!("pid {pid} ({})", comm.trim()));
                }
            }
        }
    }
    None
}

#[cfg(not(target_os = "linux"))]
pub fn holder(_listen: SocketAddr, _protocol: Protocol) -> Option<String> {
    None
}

/// macOS: add `ip` as an alias on lo0 (`ifconfig lo0 alias <ip> up`), which only root may do.
/// Not persistent across reboots; the agent re-adds it at every start. Untested here (Linux).
#[cfg(target_os = "macos")]
pub async fn ensure_loopback_alias(ip: IpAddr) -> Result<(), RoutingError> {
    if ip == IpAddr::from([127, 0, 0, 1]) || !ip.is_loopback() {
        return Ok(());
    }
    let out = tokio::process::Command::new("/sbin/ifconfig")
        .args(["lo0", "alias", &ip.to_string(), "up"])
        .output()
        .await
        .map_err(|e| RoutingError::Alias {
            address: ip,
            reason: e.to_string(),
        })?;
    if out.status.success() {
        tracing::info!(address = %ip, "added loopback alias on lo0");
        Ok(())
    } else {
        Err(RoutingError::Alias {
            address: ip,
            reason: format!(
                "`ifconfig lo0 alias {ip} up` failed ({}): {}; run it as root",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Linux routes all of 127.0.0.0/8 to lo: nothing to add.
#[cfg(not(target_os = "macos"))]
pub async fn ensure_loopback_alias(_ip: IpAddr) -> Result<(), RoutingError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn address_in_use_names_the_holder() {
        let first = tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = first.local_addr().unwrap();
        let err = tcp(addr).await.unwrap_err().to_string();
        assert!(err.contains("address in use"), "{err}");
        if nix::unistd::Uid::effective().is_root() {
            assert!(
                err.contains(&format!("pid {}", std::process::id())),
                "{err}"
            );
        }
    }

    #[test]
    fn low_port_permission_message_names_the_capability() {
        let e = io::Error::from_raw_os_error(nix::errno::Errno::EACCES as i32);
        let msg = explain("127.0.0.2:80".parse().unwrap(), Protocol::Tcp, e).to_string();
        assert!(
            msg.contains("CAP_NET_BIND_SERVICE") && msg.contains("root"),
            "{msg}"
        );
    }
}
