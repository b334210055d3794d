//! A small real reconciler for daemon tests: runs one busybox container per test from
//! `desired-state/app.env` (`MESSAGE=...`), recreating it when the message changes. It stands in
//! for the Docker reconcile core so the daemon's behaviour shows up as real containers.
#![allow(dead_code)]

use std::process::Command;

use macula_gitops::daemon::{ApplyRequest, Reconciler};
use macula_gitops::diag::Diagnostic;
use macula_gitops::engine::EngineError;
use macula_gitops::reconcile::{ReconcileError, Report};

pub const IMAGE: &str = "macula-src-test-busybox:1";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs")
}

/// Build the test image from Debian's static busybox if it is not there yet.
pub fn ensure_image() {
    if docker(&["image", "inspect", IMAGE]).status.success() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy("/bin/busybox", dir.path().join("busybox")).expect("busybox-static present");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .expect("write");
    let out = docker(&[
        "build",
        "-q",
        "-t",
        IMAGE,
        dir.path().to_str().expect("utf8"),
    ]);
    assert!(
        out.status.success() || docker(&["image", "inspect", IMAGE]).status.success(),
        "image build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct BusyboxReconciler {
    pub id: String,
}

/// Removes the test's containers even when the test fails.
pub struct ContainerGuard {
    pub id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let out = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=macula.test/id={}", self.id),
        ]);
        for c in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", c]);
        }
    }
}

impl BusyboxReconciler {
    pub fn new(id: &str) -> (Self, ContainerGuard) {
        ensure_image();
        (Self { id: id.into() }, ContainerGuard { id: id.into() })
    }

    pub fn container(&self) -> String {
        format!("mgsrc-{}-app", self.id)
    }
}

/// (message label, revision label, running, container id) of the test container, if it exists.
pub fn inspect(name: &str) -> Option<(String, String, bool, String)> {
    let out = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"macula.test/message\"}}|{{index .Config.Labels \"macula.test/revision\"}}|{{.State.Running}}|{{.Id}}",
        name,
    ]);
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let p: Vec<&str> = s.split('|').collect();
    Some((p[0].into(), p[1].into(), p[2] == "true", p[3].into()))
}

fn parse(file: &std::path::Path) -> Result<String, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![Diagnostic::error(file, None, "", e.to_string())])?;
    let mut problems = Vec::new();
    let mut message = None;
    for (i, line) in text.lines().enumerate() {
        match line.split_once('=') {
            Some(("MESSAGE", v)) => message = Some(v.to_string()),
            Some(_) => {}
            None if line.trim().is_empty() => {}
            None => problems.push(Diagnostic::error(
                "desired-state/app.env",
                Some(i + 1),
                "",
                format!("not KEY=VALUE: {line:?}"),
            )),
        }
    }
    match (message, problems.is_empty()) {
        (Some(m), true) => Ok(m),
        (None, true) => Err(vec![Diagnostic::error(
            "desired-state/app.env",
            None,
            "MESSAGE",
            "MESSAGE is required",
        )]),
        _ => Err(problems),
    }
}

impl Reconciler for BusyboxReconciler {
    async fn reconcile(&self, req: &ApplyRequest) -> Result<Report, ReconcileError> {
        // Validate before touching the host, as the core does.
        let msg =
            parse(&req.options.desired_root.join("app.env")).map_err(ReconcileError::Invalid)?;
        let rev = req.options.revision.clone().unwrap_or_default();
        let name = self.container();
        let id = self.id.clone();
        tokio::task::spawn_blocking(move || {
            if let Some((m, _, true, _)) = inspect(&name) {
                if m == msg {
                    return Ok(Report {
                        revision: Some(rev),
                        tried: 1,
                        ..Default::default()
                    });
                }
            }
            let _ = docker(&["rm", "-f", &name]);
            let out = docker(&[
                "run",
                "-d",
                "--name",
                &name,
                "--label",
                &format!("macula.test/id={id}"),
                "--label",
                &format!("macula.test/message={msg}"),
                "--label",
                &format!("macula.test/revision={rev}"),
                "-e",
                &format!("MESSAGE={msg}"),
                IMAGE,
                "sleep",
                "3600",
            ]);
            if !out.status.success() {
                return Err(ReconcileError::Engine(EngineError::Container {
                    container: name.clone(),
                    message: String::from_utf8_lossy(&out.stderr).into(),
                }));
            }
            Ok(Report {
                revision: Some(rev),
                tried: 1,
                changed: 1,
                ..Default::default()
            })
        })
        .await
        .map_err(|e| {
            ReconcileError::Engine(EngineError::Container {
                container: self.container(),
                message: e.to_string(),
            })
        })?
    }
}
