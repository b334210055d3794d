//! The `notifications:` and `commit_status:` sections of the agent config, as written, and
//! their resolution into [`Settings`]. Secrets — webhook URLs that carry a token, HMAC keys,
//! API tokens — are named by `*_file` / `*_env`, never written inline, and read once at start.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::commit_status::{repo, CommitStatus, Provider};
use super::deliver::Retry;
use super::event::EventKind;
use super::sink::{Format, Sink};
use super::template::Template;
use super::NotifyError;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Re-send an unchanged problem after this long (humantime; default `6h`; `0s` = never).
    pub reminder: Option<String>,
    /// Requests waiting per target before new ones are dropped (default 64).
    pub queue: Option<usize>,
    /// Deadline of one HTTP call (default `10s`).
    pub timeout: Option<String>,
    /// Tries per delivery, with doubling pauses from 2s up to 60s (default 5).
    pub attempts: Option<u32>,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Json,
    Ntfy,
    Slack,
    Discord,
    Mattermost,
    Matrix,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Shown in status and metrics (default: the type, numbered when repeated).
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// Inline URL: only for `json`, `ntfy` and `matrix` (the homeserver), where the URL is no
    /// secret. Slack/Discord/Mattermost webhook URLs are their token: `url_file`/`url_env`.
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
    pub url_env: Option<String>,
    /// `json`: the HMAC-SHA256 key signing the body.
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    /// `ntfy` (access token, optional) and `matrix` (access token, required).
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// `matrix`: the room id (`!abc:example.org`).
    pub room: Option<String>,
    /// Which events this sink gets (default: all but `applying`).
    pub events: Option<Vec<EventKind>>,
    /// Message text (see `template.rs` for the placeholders).
    pub template: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommitStatusConfig {
    /// github | gitea | forgejo | gitlab
    pub provider: Provider,
    /// API root (default from `source.url`: `https://api.github.com`, `https://<host>/api/v1`,
    /// `https://<host>/api/v4`).
    pub api_url: Option<String>,
    /// `owner/repo` (GitLab: project path or id); default from `source.url`.
    pub repository: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// The status's name on the commit (default: the host name).
    pub context: Option<String>,
    /// Link shown with the status (e.g. this host's dashboard).
    pub target_url: Option<String>,
}

/// Everything the notifier needs, secrets read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sinks: Vec<Sink>,
    pub commit_status: Option<CommitStatus>,
    /// Targets configured but not started, each with why: told once as the daemon starts.
    pub skipped: Vec<String>,
    pub reminder: Option<Duration>,
    pub queue: usize,
    pub timeout: Duration,
    pub retry: Retry,
    /// Where de-duplication remembers what was sent (the daemon: `<state>/notify-sent.json`).
    pub history: Option<PathBuf>,
}

impl Settings {
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty() && self.commit_status.is_none()
    }
}

/// How secrets are obtained: read for real, or (for `validate`-time checks) only required to
/// be named.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Read,
    NamedOnly,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> NotifyError {
    NotifyError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn duration(field: &str, v: &Option<String>, default: Duration) -> Result<Duration, NotifyError> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s).map_err(|e| invalid(field, e.to_string())),
    }
}

