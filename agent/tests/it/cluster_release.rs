//! Flux release verification against a release directory served over real HTTP on 127.0.0.1:
//! the manifest is accepted only when its sha256 is the checksums file's `install.yaml` entry
//! (or the explicit pin), and every download ends by its deadline.

use crate::support::cluster::release_dir::{self, ReleaseDir};
use crate::support::receiver::Silent;
use crate::support::BIN;

use std::time::{Duration, Instant};

use macula_gitops::cluster::flux::sha256_hex;
use macula_gitops::cluster::release::{self, Release, VerifiedBy};
use macula_gitops::cluster::ClusterError;

const V: &str = "v2.9.5";
const MANIFEST: &[u8] = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: flux-system}\n";
const T: Duration = Duration::from_secs(10);

fn release_at(install_url: &str, pin: Option<&str>) -> Release {
    Release {
        version: V.into(),
        install_url: install_url.into(),
        checksums_url: release::checksums_url_for(install_url, V),
        pin: pin.map(str::to_string),
    }
}

#[tokio::test]
async fn good_release_is_verified_by_its_checksums_and_cached() {
    let dir = ReleaseDir::start(V, MANIFEST).await;
    let state = tempfile::tempdir().unwrap();
    let rel = release_at(&dir.install_url(V), None);
    assert!(rel
        .checksums_url
        .ends_with("/v2.9.5/flux_2.9.5_checksums.txt"));
    let v = release::fetch_verified(&rel, state.path(), T)
        .await
        .unwrap();
    assert_eq!(
        (v.sha256.as_str(), v.by, v.text.as_bytes()),
        (
            sha256_hex(MANIFEST).as_str(),
            VerifiedBy::Checksums,
            MANIFEST
        )
    );
    let cached = state.path().join(format!("flux/install-{}.yaml", v.sha256));
    assert_eq!(std::fs::read(&cached).unwrap(), MANIFEST);

    // Pinned to that digest, the cached copy is used: no server needed.
    let offline = format!("{}/{V}/install.yaml", release_dir::unreachable_base());
    let pinned = release_at(&offline, Some(&v.sha256));
    let again = release::fetch_verified(&pinned, state.path(), T)
        .await
        .unwrap();
    assert_eq!((again.sha256, again.by), (v.sha256, VerifiedBy::Pin));
}

#[tokio::test]
async fn tampered_manifest_is_refused_and_not_cached() {
    let dir = ReleaseDir::start(V, MANIFEST).await;
    dir.write(
        V,
        "install.yaml",
        b"kind: Namespace\nmetadata: {name: evil}\n",
    );
    let state = tempfile::tempdir().unwrap();
    let rel = release_at(&dir.install_url(V), None);
    let err = release::fetch_verified(&rel, state.path(), T)
        .await
        .unwrap_err();
    let ClusterError::Checksum { expected, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(expected, &sha256_hex(MANIFEST));
    assert!(
        err.to_string().contains(&format!(
            "{} lists {expected}; refusing to install it",
            rel.checksums_url
        )),
        "{err}"
    );
    assert!(!state.path().join("flux").exists(), "nothing cached");
}

#[tokio::test]
async fn tampered_checksums_are_refused_unless_a_pin_decides() {
    let dir = ReleaseDir::start(V, MANIFEST).await;
    let name = ReleaseDir::checksums_name(V);
    let other = sha256_hex(b"another manifest");
    let sums = dir.read(V, &name).replace(&sha256_hex(MANIFEST), &other);
    dir.write(V, &name, sums.as_bytes());
    let state = tempfile::tempdir().unwrap();
    let err = release::fetch_verified(&release_at(&dir.install_url(V), None), state.path(), T)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Checksum { expected, .. } if *expected == other),
        "{err}"
    );
    // An explicit pin wins over the checksums file, both ways.
    let good = sha256_hex(MANIFEST);
    let pinned = release_at(&dir.install_url(V), Some(&good));
    let v = release::fetch_verified(&pinned, state.path(), T)
        .await
        .unwrap();
    assert_eq!(v.by, VerifiedBy::Pin);
    let wrong_pin = release_at(&dir.install_url(V), Some(&other));
    let err = release::fetch_verified(&wrong_pin, tempfile::tempdir().unwrap().path(), T)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("flux.sha256 pins"), "{err}");
}

#[tokio::test]
async fn checksums_without_an_install_yaml_entry_are_refused() {
    let dir = ReleaseDir::start(V, MANIFEST).await;
    let name = ReleaseDir::checksums_name(V);
    let sums: String = dir
        .read(V, &name)
        .lines()
        .filter(|l| !l.ends_with("install.yaml"))
        .map(|l| format!("{l}\n"))
        .collect();
    dir.write(V, &name, sums.as_bytes());
    let rel = release_at(&dir.install_url(V), None);
    let err = release::fetch_verified(&rel, tempfile::tempdir().unwrap().path(), T)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} has no entry for install.yaml; refusing to install an unverified manifest",
            rel.checksums_url
        )
    );
}

#[tokio::test]
async fn unreachable_and_silent_servers_fail_by_the_deadline() {
    let state = tempfile::tempdir().unwrap();
    let refused = release_at(
        &format!("{}/{V}/install.yaml", release_dir::unreachable_base()),
        None,
    );
    let err = release::fetch_verified(&refused, state.path(), T)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Fetch { url, .. } if *url == refused.checksums_url),
        "{err}"
    );

    let server = Silent::start().await;
    let silent = release_at(&format!("{}/{V}/install.yaml", server.url), None);
    let started = Instant::now();
    let err = release::fetch_verified(&silent, state.path(), Duration::from_millis(300))
        .await
        .unwrap_err();
    let took = started.elapsed();
    drop(server);
    assert!(
        err.to_string().contains("no complete answer within 300ms"),
        "{err}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn flux_digest_prints_the_verified_digest_for_pinning() {
    let dir = ReleaseDir::start(V, MANIFEST).await;
    let out = tokio::process::Command::new(BIN)
        .args(["flux", "digest", V, "--install-url", &dir.install_url(V)])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", sha256_hex(MANIFEST))
    );

    dir.write(V, "install.yaml", b"tampered");
    let out = tokio::process::Command::new(BIN)
        .args(["flux", "digest", V, "--install-url", &dir.install_url(V)])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to install it"),
        "{out:?}"
    );
}
