//! gix fetch into a bare cache repo, and ref resolution.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::remote::Direction;
use sha2::Digest;

use super::{SourceError, SourceSpec};
use crate::config::VerifyMode;

const HEADS: &str = "+refs/heads/*:refs/remotes/origin/*";
const TAGS: &str = "+refs/tags/*:refs/tags/*";
const HEAD: &str = "+HEAD:refs/remotes/origin/HEAD";

/// One cache per URL, so changing `source.url` never mixes histories.
pub fn cache_dir(state_dir: &Path, url: &str) -> PathBuf {
    let h = sha2::Sha256::digest(url.as_bytes());
    state_dir
        .join("cache")
        .join(format!("{}.git", &hex::encode(h)[..16]))
}

fn fetch_err(spec: &SourceSpec, e: impl std::error::Error) -> SourceError {
    SourceError::Fetch {
        url: spec.shown_url(),
        message: crate::redact::redact(&chain(&e)).into_owned(),
    }
}

/// gix errors carry the useful part (auth refused, repo not found) in their sources.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = s.source();
    }
    out
}

fn open_cache(spec: &SourceSpec, cache: &Path) -> Result<gix::Repository, SourceError> {
    if !cache.join("HEAD").is_file() {
        let parent = cache.parent().expect("cache dir has a parent");
        std::fs::create_dir_all(parent).map_err(|source| SourceError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
        // Init beside and rename, so a crash never leaves a half-initialised cache.
        let tmp = tempfile::Builder::new()
            .prefix(".init-")
            .tempdir_in(parent)
            .map_err(|source| SourceError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        gix::init_bare(tmp.path()).map_err(|e| fetch_err(spec, e))?;
        let tmp = tmp.keep();
        std::fs::rename(&tmp, cache).map_err(|source| SourceError::Io {
            path: cache.to_path_buf(),
            source,
        })?;
    }
    let overrides = vec![
        // The cache is ours alone; objects from the remote are checked when materialised.
        "gc.auto=0".to_string(),
        "fetch.prune=true".to_string(),
    ];
    let opts = gix::open::Options::isolated().config_overrides(overrides);
    gix::open_opts(cache, opts).map_err(|e| fetch_err(spec, e))
}

/// HTTP transport options with the deadlines of `source.timeouts`; `None` for other schemes.
/// reqwest's blocking client `timeout` bounds each read, so it is the `idle` limit; each
/// request's own timeout (reqwest: from connecting until the body is read) is what is left of
/// `total`, so a server trickling bytes makes the read fail at the deadline and the thread the
/// daemon abandoned then (`Daemon::start_fetch`) ends with it instead of reading forever.
fn http_deadlines(
    repo: &gix::Repository,
    spec: &SourceSpec,
) -> Result<Option<Box<dyn std::any::Any>>, SourceError> {
    use gix::protocol::transport::client::blocking_io::http;
    let Some(mut boxed) = repo
        .transport_options(spec.url.as_str(), None)
        .map_err(|e| fetch_err(spec, e))?
    else {
        return Ok(None);
    };
    let Some(opts) = boxed.downcast_mut::<http::Options>() else {
        return Ok(Some(boxed));
    };
    let t = spec.timeouts;
    opts.connect_timeout = Some(t.connect);
    let client =
        move |b: reqwest::blocking::ClientBuilder| Ok(b.connect_timeout(t.connect).timeout(t.idle));
    let deadline = std::time::Instant::now() + t.total;
    let request = move |req: &mut reqwest::blocking::Request| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        *req.timeout_mut() = Some(left.max(std::time::Duration::from_millis(1)));
        Ok(())
    };
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(client)),
        configure_request: Some(Box::new(request)),
    };
    opts.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(backend)));
    Ok(Some(boxed))
}

/// Fetch heads, tags, and the remote HEAD into `cache`.
pub fn fetch(spec: &SourceSpec, cache: &Path) -> Result<gix::Repository, SourceError> {
    let repo = open_cache(spec, cache)?;
    let remote = repo
        .remote_at(spec.url.as_str())
        .map_err(|e| fetch_err(spec, e))?
        .with_refspecs([HEADS, TAGS, HEAD], Direction::Fetch)
        .map_err(|e| fetch_err(spec, e))?
        .with_fetch_tags(gix::remote::fetch::Tags::None);
    let url = remote.url(Direction::Fetch).cloned();
    match url {
        Some(url) if url.scheme == gix::url::Scheme::Ssh => {
            let deadline = std::time::Instant::now() + spec.timeouts.total;
            let transport = super::ssh::SshTransport::new(url, spec, deadline);
            let probe = transport.probe();
            receive(remote.to_connection_with_transport(transport), spec)
                .map_err(|e| ssh_err(spec, &probe, e))?;
        }
        _ => {
            let mut conn = remote
                .connect(Direction::Fetch)
                .map_err(|e| fetch_err(spec, e))?;
            if let Some(opts) = http_deadlines(&repo, spec)? {
                conn = conn.with_transport_options(opts);
            }
            receive(conn, spec).map_err(|e| fetch_err(spec, &*e))?;
        }
    }
    Ok(repo)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Negotiate and receive the pack over `conn`, with `source.auth`'s credentials and `depth`.
fn receive<T>(
    conn: gix::remote::Connection<'_, '_, '_, T>,
    spec: &SourceSpec,
) -> Result<(), BoxError>
where
    T: gix::protocol::transport::client::blocking_io::Transport,
{
    let conn = match spec.basic_auth.clone() {
        Some((user, pass)) => conn.with_credentials(move |action| match action {
            gix::credentials::helper::Action::Get(ctx) => {
                Ok(Some(gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        username: user.clone(),
                        password: pass.clone(),
                        oauth_refresh_token: None,
                    },
                    next: ctx.into(),
                }))
            }
            _ => Ok(None),
        }),
        None => conn,
    };
    let mut prep = conn.prepare_fetch(gix::progress::Discard, Default::default())?;
    if let Some(d) = spec.depth {
        prep = prep.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(d));
    }
    let interrupt = AtomicBool::new(false);
    prep.receive(gix::progress::Discard, &interrupt)?;
    Ok(())
}

