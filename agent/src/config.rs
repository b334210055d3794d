//! The agent's own configuration file (`--config`, YAML): where the desired state comes from,
//! when it may be applied, and where the agent listens.
//!
//! Default location: `/etc/macula-gitops/agent.yaml` as root, `$XDG_CONFIG_HOME/macula-gitops/agent.yaml`
//! (or `~/.config/...`) otherwise.
//!
//! Settings are layered here and nowhere else: flags > environment (`MACULA_GITOPS_*`, read by clap
//! into the same [`Overrides`]) > this file > defaults. [`AgentConfig::resolve`] gives the layered
//! config every command and the daemon read; `reconcile::ReconcileOptions::from_config` derives the
//! core's options from it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::input;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every problem of the file, each with its line (read through `input/`).
    #[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Parse {
        path: PathBuf,
        problems: Vec<crate::diag::Diagnostic>,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("secret {what}: {message}")]
    Secret { what: String, message: String },
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Host name used to select the slice of the repo (`hosts.yaml`); default: the machine's hostname.
    pub host: Option<String>,
    pub state_dir: Option<PathBuf>,
    /// Listener for webhooks and the local API.
    pub listen: Option<SocketAddr>,
    pub source: Option<SourceConfig>,
    #[serde(default)]
    pub webhook: WebhookConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    /// Privileges this host grants to services (`crate::policy`); default: none.
    #[serde(default)]
    pub policy: crate::policy::PolicyConfig,
    /// Where read-write relative binds keep their data (`crate::data`).
    pub data_root: Option<PathBuf>,
    /// Chat and webhook notifications (`crate::notify`).
    #[serde(default)]
    pub notifications: crate::notify::NotificationsConfig,
    /// Commit status on the git host (`crate::notify::commit_status`).
    pub commit_status: Option<crate::notify::CommitStatusConfig>,
    /// The local directory source: a `desired-state/` directory on this machine, watched for
    /// edits. Used when no git `source:` is set.
    pub desired_state: Option<PathBuf>,
    /// Full reconcile (local directory) or poll (git) interval, humantime; `0s` disables it.
    /// Default `source.interval`, else 1m.
    pub interval: Option<String>,
    /// Health-gated rollouts and rollback (`crate::rollout`).
    #[serde(default)]
    pub rollout: RolloutConfig,
    /// The file this config was read from: named in policy refusals.
    #[serde(skip)]
    pub loaded_from: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// https, ssh (`ssh://` or scp-like), `file://`, or a local path.
    pub url: String,
    /// Branch, tag, or full commit id. Default: the remote's HEAD branch (`HEAD`).
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
    /// Directory inside the repo that holds `desired-state/` (default: repo root).
    #[serde(default)]
    pub path: Option<String>,
    /// Poll interval, humantime (`1m`, `30s`); `0s` disables polling.
    #[serde(default)]
    pub interval: Option<String>,
    /// Shallow fetch depth.
    #[serde(default)]
    pub depth: Option<u32>,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Only apply revisions signed by one of these keys.
    #[serde(default)]
    pub verify: Option<VerifyConfig>,
    /// Deadlines of a fetch, so a slow or silent git server never stalls the agent.
    #[serde(default)]
    pub timeouts: FetchTimeoutsConfig,
}

/// `source.timeouts` (humantime): `connect` (TCP/TLS connect, default 10s), `idle` (no byte
/// received, default 30s), `total` (the whole fetch, default 5m: a server trickling a byte now
/// and then never trips `idle`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FetchTimeoutsConfig {
    pub connect: Option<String>,
    pub idle: Option<String>,
    pub total: Option<String>,
}

/// [`FetchTimeoutsConfig`] parsed, defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchTimeouts {
    pub connect: Duration,
    pub idle: Duration,
    pub total: Duration,
}

