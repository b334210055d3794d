//! A throw-away desired-state repo driven through the agent binary: unique names and subnets,
//! `{id}`/`{net}`/`{image}` placeholders, and removal of everything its hosts created — even
//! on panic.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::docker::Cleanup;
use super::{bin, image, unique_id, KillOnDrop};

/// The label the agent puts on everything it creates for a host.
const HOST_LABEL: &str = "io.macula.gitops.host";

pub struct Fixture {
    pub id: String,
    pub repo: tempfile::TempDir,
    pub state: tempfile::TempDir,
    /// The data root (read-write binds): outside the state dir, as on a real host.
    pub data: tempfile::TempDir,
    /// The local API of a `run` started from this fixture (and what `status` asks).
    pub listen: std::net::SocketAddr,
    cleanup: RefCell<Cleanup>,
}

impl Fixture {
    pub fn new() -> Self {
        image::busybox();
        Self {
            id: unique_id(),
            repo: tempfile::tempdir().expect("temp dir"),
            state: tempfile::tempdir().expect("temp dir"),
            data: tempfile::tempdir().expect("temp dir"),
            listen: format!("127.0.0.1:{}", super::free_port())
                .parse()
                .expect("addr"),
            cleanup: RefCell::default(),
        }
    }

    /// Where `agent_config` writes; every command reads it once it exists.
    pub fn config_path(&self) -> PathBuf {
        self.repo.path().join("agent.yaml")
    }

    /// Write the host's agent config (e.g. the `policy:` granting what a case needs).
    pub fn agent_config(&self, yaml: &str) {
        std::fs::write(self.config_path(), yaml).expect("write agent config");
    }

    /// A name unique to this test: `t<id>-<suffix>`.
    pub fn name(&self, suffix: &str) -> String {
        format!("t{}-{suffix}", self.id)
    }

    /// A /24 for this test in 10.200.0.0/13 (private, Docker bridges only), derived from the id.
    pub fn subnet_prefix(&self) -> String {
        let v = u32::from_str_radix(&self.id, 16).expect("hex id");
        format!("10.{}.{}", 200 + (v % 8), (v / 8) % 256)
    }

    /// The desired-state dir inside the repo.
    pub fn root(&self) -> PathBuf {
        self.repo.path().join("desired-state")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().expect("relative path has a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    /// Fill `{id}`, `{net}` and `{image}` placeholders, so fixtures read like real files.
    pub fn fill(&self, text: &str) -> String {
        text.replace("{id}", &self.id)
            .replace("{net}", &self.subnet_prefix())
            .replace("{image}", image::busybox())
    }

    /// The agent host `t<id>-<suffix>`; what the agent creates for it is removed on drop.
    pub fn host(&self, suffix: &str) -> String {
        let h = self.name(suffix);
        self.cleanup.borrow_mut().label(HOST_LABEL, &h);
        h
    }

    pub fn command(&self, host: &str, args: &[&str]) -> Command {
        let host = self.host(host);
        let mut c = Command::new(bin());
        c.arg("--desired-state")
            .arg(self.root())
            .arg("--host")
            .arg(host)
            .arg("--state-dir")
            .arg(self.state.path())
            .args(args);
        c.env("MACULA_GITOPS_LOG", "warn");
        c.env("MACULA_GITOPS_DATA_ROOT", self.data.path());
        c.env("MACULA_GITOPS_LISTEN", self.listen.to_string());
        // The host's agent config (its `policy:`), when the test wrote one with `agent_config`.
        if self.config_path().exists() {
            c.env("MACULA_GITOPS_CONFIG", self.config_path());
        }
        c
    }

    pub fn run(&self, host: &str, args: &[&str]) -> Output {
        self.command(host, args)
            .output()
            .expect("agent binary runs")
    }

    /// Start a long-running command (e.g. `run`); it is killed when the guard drops.
    pub fn spawn(&self, host: &str, args: &[&str]) -> KillOnDrop {
        KillOnDrop(
            self.command(host, args)
                .spawn()
                .expect("agent binary starts"),
        )
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

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read")
}
