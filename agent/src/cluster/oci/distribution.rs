//! The OCI distribution API, the part `flux push artifact` uses: read a tag's manifest, upload
//! blobs (skipped when the registry has them), put the manifest under each tag. Plain HTTP: the
//! registry is the host's local one (`registry.host`). Every request has a deadline and every
//! answer read is bounded.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::pack::sha256;
use super::{Artifact, OciError, CONFIG_MEDIA_TYPE, CONTENT_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};

/// A manifest is a few hundred bytes; anything this large is not one of ours.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Registry {
    host: String,
    client: reqwest::Client,
    timeout: Duration,
}

impl Registry {
    /// The registry at `host` (`localhost:5001`); each request is abandoned after `timeout`.
    pub fn new(host: &str, timeout: Duration) -> Result<Self, OciError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| OciError::Registry {
                registry: host.to_string(),
                what: "client".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            host: host.to_string(),
            client,
            timeout,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/v2/{path}", self.host)
    }

    fn err(&self, what: impl Into<String>, message: impl std::fmt::Display) -> OciError {
        OciError::Registry {
            registry: self.host.clone(),
            what: what.into(),
            message: message.to_string(),
        }
    }

    async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OciError> {
        match tokio::time::timeout(self.timeout, req.send()).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.err(what, e)),
            Err(_) => Err(self.err(what, format!("no answer within {:?}", self.timeout))),
        }
    }

    /// The manifest `repository:tag` holds now, `None` when the tag does not exist.
    pub async fn manifest(&self, repository: &str, tag: &str) -> Result<Option<Value>, OciError> {
        let what = format!("GET manifest {repository}:{tag}");
        let req = self
            .client
            .get(self.url(&format!("{repository}/manifests/{tag}")))
            .header(reqwest::header::ACCEPT, MANIFEST_MEDIA_TYPE);
        let mut resp = self.send(&what, req).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.err(what, format!("HTTP {}", resp.status())));
        }
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout(self.timeout, resp.chunk()).await;
            match chunk {
                Ok(Ok(Some(c))) => {
                    if body.len() + c.len() > MAX_MANIFEST_BYTES {
                        return Err(self.err(what, "larger than a manifest can be"));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(self.err(what, e)),
                Err(_) => return Err(self.err(what, "answer not complete in time")),
            }
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| self.err(what, e))
    }

    /// The content layer digest of the Flux artifact `repository:tag` holds, if any.
    pub async fn layer_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, OciError> {
        Ok(self.manifest(repository, tag).await?.and_then(|m| {
            m.pointer("/layers/0/digest")
                .and_then(Value::as_str)
                .map(str::to_string)
        }))
    }

    /// Upload `data` as the blob `digest` unless the registry has it.
    async fn blob(&self, repository: &str, digest: &str, data: Vec<u8>) -> Result<(), OciError> {
        let what = format!("blob {digest}");
        let head = self
            .send(
                &what,
                self.client
                    .head(self.url(&format!("{repository}/blobs/{digest}"))),
            )
            .await?;
        if head.status().is_success() {
            return Ok(());
        }
        let start = self
            .send(
                &what,
                self.client
                    .post(self.url(&format!("{repository}/blobs/uploads/"))),
            )
            .await?;
        if start.status() != reqwest::StatusCode::ACCEPTED {
            return Err(self.err(
                what,
                format!("starting the upload: HTTP {}", start.status()),
            ));
        }
        let location = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| self.err(&what, "no Location for the upload"))?;
        let mut url = if location.starts_with('/') {
            format!("http://{}{location}", self.host)
        } else {
            location.to_string()
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let put = self
            .client
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data);
        let done = self.send(&what, put).await?;
        if done.status() != reqwest::StatusCode::CREATED {
            return Err(self.err(what, format!("upload: HTTP {}", done.status())));
        }
        Ok(())
    }

    /// Push `artifact` as Flux's manifest with `annotations` under every tag in `tags`; returns
    /// the manifest digest.
    pub async fn push(
        &self,
        repository: &str,
        tags: &[String],
        artifact: &Artifact,
        annotations: &BTreeMap<String, String>,
    ) -> Result<String, OciError> {
        let config = config_blob(artifact);
        let config_digest = sha256(&config);
        let config_size = config.len();
        self.blob(repository, &config_digest, config).await?;
        self.blob(repository, &artifact.digest, artifact.layer.to_vec())
            .await?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [{
                "mediaType": CONTENT_MEDIA_TYPE,
                "digest": artifact.digest,
                "size": artifact.layer.len(),
            }],
            "annotations": annotations,
        }))
        .map_err(|e| self.err("manifest", e))?;
        let digest = sha256(&manifest);
        for tag in tags {
            let what = format!("PUT manifest {repository}:{tag}");
            let req = self
                .client
                .put(self.url(&format!("{repository}/manifests/{tag}")))
                .header(reqwest::header::CONTENT_TYPE, MANIFEST_MEDIA_TYPE)
                .body(manifest.clone());
            let resp = self.send(&what, req).await?;
            if resp.status() != reqwest::StatusCode::CREATED {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                return Err(self.err(what, format!("HTTP {status}: {text}")));
            }
        }
        Ok(digest)
    }
}

/// The config `flux push artifact` pushes (go-containerregistry's empty image with the one
/// layer appended): Flux reads nothing from it, registries only need it to exist.
fn config_blob(artifact: &Artifact) -> Vec<u8> {
    let config = json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [artifact.diff_id]},
        "config": {},
    });
    serde_json::to_vec(&config).unwrap_or_default()
}