impl FetchTimeoutsConfig {
    pub fn resolve(&self) -> Result<FetchTimeouts, ConfigError> {
        let one = |v: &Option<String>, field: &str, default: u64| {
            duration_field(v, field, Duration::from_secs(default))
        };
        Ok(FetchTimeouts {
            connect: one(&self.connect, "source.timeouts.connect", 10)?,
            idle: one(&self.idle, "source.timeouts.idle", 30)?,
            total: one(&self.total, "source.timeouts.total", 300)?,
        })
    }
}

/// `source.verify`: revisions must be signed by one of `keys` (checked by `source::verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// The fetched commit itself must be signed.
    Head,
    /// `ref` must name an annotated tag, and the tag must be signed.
    Tag,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    pub mode: VerifyMode,
    /// Public keys: paths to files, or the key text itself (an `ssh-…` line or an armored
    /// OpenPGP block).
    pub keys: Vec<String>,
}

/// Credentials. Secrets come from files or environment variables, never inline.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub username: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// SSH private key passed to the system `ssh` (`-i`).
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    /// Largest accepted body in bytes (default 1 MiB); larger → 413.
    pub max_body: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Extra fetch+reconcile times (cron with seconds: `sec min hour dom mon dow [year]`).
    pub cron: Option<String>,
    /// Apply only while the current second matches this cron expression, e.g.
    /// `* * 2-3 * * *` = 02:00–03:59. Outside it, changes are fetched and shown as pending.
    pub apply_window: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Remove managed containers no longer desired (default true).
    pub prune: Option<bool>,
    #[serde(default)]
    pub prune_volumes: bool,
    #[serde(default)]
    pub allow_empty: bool,
    /// Delete kind clusters this host no longer wants (destroys their state: never implied).
    #[serde(default)]
    pub prune_clusters: bool,
    pub env_file: Option<PathBuf>,
    /// How long to wait for a dependency to become healthy (humantime, default 2m).
    pub health_timeout: Option<String>,
}

/// Settings from flags and the environment: the top layer. `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub host: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub data_root: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
    pub desired_state: Option<PathBuf>,
    pub url: Option<String>,
    pub reference: Option<String>,
    pub path: Option<String>,
    pub interval: Option<Duration>,
    pub listen: Option<SocketAddr>,
    pub webhook_secret_file: Option<PathBuf>,
    pub apply_window: Option<String>,
    pub prune: Option<bool>,
    pub prune_volumes: Option<bool>,
    pub allow_empty: Option<bool>,
    pub prune_clusters: Option<bool>,
    pub health_timeout: Option<Duration>,
}

impl ReconcileConfig {
    pub fn health_timeout(&self) -> Result<Duration, ConfigError> {
        match &self.health_timeout {
            None => Ok(Duration::from_secs(120)),
            Some(s) => humantime::parse_duration(s)
                .map_err(|e| invalid("reconcile.health_timeout", &e.to_string())),
        }
    }
}

/// `rollout:`: how long changed services are watched and whether a failure is rolled back.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Deadline for a changed service to become healthy (default 2m; a service's
    /// `x-macula.rollout_timeout` overrides it).
    pub timeout: Option<String>,
    /// How long a service without a healthcheck must stay running (default 10s).
    pub stable: Option<String>,
    /// Re-apply the last good revision's spec for failed services (default true).
    pub rollback: Option<bool>,
}

impl RolloutConfig {
    pub fn resolve(&self) -> Result<crate::rollout::RolloutSettings, ConfigError> {
        let d = crate::rollout::RolloutSettings::default();
        Ok(crate::rollout::RolloutSettings {
            timeout: duration_field(&self.timeout, "rollout.timeout", d.timeout)?,
            stable: duration_field(&self.stable, "rollout.stable", d.stable)?,
            rollback: self.rollback.unwrap_or(d.rollback),
        })
    }
}

/// A duration setting: `default` when unset, more than zero when set.
fn duration_field(
    v: &Option<String>,
    field: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(invalid(field, "must be more than 0s")),
            Err(e) => Err(invalid(field, &e.to_string())),
        },
    }
}

