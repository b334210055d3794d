//! Shared test fixtures: a throw-away desired-state repo, unique names and subnets, the
//! busybox test image, and cleanup of everything a test's hosts created — even on panic.
#![allow(dead_code)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const IMAGE: &str = "macula-test-busybox:1";
pub const BIN: &str = env!("CARGO_BIN_EXE_macula-gitops");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Build the busybox image the tests run (FROM scratch + Debian's busybox-static). Idempotent;
/// parallel builds of the same content are harmless.
pub fn ensure_image() {
    let ok = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", ctx.path().join("busybox"))
        .expect("busybox-static is installed (tests/run.sh installs it)");
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n").unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building {IMAGE}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Fixture {
    pub id: String,
    pub repo: tempfile::TempDir,
    pub state: tempfile::TempDir,
    hosts: RefCell<Vec<String>>,
}

impl Fixture {
    pub fn new() -> Self {
        ensure_image();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let id = format!(
            "{:x}",
            (std::process::id() as u64 * 7919 + n as u64 * 104729 + nanos as u64) % 0xffffff
        );
        Self {
            id,
            repo: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
            hosts: RefCell::new(Vec::new()),
        }
    }

    /// A name unique to this test: `t<id>-<suffix>`.
    pub fn name(&self, suffix: &str) -> String {
        format!("t{}-{suffix}", self.id)
    }

    /// A /24 for this test in 10.200.0.0/13 (private, Docker bridges only), derived from the id.
    pub fn subnet_prefix(&self) -> String {
        let v = u32::from_str_radix(&self.id, 16).unwrap_or(0);
        format!("10.{}.{}", 200 + (v % 8), (v / 8) % 256)
    }

    /// The desired-state dir inside the repo.
    pub fn root(&self) -> PathBuf {
        self.repo.path().join("desired-state")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Fill `{id}`, `{net}` and `{image}` placeholders, so fixtures read like real files.
    pub fn fill(&self, text: &str) -> String {
        text.replace("{id}", &self.id)
            .replace("{net}", &self.subnet_prefix())
            .replace("{image}", IMAGE)
    }

    pub fn host(&self, suffix: &str) -> String {
        let h = self.name(suffix);
        if !self.hosts.borrow().contains(&h) {
            self.hosts.borrow_mut().push(h.clone());
        }
        h
    }

    pub fn command(&self, host: &str, args: &[&str]) -> Command {
        let host = self.host(host);
        let mut c = Command::new(BIN);
        c.arg("--desired-state")
            .arg(self.root())
            .arg("--host")
            .arg(host)
            .arg("--state-dir")
            .arg(self.state.path())
            .args(args);
        c.env("MACULA_GITOPS_LOG", "warn");
        c
    }

    pub fn run(&self, host: &str, args: &[&str]) -> Output {
        self.command(host, args).output().unwrap()
    }

    /// Start a long-running command (e.g. `run`); it is killed when the guard drops.
    pub fn spawn(&self, host: &str, args: &[&str]) -> KillOnDrop {
        KillOnDrop(self.command(host, args).spawn().unwrap())
    }

    /// Run and require success, returning stdout.
    pub fn ok(&self, host: &str, args: &[&str]) -> String {
        let o = self.run(host, args);
        assert!(
            o.status.success(),
            "{args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for h in self.hosts.borrow().iter() {
            let filter = format!("label=io.macula.gitops.host={h}");
            for (list, rm) in [
                (vec!["ps", "-aq"], vec!["rm", "-f"]),
                (vec!["network", "ls", "-q"], vec!["network", "rm"]),
                (vec!["volume", "ls", "-q"], vec!["volume", "rm", "-f"]),
            ] {
                let ids = docker(&[list.as_slice(), &["--filter", &filter]].concat());
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let _ = Command::new("docker").args(&rm).args(&ids).output();
                }
            }
        }
    }
}

/// Run the docker CLI, returning trimmed stdout ("" on failure).
pub fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn container_id(name: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}}", name])
}

pub fn container_state(name: &str) -> String {
    docker(&["inspect", "-f", "{{.State.Status}}", name])
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

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