/// An ssh fetch's error: the deadline when the watchdog ended it; else what `ssh` said when it
/// ended the connection (gix then sees only the end of its output), with the setting that ran
/// out when it was one of ssh's own deadlines.
fn ssh_err(spec: &SourceSpec, probe: &super::ssh::Probe, e: BoxError) -> SourceError {
    let said = probe
        .stderr()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    let t = spec.timeouts;
    let mut message = if probe.expired() {
        let total = humantime::format_duration(t.total);
        format!("not done within source.timeouts.total ({total}); ssh stopped")
    } else if said.is_empty() {
        chain(&*e)
    } else {
        format!("ssh: {said}")
    };
    // ssh's own deadlines, as it words them (LANG=C).
    let setting = if said.contains("timed out") {
        Some(("connect", t.connect))
    } else if said.contains("not responding") {
        Some(("idle", t.idle))
    } else {
        None
    };
    if let Some((name, d)) = setting.filter(|_| !probe.expired()) {
        let d = humantime::format_duration(d);
        message.push_str(&format!("; no answer within source.timeouts.{name} ({d})"));
    }
    SourceError::Fetch {
        url: spec.shown_url(),
        message: crate::redact::redact(&message).into_owned(),
    }
}

/// The commit the configured ref names: branch, then tag, then a commit id.
pub fn resolve(repo: &gix::Repository, spec: &SourceSpec) -> Result<gix::ObjectId, SourceError> {
    let reference = spec.reference.as_deref().unwrap_or("HEAD");
    let resolve_err = |message: String| SourceError::Resolve {
        url: spec.shown_url(),
        reference: reference.to_string(),
        message,
    };
    let candidates: Vec<String> = if reference == "HEAD" {
        vec!["refs/remotes/origin/HEAD".into()]
    } else if let Some(rest) = reference.strip_prefix("refs/heads/") {
        vec![format!("refs/remotes/origin/{rest}")]
    } else if reference.starts_with("refs/tags/") {
        vec![reference.to_string()]
    } else {
        vec![
            format!("refs/remotes/origin/{reference}"),
            format!("refs/tags/{reference}"),
        ]
    };
    for name in &candidates {
        let found = repo
            .try_find_reference(name.as_str())
            .map_err(|e| resolve_err(e.to_string()))?;
        if let Some(mut r) = found {
            let commit = r
                .peel_to_commit()
                .map_err(|e| resolve_err(format!("{name}: {e}")))?;
            return Ok(commit.id);
        }
    }
    // A pinned commit: full id only (short ids would need the `revision` feature of gix).
    if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        let id = gix::ObjectId::from_hex(reference.as_bytes())
            .map_err(|e| resolve_err(e.to_string()))?;
        let commit = repo
            .find_object(id)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| resolve_err(e.to_string()))?;
        return Ok(commit.id);
    }
    Err(resolve_err("no such branch, tag or commit".into()))
}

/// Check the signature `mode` asks for. Err = why the revision is not trusted.
pub fn verify(
    repo: &gix::Repository,
    spec: &SourceSpec,
    commit: gix::ObjectId,
    mode: VerifyMode,
    keys: &super::verify::Keys,
) -> Result<(), String> {
    use super::verify::{split_commit, split_tag, verify_signature};
    let (payload, sig) = match mode {
        VerifyMode::Head => {
            let obj = repo.find_object(commit).map_err(|e| e.to_string())?;
            split_commit(&obj.data).ok_or("commit is not signed")?
        }
        VerifyMode::Tag => {
            let name = spec.reference.as_deref().unwrap_or("HEAD");
            let name = name.strip_prefix("refs/tags/").unwrap_or(name);
            let r = repo
                .try_find_reference(format!("refs/tags/{name}").as_str())
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!("verify mode `tag` needs `ref` to name a tag; {name:?} is not one")
                })?;
            let id = r.try_id().ok_or("tag ref is symbolic")?.detach();
            let obj = repo.find_object(id).map_err(|e| e.to_string())?;
            if obj.kind != gix::object::Kind::Tag {
                return Err(format!(
                    "tag {name} is lightweight; only signed annotated tags are trusted"
                ));
            }
            split_tag(&obj.data).ok_or_else(|| format!("tag {name} is not signed"))?
        }
    };
    verify_signature(&payload, &sig, keys)
}