impl AgentConfig {
    /// Load `path`; a missing file at the *default* location is an empty config.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let limits = input::Limits::current();
        let text = match input::read_text(path, path, &limits) {
            Ok(t) => t,
            Err(input::InputError::Read { source, .. })
                if !explicit && source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(Self::default())
            }
            Err(input::InputError::Read { source, .. }) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
            Err(e) => {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    problems: vec![e.to_diagnostic()],
                })
            }
        };
        // No interpolation: secrets are named (`*_env`, `*_file`), never written here.
        let mut d = crate::diag::Diagnostics::default();
        let cfg = input::parse_yaml(path, &text, None, &limits, &mut d).and_then(|(v, src)| {
            if v.is_null() {
                Some(Self::default())
            } else {
                input::deserialize_at::<AgentConfig>(v, "", &src, &|_| &[], &mut d)
            }
        });
        let mut cfg = match cfg {
            Some(c) if !d.has_errors() => c,
            _ => {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    problems: d.into_sorted(),
                })
            }
        };
        cfg.check()?;
        cfg.loaded_from = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Load from `--config` / `MACULA_GITOPS_CONFIG` when given, else the default location.
    pub fn load_from(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let path = explicit
            .map(Path::to_path_buf)
            .unwrap_or_else(default_config_path);
        let mut cfg = Self::load(&path, explicit.is_some())?;
        cfg.loaded_from = Some(path);
        Ok(cfg)
    }

    /// The config file (`o.config`, else the default location) with flags and environment laid
    /// over it, checked. The one place settings are layered.
    pub fn resolve(o: &Overrides) -> Result<Self, ConfigError> {
        let mut cfg = Self::load_from(o.config.as_deref())?;
        cfg.overlay(o)?;
        cfg.check()?;
        Ok(cfg)
    }

    fn overlay(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        // A source given on the command line replaces the file's, whichever kind it is.
        match (&o.url, &o.desired_state) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "--url/--desired-state",
                    "give one source: a git repository URL or a local directory",
                ))
            }
            (Some(url), None) => {
                self.source.get_or_insert_with(Default::default).url = url.clone();
                self.desired_state = None;
            }
            (None, Some(dir)) => {
                self.desired_state = Some(dir.clone());
                self.source = None;
            }
            (None, None) => {}
        }
        if let Some(src) = self.source.as_mut() {
            set(&mut src.reference, &o.reference);
            set(&mut src.path, &o.path);
        }
        if let Some(d) = o.interval {
            self.interval = Some(humantime::format_duration(d).to_string());
        }
        set(&mut self.host, &o.host);
        set(&mut self.state_dir, &o.state_dir);
        set(&mut self.data_root, &o.data_root);
        set(&mut self.listen, &o.listen);
        set(&mut self.webhook.secret_file, &o.webhook_secret_file);
        set(&mut self.schedule.apply_window, &o.apply_window);
        let r = &mut self.reconcile;
        set(&mut r.env_file, &o.env_file);
        set(&mut r.prune, &o.prune);
        r.prune_volumes = o.prune_volumes.unwrap_or(r.prune_volumes);
        r.allow_empty = o.allow_empty.unwrap_or(r.allow_empty);
        r.prune_clusters = o.prune_clusters.unwrap_or(r.prune_clusters);
        if let Some(d) = o.health_timeout {
            r.health_timeout = Some(humantime::format_duration(d).to_string());
        }
        if self.source.is_some() && self.desired_state.is_some() {
            return Err(invalid(
                "desired_state",
                "set either source (a git repository) or desired_state (a local directory)",
            ));
        }
        Ok(())
    }

    /// The local directory source: `desired_state`, else this repository's own
    /// `desired-state/` (a development build), else `./desired-state`.
    pub fn desired_state(&self) -> PathBuf {
        self.desired_state.clone().unwrap_or_else(|| {
            let embedded = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../desired-state"));
            if embedded.join("hosts.yaml").exists() {
                embedded
            } else {
                PathBuf::from("desired-state")
            }
        })
    }

    /// The reconcile (local directory) or poll (git) interval; `None` = only other triggers.
    pub fn interval(&self) -> Result<Option<Duration>, ConfigError> {
        if let Some(s) = &self.interval {
            let d =
                humantime::parse_duration(s).map_err(|e| invalid("interval", &e.to_string()))?;
            return Ok((!d.is_zero()).then_some(d));
        }
        match &self.source {
            Some(src) => src.interval(),
            None => Ok(Some(Duration::from_secs(60))),
        }
    }

    /// The privilege policy, naming this config file (or the default path) as where to grant.
    pub fn policy(&self) -> crate::policy::Policy {
        crate::policy::Policy::new(
            self.policy.clone(),
            self.loaded_from.clone().unwrap_or_else(default_config_path),
        )
    }

    pub fn data_root(&self) -> PathBuf {
        self.data_root
            .clone()
            .unwrap_or_else(crate::data::default_data_root)
    }

    /// Checks that do not need the network: durations and cron expressions parse.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(s) = &self.source {
            if s.url.trim().is_empty() {
                return Err(invalid("source.url", "must not be empty"));
            }
            s.interval()?;
            if let Some(p) = &s.path {
                crate::repo_path::check_rel_path(p).map_err(|m| invalid("source.path", &m))?;
            }
        }
        self.interval()?;
        self.reconcile.health_timeout()?;
        self.schedule.cron_schedule()?;
        self.schedule.window_schedule()?;
        crate::notify::config::check(self)?;
        self.rollout.resolve()?;
        if let Some(e) = self.policy().check_config().into_iter().next() {
            let (field, message) = e.split_once(": ").unwrap_or(("policy", &e));
            return Err(invalid(field, message));
        }
        Ok(())
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            DEFAULT_LISTEN
                .parse()
                .expect("constant is a socket address")
        })
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(default_state_dir)
    }

    pub fn host(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into())
        })
    }
}

