//! Helpers shared by every area module of the `it` binary. Use these; do not copy one into a
//! test module (`duplicates --repo agent` must find no pair here).
//!
//! - [`unique_id`]: the one source of per-test names (containers, networks, hosts, clusters).
//! - [`image::busybox`]: the one test image (scratch + busybox-static + `udpecho`), built once.
//! - [`docker::Cleanup`]: the one guard that removes what a test created on the engine;
//!   [`docker::Sandbox`] adds a bollard client and creates networks/containers through it.
//! - [`KillOnDrop`]: every process a test starts (servers, the agent binary) dies with the test.
//! - Starting the agent: [`fixture::Fixture::spawn`] runs the binary (CLI tests);
//!   [`daemon::start`] / [`daemon::start_applied`] run the daemon in-process with
//!   [`reconciler::BusyboxReconciler`], from a [`daemon::Scenario`] (repo + `app.env`).
//! - [`run`] a command that must succeed, [`free_port`], [`wait_until`], [`wait_for_listener`],
//!   [`http_get`], [`processes_naming`] (no child left running).
//! - [`receiver::Receiver`]: a local HTTP endpoint that records requests and answers queued
//!   statuses (notification sinks, forge status APIs); [`receiver::Silent`] never answers.
//! - [`git`]: real repos, smart HTTP (`git http-backend`) and sshd; [`cluster`]: kind/Flux fakes
//!   and `clusters.yaml` text → what `apply` receives.
// The push_latency example compiles this module too: it uses only part of it, and it is not
// under it/main.rs's crate attributes.
#![allow(dead_code, clippy::unwrap_used)]

pub mod cluster;
pub mod daemon;
pub mod docker;
pub mod fixture;
pub mod git;
pub mod image;
pub mod receiver;
pub mod reconciler;
pub mod tls;

use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The agent binary. `option_env!` because the bench example (`push_latency`) compiles this
/// module too, and cargo sets the variable for tests only.
pub const BIN: &str = match option_env!("CARGO_BIN_EXE_macula-gitops") {
    Some(p) => p,
    None => "macula-gitops",
};

/// The agent binary to run: `MACULA_GITOPS_TEST_BIN` when set, else [`BIN`]. Worktrees sharing
/// one `CARGO_TARGET_DIR` overwrite each other's `target/debug/macula-gitops`; the variable
/// points a run at its own `target/debug/deps/macula_gitops-<hash>`.
pub fn bin() -> String {
    std::env::var("MACULA_GITOPS_TEST_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// Eight hex digits, unique per call across processes and threads; the first is a letter
/// (a-f), so the id can start a DNS label, a kind cluster or a container name.
pub fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64;
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finaliser: neighbouring inputs give unrelated ids.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("{:08x}", 0xa000_0000 + x % 0x6000_0000)
}

/// A port on 127.0.0.1 free for both TCP and UDP (DNS servers bind both) at the time of asking.
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Run `cmd` to completion and require success; returns its trimmed stdout. A failure names
/// the command and shows its stderr.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Poll `f` until it is true or `limit` passes (a bound on waiting, not a timing assertion).
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes whose command line names `needle` (an `ssh` left running would).
pub fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

/// `GET /index.html` over HTTP/1.0 at `addr`: the whole answer, or `None` when nothing answers.
pub fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Wait until something accepts TCP connections on 127.0.0.1:`port` (at most 2 s).
pub fn wait_for_listener(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process started by a test; killed and reaped when dropped, also when the test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
