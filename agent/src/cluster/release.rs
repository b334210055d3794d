//! A Flux release's `install.yaml`, verified before anything reaches a cluster.
//!
//! Flux publishes `flux_<version without v>_checksums.txt` next to `install.yaml` on every
//! release (goreleaser's checksum file; `release.extra_files` puts `install.yaml` and
//! `manifests.tar.gz` in it, and the release workflow cosign-signs it). The agent downloads
//! both and refuses a manifest whose sha256 is not the file's `install.yaml` entry. An explicit
//! `flux.sha256` pin wins: then the checksums file is not needed at all. The signature is not
//! checked here (no sigstore client in the agent); the checksums file comes over the same TLS
//! channel as the manifest, so it guards against a corrupted or swapped download, and the pin
//! is the way to trust a digest reviewed elsewhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::flux::sha256_hex;
use super::ClusterError;

/// Where `install.yaml` comes from when `flux.install_url` is not set.
pub const DEFAULT_RELEASES: &str = "https://github.com/fluxcd/flux2/releases/download";
/// Flux's install.yaml is ~1 MiB; anything far larger is not a Flux release.
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;
/// The checksums file lists a few dozen archives.
pub const MAX_CHECKSUMS_BYTES: usize = 256 << 10;
/// Every download ends by this deadline unless the caller sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One Flux release as the desired state names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub version: String,
    pub install_url: String,
    pub checksums_url: String,
    /// `flux.sha256`: when set, the only digest accepted.
    pub pin: Option<String>,
}

impl Release {
    pub fn of(flux: &super::file::FluxResolved) -> Self {
        Self {
            version: flux.version.clone(),
            checksums_url: checksums_url_for(&flux.install_url, &flux.version),
            install_url: flux.install_url.clone(),
            pin: flux.sha256.clone(),
        }
    }
}

/// How the digest of an installed manifest was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifiedBy {
    /// `flux.sha256` in the desired state.
    Pin,
    /// The release's `flux_<version>_checksums.txt`.
    Checksums,
}

impl std::fmt::Display for VerifiedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerifiedBy::Pin => "pinned sha256",
            VerifiedBy::Checksums => "release checksums",
        })
    }
}

/// A manifest whose sha256 matched.
#[derive(Debug, Clone)]
pub struct Verified {
    pub text: String,
    pub sha256: String,
    pub by: VerifiedBy,
}

/// What the agent last installed in a cluster, kept in `<state>/clusters/<name>/flux.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub version: String,
    pub sha256: String,
    pub verified_by: VerifiedBy,
    pub install_url: String,
    /// Every object of that manifest, so the next version's install can remove what it
    /// dropped.
    #[serde(default)]
    pub inventory: Vec<ObjectRef>,
}