impl SourceConfig {
    pub fn interval(&self) -> Result<Option<Duration>, ConfigError> {
        match &self.interval {
            None => Ok(Some(Duration::from_secs(60))),
            Some(s) => {
                let d = humantime::parse_duration(s)
                    .map_err(|e| invalid("source.interval", &e.to_string()))?;
                Ok((!d.is_zero()).then_some(d))
            }
        }
    }
}

impl ScheduleConfig {
    pub fn cron_schedule(&self) -> Result<Option<cron::Schedule>, ConfigError> {
        parse_cron("schedule.cron", self.cron.as_deref())
    }
    pub fn window_schedule(&self) -> Result<Option<cron::Schedule>, ConfigError> {
        parse_cron("schedule.apply_window", self.apply_window.as_deref())
    }
}

impl WebhookConfig {
    pub fn max_body(&self) -> usize {
        self.max_body.unwrap_or(1 << 20)
    }

    /// The shared secret, if webhooks are enabled.
    pub fn secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        read_secret(
            "webhook",
            self.secret_file.as_deref(),
            self.secret_env.as_deref(),
        )
        .map(|s| s.map(String::into_bytes))
    }
}

impl AuthConfig {
    /// (username, password/token) for HTTP(S) remotes, if configured.
    pub fn basic(&self) -> Result<Option<(String, String)>, ConfigError> {
        if let Some(token) = read_secret(
            "source.auth.token",
            self.token_file.as_deref(),
            self.token_env.as_deref(),
        )? {
            // Forges accept any user name with a token; `git` is what their docs use.
            let user = self.username.clone().unwrap_or_else(|| "git".into());
            return Ok(Some((user, token)));
        }
        if let Some(pw) = read_secret(
            "source.auth.password",
            self.password_file.as_deref(),
            self.password_env.as_deref(),
        )? {
            let user = self.username.clone().ok_or_else(|| ConfigError::Secret {
                what: "source.auth.password".into(),
                message: "a password needs source.auth.username".into(),
            })?;
            return Ok(Some((user, pw)));
        }
        Ok(None)
    }
}

