//! One typed outcome per pass: what a reconcile pass (or a daemon run that stopped before it)
//! did, as data. The CLI (`apply` text and `--output json`), `/status`, metrics and the
//! daemon's subscribers (`Daemon::subscribe`) all read this one value; nothing re-parses a line.
//!
//! Each change keeps the human line its step rendered (`plan::Step`, `cluster::ClusterStep`,
//! forwards and DNS in `reconcile`) next to its typed subject and action, so a consumer either
//! prints `line` or reads the fields; `render.rs` is the one place an outcome becomes text.

mod render;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterStatus;
use crate::data::DataDir;
use crate::diag::{Diagnostic, Severity};
use crate::plan::Step;

/// What one pass did for one host and revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub host: String,
    /// The applied or attempted revision: a commit id (git source) or `dir:<digest>` (local
    /// directory); `None` for a one-shot `apply` outside any source.
    pub revision: Option<String>,
    pub result: PassResult,
    /// What woke the daemon (`startup`, `poll`, `webhook`, `drift`, `change`, ...); `None` for the CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The commit's subject and author (`Name <email>`), for notifications; `None` outside git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Items attempted and failed (services, images, networks, clusters, forwards, DNS backends).
    pub tried: usize,
    pub failed: usize,
    /// Every change made, in the order it was made.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// Every failed item, each naming its subject.
    #[serde(default)]
    pub errors: Vec<ItemError>,
    /// Items not attempted because this host lacks what they need (`kind` for clusters), each
    /// naming its subject and why. Not failures: the pass can still be `applied`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<ItemError>,
    /// Per selected kind cluster: nodes up, Flux Kustomizations' Ready and revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterStatus>,
    /// The stacks' data directories the desired state binds (`crate::data`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<DataDir>,
    /// The health watch of what a new revision changed (`crate::rollout`), when the daemon
    /// rolled it out in this pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::RolloutReport>,
    /// The services this pass started that the daemon now watches: the outcome is provisional,
    /// and the rollout's end publishes it again with `rollout` (and any rollback) filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<crate::rollout::WatchPlan>,
}

/// How the pass ended. `Applied`/`Failed` ran the apply; the others changed nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PassResult {
    /// Every item converged.
    #[default]
    Applied,
    /// Applied, but `failed` items did not converge (see `errors`).
    Failed,
    /// The revision's desired state is invalid: nothing was changed.
    Invalid { diagnostics: Vec<DiagnosticView> },
    /// The pass could not run (engine unreachable, state dir unwritable): nothing was changed.
    Error { message: String },
    /// The revision was fetched but is not applied now.
    Held { reason: Hold },
    /// The revision is refused before loading (unsafe tree entries, signature check).
    Refused {
        message: String,
        #[serde(default)]
        diagnostics: Vec<DiagnosticView>,
    },
    /// The source could not be read (fetch failed or timed out); the applied revision stays.
    FetchFailed { message: String },
    /// Applied, but services failed their rollout (`rollout.failed`, `errors`): they and
    /// what depends on them run revision `to`'s spec again (`crate::rollout`).
    RolledBack { to: String, services: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "kebab-case")]
pub enum Hold {
    Suspended,
    OutsideWindow { next: Option<DateTime<Utc>> },
}

impl PassResult {
    /// The word `/status.last_result` and the `reconcile_total{result}` metric use.
    pub fn label(&self) -> &'static str {
        match self {
            PassResult::Applied => "success",
            PassResult::Failed | PassResult::Error { .. } => "error",
            PassResult::Invalid { .. } => "invalid",
            PassResult::Held { .. } => "held",
            PassResult::Refused { .. } => "refused",
            PassResult::FetchFailed { .. } => "fetch-error",
            PassResult::RolledBack { .. } => "rolled-back",
        }
    }

    /// The apply ran (whether or not every item converged).
    pub fn ran(&self) -> bool {
        matches!(
            self,
            PassResult::Applied | PassResult::Failed | PassResult::RolledBack { .. }
        )
    }
}

/// One change the pass made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub subject: Subject,
    pub action: Action,
    /// The human line, as `diff` shows the step (`~ container web-1 (web/api): recreate, …`).
    pub line: String,
}

/// What a change or an error is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    pub kind: SubjectKind,
    /// The stack of a service (or of a data directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// The service name (without stack), network, volume, image reference, data path,
    /// cluster, forward, DNS zone or loopback address.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Service,
    Network,
    Volume,
    Data,
    Image,
    Cluster,
    Forward,
    Dns,
    Loopback,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Create,
    Recreate {
        reasons: Vec<String>,
    },
    /// A container docker compose ran for the service, replaced by the agent's.
    Adopt {
        from: String,
    },
    Start,
    Restart {
        reason: String,
    },
    Remove,
    Pull,
    Build,
    /// Changed in place (cluster wiring, secrets, Flux; a forward's target; DNS records).
    Update,
}

/// One item that did not converge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    /// `None` when the failure is not about one item (e.g. clusters could not be reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// What failed and why; names the subject itself, so it reads alone.
    pub message: String,
}

/// A `Diagnostic` as it travels over the API and in outcomes (the core type is serialise-only).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DiagnosticView {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
    #[serde(default)]
    pub severity: Severity,
}

impl From<&Diagnostic> for DiagnosticView {
    fn from(d: &Diagnostic) -> Self {
        Self {
            file: d.file.clone(),
            line: d.line,
            path: d.path.clone(),
            message: d.message.clone(),
            severity: d.severity,
        }
    }
}

