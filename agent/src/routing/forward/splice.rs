//! Zero-copy TCP relay with splice(2): socket → pipe → socket, never through user space.
//! Both directions borrow the same `TcpStream`s (readiness and `try_io` take `&self`), so no
//! split is needed. The pipe is drained completely before the next read, which makes an
//! EAGAIN unambiguous: on the read side the socket is empty, on the write side it is full.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::sys::socket::{shutdown, Shutdown};
use prometheus_client::metrics::counter::Counter;
use tokio::io::Interest;
use tokio::net::TcpStream;

const PIPE_SIZE: usize = 1 << 20;

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // A bigger pipe moves more per syscall; the default (64 KiB) still works if refused.
    let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32));
    Ok((r, w))
}

/// Copy `from` → `to` until EOF, then half-close `to` for writing.
pub async fn copy(from: &TcpStream, to: &TcpStream, counter: &Counter) -> io::Result<()> {
    let (pr, pw) = pipe()?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from.as_fd(), None, pw.as_fd(), None, PIPE_SIZE, flags)
                    .map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // Peer finished sending: pass the half-close on, keep the other direction open.
            return match shutdown(to.as_raw_fd(), Shutdown::Write) {
                Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pr.as_fd(), None, to.as_fd(), None, left, flags).map_err(io::Error::from)
            }) {
                Ok(m) => {
                    left -= m;
                    counter.inc_by(m as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