/// A secret from the file or the environment variable the config names (trailing newline of a
/// file dropped). Shared with `crate::notify`.
pub(crate) fn read_secret(
    what: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    if let Some(f) = file {
        let s = std::fs::read_to_string(f).map_err(|e| ConfigError::Secret {
            what: what.into(),
            message: format!("{}: {e}", f.display()),
        })?;
        return Ok(Some(s.trim_end_matches(['\n', '\r']).to_string()));
    }
    if let Some(var) = env {
        let s = std::env::var(var).map_err(|e| ConfigError::Secret {
            what: what.into(),
            message: format!("${var}: {e}"),
        })?;
        return Ok(Some(s));
    }
    Ok(None)
}

fn parse_cron(field: &str, expr: Option<&str>) -> Result<Option<cron::Schedule>, ConfigError> {
    expr.map(|e| {
        cron::Schedule::from_str(e).map_err(|err| invalid(field, &format!("{e:?}: {err}")))
    })
    .transpose()
}

/// A layer's value, when given, replaces the one below.
fn set<T: Clone>(slot: &mut Option<T>, over: &Option<T>) {
    if over.is_some() {
        slot.clone_from(over);
    }
}

fn invalid(field: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

pub fn default_config_path() -> PathBuf {
    if is_root() {
        return PathBuf::from("/etc/macula-gitops/agent.yaml");
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".config"))
        .join("macula-gitops/agent.yaml")
}

/// The core's state dir, so `apply` and `run` share one.
pub fn default_state_dir() -> PathBuf {
    crate::state::default_state_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let cfg: AgentConfig = serde_yaml::from_str(
            r#"
host: lab1
listen: 127.0.0.1:9999
source:
  url: https://git.example/lab.git
  ref: main
  path: infra
  interval: 30s
  depth: 1
  auth: {token_env: GIT_TOKEN}
webhook: {secret_env: HOOK_SECRET, max_body: 1024}
schedule: {cron: "0 */5 * * * *", apply_window: "* * 2-3 * * *"}
reconcile: {prune: true}
"#,
        )
        .expect("valid config");
        cfg.check().expect("checks pass");
        let s = cfg.source.as_ref().expect("source");
        assert_eq!(s.interval().expect("ok"), Some(Duration::from_secs(30)));
        assert_eq!(cfg.listen().port(), 9999);
    }

    #[test]
    fn bad_values_are_reported_by_field() {
        let cfg: AgentConfig = serde_yaml::from_str(
            "source: {url: x, interval: soon}\nschedule: {apply_window: 'not cron'}\n",
        )
        .expect("parses");
        let err = cfg.check().expect_err("interval is invalid").to_string();
        assert!(err.starts_with("source.interval"), "{err}");
        let cfg: AgentConfig =
            serde_yaml::from_str("schedule: {apply_window: 'not cron'}\n").expect("parses");
        let err = cfg.check().expect_err("cron invalid").to_string();
        assert!(err.starts_with("schedule.apply_window"), "{err}");
        let cfg: AgentConfig =
            serde_yaml::from_str("source: {url: x, path: ../up}\n").expect("parses");
        assert!(cfg.check().is_err());
        assert!(serde_yaml::from_str::<AgentConfig>("surprise: 1\n").is_err());
    }

    #[test]
    fn load_reports_every_problem_with_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, "host: h\nsurprise: 1\nwebhook: {max_body: lots}\n").expect("write");
        let err = AgentConfig::load(&path, true)
            .expect_err("invalid")
            .to_string();
        assert!(
            err.contains("agent.yaml:2: surprise: unknown field `surprise`"),
            "{err}"
        );
        assert!(
            err.contains("agent.yaml:3: webhook.max_body: invalid type"),
            "{err}"
        );
        let missing = dir.path().join("none.yaml");
        assert!(AgentConfig::load(&missing, false).is_ok());
        assert!(matches!(
            AgentConfig::load(&missing, true),
            Err(ConfigError::Read { .. })
        ));
    }
}
