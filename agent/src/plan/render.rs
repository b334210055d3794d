//! How `diff` shows a plan to a person: `+` create, `~` change (with the reason), `-` remove,
//! `!` blocked.

use std::fmt;

use super::{Plan, Step};

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateNetwork { network } => write!(f, "+ network {network}"),
            Step::CreateVolume { volume } => write!(f, "+ volume {volume}"),
            Step::CreateData { data, dir, seeded } => write!(
                f,
                "+ data {data} at {} ({})",
                dir.display(),
                if *seeded {
                    "seeded once from the repo"
                } else {
                    "empty"
                }
            ),
            Step::PullImage { image } => write!(f, "+ image {image} (pull)"),
            Step::BuildImage { service, image } => {
                write!(f, "+ image {image} (build for {service})")
            }
            Step::CreateContainer { service, container } => {
                write!(f, "+ container {container} ({service})")
            }
            Step::RecreateContainer {
                service,
                container,
                reasons,
                ..
            } => {
                write!(
                    f,
                    "~ container {container} ({service}): recreate, {}",
                    reasons.join(", ")
                )
            }
            Step::AdoptContainer {
                service,
                container,
                from,
                ids,
            } => write!(
                f,
                "~ adopt {from} ({service}): run by docker compose; replaced by {container} with its volumes{}",
                if ids.len() > 1 {
                    format!(" ({} compose containers)", ids.len())
                } else {
                    String::new()
                }
            ),
            Step::StartContainer {
                service, container, ..
            } => write!(f, "~ container {container} ({service}): start, not running"),
            Step::RestartContainer {
                service,
                container,
                reason,
                ..
            } => write!(f, "~ container {container} ({service}): restart, {reason}"),
            Step::RemoveContainer {
                service,
                container,
                reason,
                ..
            } => write!(f, "- container {container} ({service}): {reason}"),
            Step::RemoveNetwork { network } => write!(f, "- network {network}"),
            Step::RemoveVolume { volume } => write!(f, "- volume {volume}"),
            Step::Blocked { subject, reason } => write!(f, "! {subject}: {reason}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return writeln!(f, "no changes: the host matches the desired state");
        }
        for s in &self.steps {
            writeln!(f, "{s}")?;
        }
        Ok(())
    }
}
