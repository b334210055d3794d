//! A Flux release directory served over HTTP on 127.0.0.1, laid out as GitHub serves one
//! (`<base>/<version>/install.yaml`, `<base>/<version>/flux_<version>_checksums.txt`), so a
//! test can tamper with either file or drop an entry. Plus two ends that never deliver: a
//! port nothing listens on, and a server that accepts and then says nothing.

use std::path::PathBuf;

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;

pub struct ReleaseDir {
    /// Files live under `<root>/<version>/`.
    pub root: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`; a release's files are at `<base>/<version>/<file>`.
    pub base: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl ReleaseDir {
    /// A release `version` whose install.yaml is `manifest` and whose checksums file lists
    /// its true sha256 (plus an archive line, as Flux's does).
    pub async fn start(version: &str, manifest: &[u8]) -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("install.yaml"), manifest).unwrap();
        let sum = macula_gitops::cluster::flux::sha256_hex(manifest);
        let sums = format!(
            "{}  flux_{v}_linux_amd64.tar.gz\n{sum}  install.yaml\n",
            macula_gitops::cluster::flux::sha256_hex(b"archive"),
            v = version.trim_start_matches('v'),
        );
        let r = Self::serve(root).await;
        r.write(version, &Self::checksums_name(version), sums.as_bytes());
        r
    }

    async fn serve(root: tempfile::TempDir) -> Self {
        let dir: PathBuf = root.path().to_path_buf();
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let path = dir.join(uri.path().trim_start_matches('/'));
            async move {
                match std::fs::read(&path) {
                    Ok(b) => (StatusCode::OK, b).into_response(),
                    Err(_) => StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let (base, tx) = super::serve_local(app).await;
        Self {
            root,
            base,
            _shutdown: tx,
        }
    }

    pub fn checksums_name(version: &str) -> String {
        format!("flux_{}_checksums.txt", version.trim_start_matches('v'))
    }

    pub fn install_url(&self, version: &str) -> String {
        format!("{}/{version}/install.yaml", self.base)
    }

    pub fn write(&self, version: &str, file: &str, data: &[u8]) {
        std::fs::write(self.root.path().join(version).join(file), data).unwrap();
    }

    pub fn read(&self, version: &str, file: &str) -> String {
        std::fs::read_to_string(self.root.path().join(version).join(file)).unwrap()
    }
}

/// `http://127.0.0.1:<port>` where nothing listens (the port was free a moment ago).
pub fn unreachable_base() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}
