//! Commit status on the git host: the people who pushed see on the commit whether this host
//! applied it. One status per host (`context`, default the host name), set by the documented
//! API of each forge:
//!
//! | provider | request | states |
//! |---|---|---|
//! | GitHub | `POST {api}/repos/{owner}/{repo}/statuses/{sha}` (`Authorization: Bearer`) | pending, success, failure |
//! | Gitea / Forgejo | `POST {api}/repos/{owner}/{repo}/statuses/{sha}` (`Authorization: token`) | pending, success, failure |
//! | GitLab | `POST {api}/projects/{url-encoded path}/statuses/{sha}` (`PRIVATE-TOKEN`) | pending, running, success, failed |
//!
//! `{api}` is the API root: `https://api.github.com`, `https://<host>/api/v1`,
//! `https://<host>/api/v4` by default (from the source URL), settable for self-hosted forges.

pub mod repo;

use serde::{Deserialize, Serialize};

use super::event::{clip, Event, EventKind};
use super::request::{segment, HttpRequest, Method};

/// GitHub refuses a longer description (422).
const MAX_DESCRIPTION: usize = 140;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    /// Gitea and Forgejo (Forgejo keeps Gitea's API).
    #[serde(alias = "forgejo")]
    Gitea,
    Gitlab,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitea => "gitea",
            Self::Gitlab => "gitlab",
        }
    }

    /// The API root for a repository served from `origin` (`https://host`).
    pub fn default_api(self, origin: &str) -> String {
        match self {
            Self::Github if origin == "https://github.com" => "https://api.github.com".into(),
            // GitHub Enterprise Server
            Self::Github => format!("{origin}/api/v3"),
            Self::Gitea => format!("{origin}/api/v1"),
            Self::Gitlab => format!("{origin}/api/v4"),
        }
    }
}

/// The commit-status target, token read. `Debug` shows no token.
#[derive(Clone)]
pub struct CommitStatus {
    pub provider: Provider,
    /// API root without a trailing slash.
    pub api: String,
    /// `owner/repo`; for GitLab the project path (`group/sub/project`) or numeric id.
    pub repository: String,
    pub token: String,
    /// The status's name on the commit: one per host.
    pub context: String,
    pub target_url: Option<String>,
}

impl std::fmt::Debug for CommitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitStatus")
            .field("provider", &self.provider)
            .field("api", &super::request::shown_url(&self.api))
            .field("repository", &self.repository)
            .field("context", &self.context)
            .finish()
    }
}

/// GitHub's and Gitea's `CreateStatusOption`, in their documented order.
#[derive(Serialize)]
struct RepoStatus<'a> {
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_url: Option<&'a str>,
    description: String,
    context: &'a str,
}

/// GitLab's `POST /projects/:id/statuses/:sha` parameters (`name` is the context).
#[derive(Serialize)]
struct ProjectStatus<'a> {
    state: &'static str,
    name: &'a str,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_url: Option<&'a str>,
}

impl CommitStatus {
    pub fn name(&self) -> String {
        format!("commit-status/{}", self.provider.as_str())
    }

    /// The state an event sets, in the provider's words, and its description; `None` for
    /// events that say nothing about a revision (drift repairs).
    pub fn state(&self, e: &Event) -> Option<(&'static str, String)> {
        // A local directory's revision (`dir:<digest>`) is no commit a forge knows.
        let hex = e.revision.chars().all(|c| c.is_ascii_hexdigit());
        if !hex || !matches!(e.revision.len(), 40 | 64) {
            return None;
        }
        let lab = self.provider == Provider::Gitlab;
        let host = &e.host;
        let first_error = e
            .errors
            .first()
            .map(|x| format!(": {x}"))
            .unwrap_or_default();
        let (state, text) = match e.kind {
            EventKind::Applying if lab => ("running", format!("applying on {host}")),
            EventKind::Applying => ("pending", format!("applying on {host}")),
            EventKind::Held => ("pending", format!("held on {host}{first_error}")),
            EventKind::Applied => ("success", format!("applied on {host}")),
            EventKind::Failed => ("failure", format!("failed on {host}{first_error}")),
            EventKind::RolledBack => ("failure", format!("rolled back on {host}{first_error}")),
            EventKind::Invalid => (
                "failure",
                format!("invalid desired state ({} problems)", e.errors.len()),
            ),
            EventKind::Refused => ("failure", format!("refused on {host}{first_error}")),
            EventKind::DriftRepaired => return None,
        };
        let state = if lab && state == "failure" {
            "failed"
        } else {
            state
        };
        Some((state, clip(&text, MAX_DESCRIPTION - 1)))
    }

    /// The provider's documented request for `e`, or `None` when `e` sets no state.
    pub fn request(&self, e: &Event) -> Option<HttpRequest> {
        let (state, description) = self.state(e)?;
        let agent = concat!("macula-gitops/", env!("CARGO_PKG_VERSION"));
        let sha = &e.revision;
        let target_url = self.target_url.as_deref();
        let req = match self.provider {
            Provider::Github | Provider::Gitea => {
                let body = RepoStatus {
                    state,
                    target_url,
                    description,
                    context: &self.context,
                };
                let url = format!("{}/repos/{}/statuses/{sha}", self.api, self.repository);
                let r = HttpRequest::json(Method::Post, url, &body);
                match self.provider {
                    Provider::Github => r
                        .header("accept", "application/vnd.github+json")
                        .header("authorization", format!("Bearer {}", self.token))
                        .header("x-github-api-version", "2022-11-28"),
                    _ => r
                        .header("accept", "application/json")
                        .header("authorization", format!("token {}", self.token)),
                }
            }
            Provider::Gitlab => {
                let body = ProjectStatus {
                    state,
                    name: &self.context,
                    description,
                    target_url,
                };
                let url = format!(
                    "{}/projects/{}/statuses/{sha}",
                    self.api,
                    segment(&self.repository)
                );
                HttpRequest::json(Method::Post, url, &body)
                    .header("private-token", self.token.clone())
            }
        };
        Some(req.header("user-agent", agent))
    }

    /// De-duplication key: a status is set again only when its state or text changes.
    pub fn fingerprint(&self, e: &Event) -> Option<String> {
        self.state(e)
            .map(|(s, d)| format!("{}/{s}/{d}", e.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_commits_get_a_status() {
        let cs = CommitStatus {
            provider: Provider::Gitlab,
            api: "https://gitlab.example/api/v4".into(),
            repository: "g/p".into(),
            token: "t".into(),
            context: "lab-01".into(),
            target_url: None,
        };
        let e = |rev: &str, kind| Event::new(kind, "lab-01", rev);
        let sha = "a".repeat(40);
        assert_eq!(
            cs.state(&e(&sha, EventKind::Invalid)).map(|s| s.0),
            Some("failed")
        );
        assert!(cs.state(&e(&sha, EventKind::DriftRepaired)).is_none());
        assert!(cs.state(&e("dir:0123abcd", EventKind::Applied)).is_none());
        assert!(cs.request(&e("abc", EventKind::Applied)).is_none());
    }
}
