//! A small real reconciler for daemon tests: runs one busybox container per test from
//! `desired-state/app.env` (`MESSAGE=...`), recreating it when the message changes. It stands in
//! for the Docker reconcile core so the daemon's behaviour shows up as real containers.

use std::process::Command;

use macula_gitops::daemon::{ApplyRequest, Reconciler};
use macula_gitops::diag::Diagnostic;
use macula_gitops::engine::EngineError;
use macula_gitops::outcome::{Action, Change, Outcome, Subject};
use macula_gitops::reconcile::ReconcileError;

use super::docker::Cleanup;
use super::image;

/// Label on the reconciler's container; its value is the reconciler's id.
const ID_LABEL: &str = "macula.test/id";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs")
}

pub struct BusyboxReconciler {
    pub id: String,
}

impl BusyboxReconciler {
    /// The reconciler and the guard that removes its container.
    pub fn new(id: &str) -> (Self, Cleanup) {
        image::busybox(); // built before the daemon's first pass, not inside it
        let mut cleanup = Cleanup::default();
        cleanup.label(ID_LABEL, id);
        (Self { id: id.into() }, cleanup)
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
    async fn reconcile(&self, req: &ApplyRequest) -> Result<Outcome, ReconcileError> {
        // Validate before touching the host, as the core does.
        let msg =
            parse(&req.options.desired_root.join("app.env")).map_err(ReconcileError::Invalid)?;
        let rev = req.options.revision.clone().unwrap_or_default();
        let name = self.container();
        let id = self.id.clone();
        tokio::task::spawn_blocking(move || {
            if let Some((m, _, true, _)) = inspect(&name) {
                if m == msg {
                    return Ok(Outcome {
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
                &format!("{ID_LABEL}={id}"),
                "--label",
                &format!("macula.test/message={msg}"),
                "--label",
                &format!("macula.test/revision={rev}"),
                "-e",
                &format!("MESSAGE={msg}"),
                image::busybox(),
                "sleep",
                "3600",
            ]);
            if !out.status.success() {
                return Err(ReconcileError::Engine(EngineError::Container {
                    container: name.clone(),
                    message: String::from_utf8_lossy(&out.stderr).into(),
                }));
            }
            Ok(Outcome {
                revision: Some(rev),
                tried: 1,
                changes: vec![Change {
                    subject: Subject::service(&format!("test/{name}")),
                    action: Action::Create,
                    line: format!("+ container {name} (test/{name})"),
                }],
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

    /// The test container's engine state (`running`, `exited`, ...), as the core lists them.
    async fn services(&self, _host: &str) -> Vec<macula_gitops::server::status::ServiceState> {
        let name = self.container();
        let out = docker(&["inspect", "-f", "{{.State.Status}}", &name]);
        if !out.status.success() {
            return Vec::new();
        }
        vec![macula_gitops::server::status::ServiceState {
            name: format!("test/{name}"),
            state: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            ..Default::default()
        }]
    }
}