impl Subject {
    pub fn new(kind: SubjectKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            stack: None,
            name: name.into(),
        }
    }

    /// A service from its `stack/service` key.
    pub fn service(key: &str) -> Self {
        match key.split_once('/') {
            Some((stack, name)) => Self {
                kind: SubjectKind::Service,
                stack: Some(stack.into()),
                name: name.into(),
            },
            None => Self::new(SubjectKind::Service, key),
        }
    }

    /// What a plan step acts on; `None` for `Blocked` (its subject is free text).
    pub fn of_step(step: &Step) -> Option<Self> {
        use SubjectKind as K;
        Some(match step {
            Step::CreateNetwork { network } | Step::RemoveNetwork { network } => {
                Self::new(K::Network, network)
            }
            Step::CreateVolume { volume } | Step::RemoveVolume { volume } => {
                Self::new(K::Volume, volume)
            }
            Step::CreateData { data, .. } => match data.split_once('/') {
                Some((stack, path)) => Self {
                    kind: K::Data,
                    stack: Some(stack.into()),
                    name: path.into(),
                },
                None => Self::new(K::Data, data),
            },
            Step::PullImage { image } | Step::BuildImage { image, .. } => {
                Self::new(K::Image, image)
            }
            Step::CreateContainer { service, .. }
            | Step::RecreateContainer { service, .. }
            | Step::AdoptContainer { service, .. }
            | Step::StartContainer { service, .. }
            | Step::RestartContainer { service, .. }
            | Step::RemoveContainer { service, .. } => Self::service(service),
            Step::Blocked { .. } => return None,
        })
    }
}

impl Change {
    /// The change a plan step made; `None` for `Blocked` (never a change).
    pub fn of_step(step: &Step) -> Option<Self> {
        let action = match step {
            Step::CreateNetwork { .. }
            | Step::CreateVolume { .. }
            | Step::CreateData { .. }
            | Step::CreateContainer { .. } => Action::Create,
            Step::PullImage { .. } => Action::Pull,
            Step::BuildImage { .. } => Action::Build,
            Step::RecreateContainer { reasons, .. } => Action::Recreate {
                reasons: reasons.clone(),
            },
            Step::AdoptContainer { from, .. } => Action::Adopt { from: from.clone() },
            Step::StartContainer { .. } => Action::Start,
            Step::RestartContainer { reason, .. } => Action::Restart {
                reason: reason.clone(),
            },
            Step::RemoveContainer { .. }
            | Step::RemoveNetwork { .. }
            | Step::RemoveVolume { .. } => Action::Remove,
            Step::Blocked { .. } => return None,
        };
        Some(Self {
            subject: Subject::of_step(step)?,
            action,
            line: step.to_string(),
        })
    }

    /// A cluster step that ran.
    pub fn of_cluster_step(step: &crate::cluster::ClusterStep) -> Self {
        use crate::cluster::ClusterStep as C;
        let action = match step {
            C::Create { .. } => Action::Create,
            C::Recreate { reasons, .. } => Action::Recreate {
                reasons: reasons.clone(),
            },
            C::Delete { .. } => Action::Remove,
            _ => Action::Update,
        };
        Self {
            subject: Subject::new(SubjectKind::Cluster, step.cluster()),
            action,
            line: step.to_string(),
        }
    }
}

impl ItemError {
    pub fn new(subject: Option<Subject>, message: impl Into<String>) -> Self {
        Self {
            subject,
            message: message.into(),
        }
    }
}

impl Outcome {
    /// A pass that stopped before applying (invalid, refused, held, fetch failed, error).
    pub fn stopped(host: impl Into<String>, revision: Option<String>, result: PassResult) -> Self {
        Self {
            host: host.into(),
            revision,
            result,
            finished_at: Some(Utc::now()),
            ..Default::default()
        }
    }

    /// Items changed.
    pub fn changed(&self) -> usize {
        self.changes.len()
    }

    /// Every item converged (and the apply ran).
    pub fn ok(&self) -> bool {
        self.result == PassResult::Applied
    }

    /// Set `result` from the counts once every item has run.
    pub fn settle(mut self) -> Self {
        self.result = if self.failed == 0 {
            PassResult::Applied
        } else {
            PassResult::Failed
        };
        self.finished_at = Some(Utc::now());
        self
    }

    /// Fold another part of the pass (clusters, routing) into this one.
    pub fn absorb(
        &mut self,
        tried: usize,
        failed: usize,
        changes: Vec<Change>,
        errors: Vec<ItemError>,
    ) {
        self.tried += tried;
        self.failed += failed;
        self.changes.extend(changes);
        self.errors.extend(errors);
    }

    /// The errors joined for one status line (`/status.last_error`).
    pub fn error_summary(&self) -> Option<String> {
        match &self.result {
            PassResult::Applied => None,
            PassResult::Failed => Some(
                self.errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            PassResult::Invalid { diagnostics } => Some(format!(
                "revision {} is invalid ({} problems)",
                self.revision.as_deref().unwrap_or("-"),
                diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Error)
                    .count()
            )),
            PassResult::Error { message }
            | PassResult::Refused { message, .. }
            | PassResult::FetchFailed { message } => Some(message.clone()),
            PassResult::Held { reason } => Some(reason.to_string()),
            PassResult::RolledBack { to, services } => Some(format!(
                "rolled back {} to {}: {}",
                services.join(", "),
                to.chars().take(12).collect::<String>(),
                self.errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }
}

#[cfg(test)]
mod tests;
