//! Debian's real `docker-registry` (the CNCF distribution registry) on a free 127.0.0.1 port,
//! filesystem storage in a temp dir, killed on drop; and its HTTP API read back over a plain
//! socket (HTTP/1.0: the answer ends when the registry closes the connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use crate::support::{free_port, KillOnDrop};

const BINARY: &str = "/usr/bin/docker-registry";

pub struct DockerRegistry {
    _server: KillOnDrop,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

/// One answer: status, header lines (lowercase names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl DockerRegistry {
    /// `None` when the package is not installed (the caller prints `skipped: …`).
    pub fn start() -> Option<Self> {
        if !std::path::Path::new(BINARY).exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n", dir.path().join("data").display()),
        )
        .unwrap();
        let mut child = Command::new(BINARY)
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Ready when it says it listens (no sleeps).
        let err = child.stderr.take().unwrap();
        let mut lines = BufReader::new(err).lines();
        for line in lines.by_ref() {
            if line.unwrap().contains("listening on") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Some(Self {
            _server: KillOnDrop(child),
            addr,
            _dir: dir,
        })
    }

    /// `GET /v2/<path>` with `Accept: <accept>`.
    pub fn get(&self, path: &str, accept: &str) -> Answer {
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET /v2/{path} HTTP/1.0\r\nHost: {}\r\nAccept: {accept}\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Answer {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    /// The tags of `repo`, as the registry lists them.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let a = self.get(&format!("{repo}/tags/list"), "application/json");
        if a.status == 404 {
            return Vec::new();
        }
        let mut tags: Vec<String> = a.json()["tags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }
}
