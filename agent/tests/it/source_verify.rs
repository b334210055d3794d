//! Signed-revision verification with real keys: SSH (ssh-keygen) and OpenPGP (gpg), commits
//! and annotated tags, signed right, signed by a stranger, and unsigned.

use std::path::Path;
use std::process::Command;

use crate::support::git::{git, in_repo, Repos};
use crate::support::run;
use macula_gitops::config::{SourceConfig, VerifyConfig, VerifyMode};
use macula_gitops::source::{Source, SourceError, SourceSpec};

fn sh(dir: &Path, envs: &[(&str, &Path)], cmd: &str, args: &[&str]) -> String {
    run(in_repo(dir, cmd)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, *v))))
}

fn ssh_key(dir: &Path, name: &str) -> std::path::PathBuf {
    let key = dir.join(name);
    sh(
        dir,
        &[],
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            name,
            "-f",
            key.to_str().expect("utf8"),
        ],
    );
    key
}

fn sync(
    url: &str,
    reference: &str,
    mode: VerifyMode,
    keys: Vec<String>,
    state: &Path,
) -> Result<String, SourceError> {
    let cfg = SourceConfig {
        url: url.into(),
        reference: Some(reference.into()),
        verify: Some(VerifyConfig { mode, keys }),
        ..Default::default()
    };
    Source::new(SourceSpec::from_config(&cfg).expect("spec"), state)
        .sync()
        .map(|o| o.commit)
}

#[test]
fn ssh_signed_commits_and_tags() {
    let r = Repos::new();
    let keys = tempfile::tempdir().expect("tmp");
    let trusted = ssh_key(keys.path(), "trusted");
    let stranger = ssh_key(keys.path(), "stranger");
    let pub_trusted = format!("{}.pub", trusted.display());
    git(&r.work, &["config", "gpg.format", "ssh"]);
    git(&r.work, &["config", "user.signingkey", &pub_trusted]);

    r.write("desired-state/app.env", "MESSAGE=signed\n");
    git(&r.work, &["add", "-A"]);
    git(&r.work, &["commit", "-q", "-S", "-m", "signed"]);
    git(&r.work, &["tag", "-s", "v1", "-m", "release v1"]);
    git(&r.work, &["tag", "light"]);
    git(
        &r.work,
        &["push", "-q", "origin", "HEAD:main", "v1", "light"],
    );
    let signed = r.head();
    let state = tempfile::tempdir().expect("tmp");
    let url = r.file_url();

    // The key may be given as a path or inline.
    let inline = std::fs::read_to_string(&pub_trusted).expect("pub");
    assert_eq!(
        sync(
            &url,
            "main",
            VerifyMode::Head,
            vec![pub_trusted.clone()],
            state.path()
        )
        .expect("verified"),
        signed
    );
    assert_eq!(
        sync(&url, "main", VerifyMode::Head, vec![inline], state.path()).expect("verified"),
        signed
    );
    assert_eq!(
        sync(
            &url,
            "v1",
            VerifyMode::Tag,
            vec![pub_trusted.clone()],
            state.path()
        )
        .expect("tag verified"),
        signed
    );
    let light = sync(
        &url,
        "light",
        VerifyMode::Tag,
        vec![pub_trusted.clone()],
        state.path(),
    );
    assert!(
        matches!(light, Err(SourceError::Unverified { .. })),
        "{light:?}"
    );

    // Signed by a key nobody trusts.
    let pub_stranger = format!("{}.pub", stranger.display());
    let res = sync(
        &url,
        "main",
        VerifyMode::Head,
        vec![pub_stranger.clone()],
        state.path(),
    );
    // The refusal names its cause: the signer's key, and that it is not trusted.
    let fingerprint = sh(keys.path(), &[], "ssh-keygen", &["-lf", &pub_trusted]);
    let fingerprint = fingerprint.split_whitespace().nth(1).expect("fingerprint");
    match res {
        Err(SourceError::Unverified { message, .. }) => {
            assert!(message.contains(fingerprint), "{message}");
            assert!(
                message.contains("not one of source.verify.keys"),
                "{message}"
            );
        }
        other => panic!("expected refusal, got {other:?}"),
    }

    // Unsigned: refused, and nothing of it is materialised.
    r.write("desired-state/app.env", "MESSAGE=unsigned\n");
    git(&r.work, &["add", "-A"]);
    git(
        &r.work,
        &["commit", "-q", "--no-gpg-sign", "-m", "unsigned"],
    );
    git(&r.work, &["push", "-q", "origin", "HEAD:main"]);
    let unsigned = r.head();
    match sync(
        &url,
        "main",
        VerifyMode::Head,
        vec![pub_trusted],
        state.path(),
    ) {
        Err(SourceError::Unverified { commit, message }) => {
            assert_eq!(commit, unsigned);
            assert!(message.contains("not signed"), "{message}");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    assert!(!state.path().join("snapshots").join(&unsigned).exists());
}

#[test]
fn openpgp_signed_commit() {
    let r = Repos::new();
    let gnupg = tempfile::Builder::new()
        .prefix("gpg")
        .tempdir_in("/tmp")
        .expect("tmp");
    let home = gnupg.path();
    let env = [("GNUPGHOME", home)];
    sh(
        home,
        &env,
        "gpg",
        &[
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Signer <signer@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
    );
    let armored = sh(
        home,
        &env,
        "gpg",
        &["--armor", "--export", "signer@example.invalid"],
    );
    r.write("desired-state/app.env", "MESSAGE=pgp\n");
    git(&r.work, &["add", "-A"]);
    sh(
        &r.work,
        &env,
        "git",
        &[
            "-c",
            "user.signingkey=signer@example.invalid",
            "commit",
            "-q",
            "-S",
            "-m",
            "pgp signed",
        ],
    );
    git(&r.work, &["push", "-q", "origin", "HEAD:main"]);
    let signed = r.head();
    let state = tempfile::tempdir().expect("tmp");
    let got = sync(
        &r.file_url(),
        "main",
        VerifyMode::Head,
        vec![armored],
        state.path(),
    );
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", home)
        .args(["--kill", "gpg-agent"])
        .status();
    assert_eq!(got.expect("OpenPGP signature verified"), signed);

    // An SSH-only trust set does not accept the OpenPGP signature.
    let keys = tempfile::tempdir().expect("tmp");
    let k = ssh_key(keys.path(), "other");
    let res = sync(
        &r.file_url(),
        "main",
        VerifyMode::Head,
        vec![format!("{}.pub", k.display())],
        state.path(),
    );
    assert!(
        matches!(res, Err(SourceError::Unverified { .. })),
        "{res:?}"
    );
}