/// One object the agent applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn of(v: &serde_json::Value) -> Self {
        Self {
            api_version: v
                .get("apiVersion")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("v1")
                .to_string(),
            kind: super::flux::kind_of(v).to_string(),
            namespace: super::flux::namespace_of(v).map(str::to_string),
            name: super::flux::name_of(v).to_string(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What `old` applied and `new` no longer has, except what removing would destroy more than
/// itself: a Namespace (everything in it) or a CRD (every object of its kind), which stay.
pub fn dropped(old: &[ObjectRef], new: &[ObjectRef]) -> (Vec<ObjectRef>, Vec<ObjectRef>) {
    old.iter()
        .filter(|o| !new.contains(o))
        .cloned()
        .partition(|o| !matches!(o.kind.as_str(), "Namespace" | "CustomResourceDefinition"))
}

pub fn installed_path(state_dir: &Path, cluster: &str) -> PathBuf {
    state_dir.join("clusters").join(cluster).join("flux.json")
}

pub fn read_installed(state_dir: &Path, cluster: &str) -> Option<Installed> {
    crate::state::read_json(&installed_path(state_dir, cluster))
        .ok()
        .flatten()
}

pub fn write_installed(
    state_dir: &Path,
    cluster: &str,
    installed: &Installed,
) -> Result<(), ClusterError> {
    let path = installed_path(state_dir, cluster);
    crate::state::write_json(&path, installed).map_err(|e| ClusterError::Exec {
        subject: format!("writing {}", path.display()),
        message: e.to_string(),
    })
}

/// `flux_2.9.5_checksums.txt` for `v2.9.5` (goreleaser drops the `v`).
pub fn checksums_name(version: &str) -> String {
    format!("flux_{}_checksums.txt", version.trim_start_matches('v'))
}

pub fn default_install_url(version: &str) -> String {
    format!("{DEFAULT_RELEASES}/{version}/install.yaml")
}

/// The checksums file sits next to `install.yaml` in the release directory.
pub fn checksums_url_for(install_url: &str, version: &str) -> String {
    let dir = install_url
        .rsplit_once('/')
        .map(|(d, _)| d)
        .unwrap_or(install_url);
    format!("{dir}/{}", checksums_name(version))
}

/// The file name the checksums file lists for `url` (`install.yaml`).
fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// A digest nobody computed: one repeated digit, a short repeating pattern, or a digest that
/// uses only a handful of distinct digits (a real sha256 uses ~16 of them in 64).
pub fn is_placeholder(sha256: &str) -> bool {
    let b = sha256.as_bytes();
    let periodic = (1..=16).any(|p| b.len() > p && b.iter().skip(p).zip(b).all(|(x, y)| x == y));
    let mut distinct = b.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    periodic || distinct.len() <= 4
}

/// `<sha256>  <name>` lines (sha256sum's format; `*` marks binary mode) → the digest of `name`.
pub fn lookup(checksums: &str, name: &str) -> Option<String> {
    checksums.lines().find_map(|l| {
        let (sum, file) = l.trim().split_once(char::is_whitespace)?;
        let file = file.trim_start().trim_start_matches('*');
        (file == name && sum.len() == 64 && sum.bytes().all(|c| c.is_ascii_hexdigit()))
            .then(|| sum.to_ascii_lowercase())
    })
}

/// GET `url` (https, http or file) into memory: at most `limit` bytes, done by `timeout`.
pub async fn download(url: &str, limit: usize, timeout: Duration) -> Result<Vec<u8>, ClusterError> {
    let err = |message: String| ClusterError::Fetch {
        url: url.to_string(),
        message,
    };
    if let Some(path) = url.strip_prefix("file://") {
        let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        if data.len() > limit {
            return Err(err(format!("larger than {limit} bytes")));
        }
        return Ok(data);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let work = async {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .build()
            .map_err(|e| err(e.to_string()))?;
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let mut data = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.to_string()))? {
            if data.len() + chunk.len() > limit {
                return Err(err(format!("larger than {limit} bytes")));
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| err(format!("no complete answer within {timeout:?}")))?
}

/// The `install.yaml` digest the release's checksums file lists.
pub async fn published_digest(
    release: &Release,
    timeout: Duration,
) -> Result<String, ClusterError> {
    let data = download(&release.checksums_url, MAX_CHECKSUMS_BYTES, timeout).await?;
    let text = String::from_utf8_lossy(&data);
    let name = file_name(&release.install_url);
    lookup(&text, name).ok_or_else(|| ClusterError::ChecksumMissing {
        url: release.checksums_url.clone(),
        name: name.to_string(),
    })
}

fn check(
    release: &Release,
    data: &[u8],
    want: String,
    by: VerifiedBy,
) -> Result<String, ClusterError> {
    let actual = sha256_hex(data);
    if actual != want {
        return Err(ClusterError::Checksum {
            url: release.install_url.clone(),
            expected: want,
            actual,
            source_of_truth: match by {
                VerifiedBy::Pin => "flux.sha256 pins".into(),
                VerifiedBy::Checksums => format!("{} lists", release.checksums_url),
            },
        });
    }
    Ok(actual)
}

/// `flux digest`: the digest to pin for `release`, after downloading the manifest and
/// checking it against the release's checksums file (nothing is cached).
pub async fn digest(release: &Release, timeout: Duration) -> Result<String, ClusterError> {
    let want = published_digest(release, timeout).await?;
    let data = download(&release.install_url, MAX_MANIFEST_BYTES, timeout).await?;
    check(release, &data, want, VerifiedBy::Checksums)
}

fn cache_path(state_dir: &Path, sha256: &str) -> PathBuf {
    state_dir
        .join("flux")
        .join(format!("install-{sha256}.yaml"))
}

/// The release's install.yaml, verified against the pin or the checksums file. A manifest
/// cached under its digest is reused without downloading it again.
pub async fn fetch_verified(
    release: &Release,
    state_dir: &Path,
    timeout: Duration,
) -> Result<Verified, ClusterError> {
    let (want, by) = match &release.pin {
        Some(pin) => (pin.clone(), VerifiedBy::Pin),
        None => (
            published_digest(release, timeout).await?,
            VerifiedBy::Checksums,
        ),
    };
    let cached = cache_path(state_dir, &want);
    let data = match std::fs::read(&cached) {
        Ok(d) if sha256_hex(&d) == want => d,
        _ => download(&release.install_url, MAX_MANIFEST_BYTES, timeout).await?,
    };
    let actual = check(release, &data, want, by)?;
    let text = String::from_utf8(data.clone()).map_err(|e| ClusterError::Manifest {
        subject: release.install_url.clone(),
        message: e.to_string(),
    })?;
    if !cached.exists() {
        crate::state::write_atomic(&cached, &data).map_err(|e| ClusterError::Exec {
            subject: format!("caching {}", cached.display()),
            message: e.to_string(),
        })?;
    }
    Ok(Verified {
        text,
        sha256: actual,
        by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised_and_real_digests_are_not() {
        for fake in [
            "0".repeat(64),
            "f".repeat(64),
            "0123456789abcdef".repeat(4),
            "deadbeef".repeat(8),
            "ab".repeat(32),
        ] {
            assert!(is_placeholder(&fake), "{fake}");
        }
        // sha256 of Flux v2.9.5's install.yaml as a third party recorded it, and of "".
        for real in [
            "cc3dcd743af16215838b6937e1fce83745bf24c0dcc6c59737c59df15429caaf",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(!is_placeholder(real), "{real}");
        }
    }

    #[test]
    fn checksums_lines_and_names() {
        let sums = "aa  flux_2.9.5_linux_amd64.tar.gz\n\
                    cc3dcd743af16215838b6937e1fce83745bf24c0dcc6c59737c59df15429caaf  install.yaml\n\
                    E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855 *manifests.tar.gz\n";
        assert_eq!(
            lookup(sums, "install.yaml").as_deref(),
            Some("cc3dcd743af16215838b6937e1fce83745bf24c0dcc6c59737c59df15429caaf")
        );
        assert_eq!(
            lookup(sums, "manifests.tar.gz").as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(lookup(sums, "flux_2.9.5_linux_amd64.tar.gz"), None);
        assert_eq!(checksums_name("v2.9.5"), "flux_2.9.5_checksums.txt");
        assert_eq!(
            checksums_url_for(&default_install_url("v2.9.5"), "v2.9.5"),
            "https://github.com/fluxcd/flux2/releases/download/v2.9.5/flux_2.9.5_checksums.txt"
        );
    }
}
