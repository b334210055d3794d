//! Who may drive the local API.
//!
//! Control endpoints (`/reconcile`, `/suspend`, `/resume`) need the bearer token the daemon
//! writes to `<state_dir>/api-token` (0600) at every start: only users who can read the state
//! dir (root, or the agent's own user) can drive the agent, however the listener is bound.
//! The Host and Origin headers defend against browsers: a page on another site can send POSTs
//! (CSRF) and, via DNS rebinding, make its own name resolve to 127.0.0.1. Such requests carry
//! the attacker's name in Host/Origin, so any name other than the listen address or a loopback
//! name is refused.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use super::ServerError;

pub const TOKEN_FILE: &str = "api-token";

pub fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join(TOKEN_FILE)
}

/// A fresh random token, written atomically with mode 0600 (never readable by others, not even
/// for an instant: the temp file is created with that mode).
pub fn write_token(state_dir: &Path) -> Result<String, ServerError> {
    let path = token_path(state_dir);
    let io = |source| ServerError::Io {
        path: path.clone(),
        source,
    };
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|source| ServerError::Io {
            path: "/dev/urandom".into(),
            source,
        })?;
    let token = hex::encode(raw);
    let tmp = state_dir.join(format!(".{TOKEN_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(format!("{token}\n").as_bytes()).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(token)
}

pub fn read_token(state_dir: &Path) -> Result<String, ServerError> {
    let path = token_path(state_dir);
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(256).read_to_string(&mut text))
        .map_err(|source| ServerError::Io { path, source })?;
    Ok(text.trim().to_string())
}

/// Why a request was refused; the text goes back to the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 403: Host or Origin names another site, or a remote peer asked for control.
    Forbidden(String),
    /// 401: no or wrong token.
    Unauthorized,
}

pub struct ApiGuard {
    token: String,
    /// `host:port` values the agent answers to: loopback names and the listen address.
    hosts: Vec<String>,
}

impl ApiGuard {
    pub fn new(listen: SocketAddr, token: String) -> Self {
        let port = listen.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        if !listen.ip().is_unspecified() {
            hosts.push(listen.to_string());
        }
        Self { token, hosts }
    }

    fn own_host(&self, h: &str) -> bool {
        self.hosts.iter().any(|o| o.eq_ignore_ascii_case(h))
    }

    /// Read-only endpoints: a foreign Origin is refused, and so is a foreign Host from a
    /// loopback peer (that is a browser on this machine fooled by DNS rebinding). Remote
    /// peers may use whatever name reaches the listener.
    pub fn check_read(&self, peer: &SocketAddr, headers: &HeaderMap) -> Result<(), Refusal> {
        self.check_origin(headers)?;
        if peer.ip().is_loopback() {
            self.check_host(headers)?;
        }
        Ok(())
    }

    /// Control endpoints: loopback peer, own Host, no foreign Origin, and the token.
    pub fn check_control(&self, peer: &SocketAddr, headers: &HeaderMap) -> Result<(), Refusal> {
        if !peer.ip().is_loopback() {
            return Err(Refusal::Forbidden(
                "control endpoints are local only".into(),
            ));
        }
        self.check_origin(headers)?;
        self.check_host(headers)?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if given.as_bytes().ct_eq(self.token.as_bytes()).into() {
            Ok(())
        } else {
            Err(Refusal::Unauthorized)
        }
    }

    fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if self.own_host(host) {
            Ok(())
        } else {
            Err(Refusal::Forbidden(format!(
                "Host {host:?} is not this agent's address"
            )))
        }
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let text = origin.to_str().unwrap_or("");
        match text.strip_prefix("http://") {
            Some(h) if self.own_host(h) => Ok(()),
            _ => Err(Refusal::Forbidden(format!(
                "Origin {text:?} is not this agent"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn foreign_names_and_missing_tokens_are_refused() {
        let listen: SocketAddr = "127.0.0.1:9470".parse().expect("addr");
        let g = ApiGuard::new(listen, "t0k".into());
        let local = listen;
        let auth = ("authorization", "Bearer t0k");
        let ok = headers(&[("host", "127.0.0.1:9470"), auth]);
        assert_eq!(g.check_control(&local, &ok), Ok(()));
        let ok = headers(&[
            ("host", "localhost:9470"),
            ("origin", "http://localhost:9470"),
            auth,
        ]);
        assert_eq!(g.check_control(&local, &ok), Ok(()));
        let evil = headers(&[
            ("host", "evil.example"),
            ("origin", "http://evil.example"),
            auth,
        ]);
        assert!(matches!(
            g.check_control(&local, &evil),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            g.check_read(&local, &evil),
            Err(Refusal::Forbidden(_))
        ));
        let rebound = headers(&[("host", "evil.example:9470"), auth]);
        assert!(matches!(
            g.check_control(&local, &rebound),
            Err(Refusal::Forbidden(_))
        ));
        let no_token = headers(&[("host", "127.0.0.1:9470")]);
        assert_eq!(
            g.check_control(&local, &no_token),
            Err(Refusal::Unauthorized)
        );
        let wrong = headers(&[("host", "127.0.0.1:9470"), ("authorization", "Bearer t0")]);
        assert_eq!(g.check_control(&local, &wrong), Err(Refusal::Unauthorized));
        let remote: SocketAddr = "10.1.2.3:5000".parse().expect("addr");
        let named = headers(&[("host", "lab1.example:9470")]);
        assert_eq!(g.check_read(&remote, &named), Ok(()));
    }

    #[test]
    fn token_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let t = write_token(dir.path()).expect("write");
        assert_eq!(t.len(), 64);
        let mode = std::fs::metadata(token_path(dir.path()))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_token(dir.path()).expect("read"), t);
        assert_ne!(write_token(dir.path()).expect("again"), t);
    }
}