fn secret(
    mode: Secrets,
    field: &str,
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<Option<String>, NotifyError> {
    if file.is_some() && env.is_some() {
        return Err(invalid(
            field,
            "set either the _file or the _env key, not both",
        ));
    }
    if mode == Secrets::NamedOnly {
        return Ok((file.is_some() || env.is_some()).then(String::new));
    }
    crate::config::read_secret(field, file.as_deref(), env.as_deref()).map_err(|e| {
        NotifyError::Secret {
            field: field.into(),
            message: e.to_string(),
        }
    })
}

/// An inline URL must be http(s) and carry no credentials (those belong in a file or variable).
fn check_url(field: &str, url: &str) -> Result<(), NotifyError> {
    let u = reqwest::Url::parse(url).map_err(|e| invalid(field, format!("not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(invalid(field, "must be an http:// or https:// URL"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(invalid(
            field,
            "credentials in an inline URL would be shown; use url_file or url_env",
        ));
    }
    Ok(())
}

/// Why `commit_status:` does nothing under a local directory source.
pub const COMMIT_STATUS_SKIPPED: &str = "commit_status: skipped: the source is a local directory; its revisions (dir:<digest>) are no commits a git host could mark";

/// `source_url` is the git source's URL, `None` for a local directory.
pub fn resolve(
    n: &NotificationsConfig,
    cs: Option<&CommitStatusConfig>,
    host: &str,
    source_url: Option<&str>,
    mode: Secrets,
) -> Result<Settings, NotifyError> {
    let reminder = duration(
        "notifications.reminder",
        &n.reminder,
        Duration::from_secs(6 * 3600),
    )?;
    let timeout = duration("notifications.timeout", &n.timeout, Duration::from_secs(10))?;
    if timeout.is_zero() {
        return Err(invalid("notifications.timeout", "must be more than 0s"));
    }
    let mut sinks = Vec::new();
    for (i, s) in n.sinks.iter().enumerate() {
        let sink = resolve_sink(&format!("notifications.sinks[{i}]"), s, mode)?;
        let sink = Sink {
            name: s.name.clone().unwrap_or_else(|| {
                let same = n.sinks[..i].iter().filter(|o| o.kind == s.kind).count();
                match same {
                    0 => sink.format.kind().to_string(),
                    k => format!("{}-{}", sink.format.kind(), k + 1),
                }
            }),
            ..sink
        };
        if sinks.iter().any(|o: &Sink| o.name == sink.name) {
            return Err(invalid(
                format!("notifications.sinks[{i}].name"),
                format!("{:?} is used by another sink", sink.name),
            ));
        }
        sinks.push(sink);
    }
    let (commit_status, skipped) = match (cs, source_url) {
        (Some(c), Some(url)) => (Some(resolve_commit_status(c, host, url, mode)?), Vec::new()),
        // A local directory's revisions are `dir:<digest>`: no commit a forge could mark.
        (Some(_), None) => (None, vec![COMMIT_STATUS_SKIPPED.to_string()]),
        (None, _) => (None, Vec::new()),
    };
    Ok(Settings {
        sinks,
        commit_status,
        skipped,
        reminder: (!reminder.is_zero()).then_some(reminder),
        queue: n.queue.unwrap_or(64).max(1),
        timeout,
        retry: Retry {
            attempts: n.attempts.unwrap_or(5).max(1),
            ..Retry::default()
        },
        history: None,
    })
}

fn resolve_sink(at: &str, s: &SinkConfig, mode: Secrets) -> Result<Sink, NotifyError> {
    let f = |k: &str| format!("{at}.{k}");
    let named_url = secret(mode, &f("url"), &s.url_file, &s.url_env)?;
    let url = match (&s.url, named_url) {
        (Some(_), Some(_)) => {
            return Err(invalid(f("url"), "set url, url_file or url_env, not two"))
        }
        (Some(u), None) => {
            if matches!(
                s.kind,
                SinkKind::Slack | SinkKind::Discord | SinkKind::Mattermost
            ) {
                return Err(invalid(
                    f("url"),
                    "this webhook URL is its secret: give it in url_file or url_env",
                ));
            }
            check_url(&f("url"), u)?;
            u.clone()
        }
        (None, Some(u)) => u,
        (None, None) => return Err(invalid(f("url"), "required (url, url_file or url_env)")),
    };
    let token = secret(mode, &f("token"), &s.token_file, &s.token_env)?;
    let key = secret(mode, &f("secret"), &s.secret_file, &s.secret_env)?;
    let unused = |k: &str, set: bool| match set {
        true => Err(invalid(f(k), format!("not used by a {:?} sink", s.kind))),
        false => Ok(()),
    };
    if s.kind != SinkKind::Json {
        unused("secret_file", key.is_some())?;
    }
    if !matches!(s.kind, SinkKind::Ntfy | SinkKind::Matrix) {
        unused("token_file", token.is_some())?;
    }
    if s.kind != SinkKind::Matrix {
        unused("room", s.room.is_some())?;
    }
    let format = match s.kind {
        SinkKind::Json => Format::Json {
            key: key.map(String::into_bytes),
        },
        SinkKind::Ntfy => Format::Ntfy { token },
        SinkKind::Slack => Format::Slack,
        SinkKind::Discord => Format::Discord,
        SinkKind::Mattermost => Format::Mattermost,
        SinkKind::Matrix => Format::Matrix {
            room: s
                .room
                .clone()
                .ok_or_else(|| invalid(f("room"), "required for matrix (`!id:server`)"))?,
            token: token.ok_or_else(|| {
                invalid(
                    f("token_file"),
                    "required for matrix (token_file or token_env)",
                )
            })?,
        },
    };
    let template = match &s.template {
        Some(t) => Template::parse(t).map_err(|m| invalid(f("template"), m))?,
        None => Template::default(),
    };
    let events: BTreeSet<EventKind> = match &s.events {
        Some(list) => list.iter().copied().collect(),
        None => EventKind::ALL
            .into_iter()
            .filter(|k| *k != EventKind::Applying)
            .collect(),
    };
    Ok(Sink {
        name: String::new(),
        format,
        url,
        events,
        template,
    })
}

fn resolve_commit_status(
    c: &CommitStatusConfig,
    host: &str,
    source_url: &str,
    mode: Secrets,
) -> Result<CommitStatus, NotifyError> {
    let token =
        secret(mode, "commit_status.token", &c.token_file, &c.token_env)?.ok_or_else(|| {
            invalid(
                "commit_status.token_file",
                "required (token_file or token_env)",
            )
        })?;
    let remote = repo::parse_remote(source_url);
    let repository = match (&c.repository, &remote) {
        (Some(r), _) => r.trim_matches('/').to_string(),
        (None, Some((_, path))) if c.provider == Provider::Gitlab => path.clone(),
        (None, Some((_, path))) => {
            // github/gitea: the last two segments (a forge served under a sub-path keeps
            // its prefix in the API URL, not the repository).
            let mut parts: Vec<&str> = path.rsplitn(3, '/').take(2).collect();
            parts.reverse();
            if parts.len() != 2 {
                return Err(invalid(
                    "commit_status.repository",
                    format!("cannot tell owner/repo from the source URL path {path:?}; set it"),
                ));
            }
            parts.join("/")
        }
        (None, None) => {
            return Err(invalid(
                "commit_status.repository",
                "required: the source URL does not name a forge repository",
            ))
        }
    };
    let api = match &c.api_url {
        Some(a) => {
            check_url("commit_status.api_url", a)?;
            a.trim_end_matches('/').to_string()
        }
        None => {
            let origin = repo::web_origin(source_url).ok_or_else(|| {
                invalid(
                    "commit_status.api_url",
                    "required: the source URL does not name a forge",
                )
            })?;
            c.provider.default_api(&origin)
        }
    };
    if let Some(t) = &c.target_url {
        check_url("commit_status.target_url", t)?;
    }
    Ok(CommitStatus {
        provider: c.provider,
        api,
        repository,
        token,
        context: c.context.clone().unwrap_or_else(|| host.to_string()),
        target_url: c.target_url.clone(),
    })
}

/// The agent config's sections resolved, secrets read: what the daemon starts the notifier with.
pub fn settings(cfg: &crate::config::AgentConfig) -> Result<Settings, NotifyError> {
    from_agent(cfg, Secrets::Read)
}

/// `AgentConfig::check`: every key checked, secrets only required to be named (the files may
/// exist only on the host that runs the daemon).
pub fn check(cfg: &crate::config::AgentConfig) -> Result<(), NotifyError> {
    from_agent(cfg, Secrets::NamedOnly).map(|_| ())
}

fn from_agent(cfg: &crate::config::AgentConfig, mode: Secrets) -> Result<Settings, NotifyError> {
    resolve(
        &cfg.notifications,
        cfg.commit_status.as_ref(),
        &cfg.host(),
        cfg.source.as_ref().map(|s| s.url.as_str()),
        mode,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_status() -> CommitStatusConfig {
        CommitStatusConfig {
            provider: Provider::Github,
            api_url: None,
            repository: None,
            token_file: None,
            token_env: Some("MACULA_TEST_UNSET_STATUS_TOKEN".into()),
            context: None,
            target_url: None,
        }
    }

    #[test]
    fn a_local_directory_source_skips_the_commit_status_with_one_reason() {
        let n = NotificationsConfig::default();
        let cs = commit_status();
        // Neither the repository nor the token is needed for what is never called.
        for mode in [Secrets::Read, Secrets::NamedOnly] {
            let s = resolve(&n, Some(&cs), "lab-01", None, mode).expect("not a config error");
            assert!(s.commit_status.is_none());
            assert_eq!(s.skipped, vec![COMMIT_STATUS_SKIPPED.to_string()]);
            assert!(s.is_empty(), "no target left to start");
        }
        let git = resolve(
            &n,
            Some(&cs),
            "lab-01",
            Some("https://github.com/acme/lab.git"),
            Secrets::NamedOnly,
        )
        .expect("resolves");
        let target = git.commit_status.expect("a git source keeps its status");
        assert_eq!(
            (target.api.as_str(), target.repository.as_str()),
            ("https://api.github.com", "acme/lab")
        );
        assert!(git.skipped.is_empty());
        let none = resolve(&n, None, "lab-01", None, Secrets::Read).expect("resolves");
        assert!(
            none.skipped.is_empty(),
            "nothing configured, nothing to tell"
        );
    }
}
