//! A recording `kind` executable: a shell script put first on a PATH value that appends its
//! arguments to `calls.log`, keeps a copy of every `--config` file, and answers `get clusters`
//! and `get kubeconfig` from files in its directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub struct RecordingKind {
    pub dir: tempfile::TempDir,
}

const SCRIPT: &str = r#"#!/bin/sh
d="$(dirname "$0")"
echo "$*" >> "$d/calls.log"
if [ -f "$d/fail" ]; then cat "$d/fail" >&2; exit 1; fi
case "$1 $2" in
  "get clusters") cat "$d/clusters" 2>/dev/null; exit 0 ;;
  "get kubeconfig") cat "$d/kubeconfig-$4"; exit $? ;;
  "create cluster")
    while [ $# -gt 0 ]; do
      if [ "$1" = "--config" ]; then cp "$2" "$d/config-copy.yaml"; fi
      if [ "$1" = "--name" ]; then name="$2"; echo "$2" >> "$d/clusters"; fi
      shift
    done
    # Like kind: a node container labelled for the cluster, on the nodes' network.
    if [ -f "$d/create-nodes" ]; then
      read net image < "$d/create-nodes"
      docker run -d --name "$name-control-plane" --network "$net" \
        --label io.x-k8s.kind.cluster="$name" --label io.x-k8s.kind.role=control-plane \
        --label io.macula.gitops.test="$name" "$image" sleep 3600 >/dev/null || exit 1
    fi ;;
  "delete cluster") grep -vx "$4" "$d/clusters" > "$d/clusters.new"; mv "$d/clusters.new" "$d/clusters" ;;
esac
"#;

impl RecordingKind {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let kind = dir.path().join("kind");
        std::fs::write(&kind, SCRIPT).unwrap();
        std::fs::set_permissions(&kind, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    /// A PATH value with the recording `kind` first, then the system directories.
    pub fn path_var(&self) -> OsString {
        std::env::join_paths([
            self.dir.path(),
            Path::new("/usr/local/bin"),
            Path::new("/usr/bin"),
            Path::new("/bin"),
        ])
        .unwrap()
    }

    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn config_copy(&self) -> PathBuf {
        self.dir.path().join("config-copy.yaml")
    }

    pub fn set_kubeconfig(&self, cluster: &str, text: &str) {
        std::fs::write(self.dir.path().join(format!("kubeconfig-{cluster}")), text).unwrap();
    }

    /// Make `create cluster` start a node container on `network` from `image`, as kind does.
    pub fn create_nodes(&self, network: &str, image: &str) {
        std::fs::write(
            self.dir.path().join("create-nodes"),
            format!("{network} {image}\n"),
        )
        .unwrap();
    }

    pub fn fail_with(&self, stderr: &str) {
        std::fs::write(self.dir.path().join("fail"), stderr).unwrap();
    }
}
