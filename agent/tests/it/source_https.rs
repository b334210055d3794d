//! HTTPS with token auth: nginx terminates TLS (certificate from a CA made by the test) in
//! front of `git http-backend`, which demands basic auth. The fetches run in a child process of
//! this test binary started with SSL_CERT_FILE (and the token variables) in its environment:
//! only that process trusts the test CA, and no test mutates the shared process environment.

use std::path::Path;
use std::process::Command;

use crate::support::git::{HttpGit, Repos};
use crate::support::{free_port, wait_for_listener, KillOnDrop};
use macula_gitops::config::{AuthConfig, SourceConfig};
use macula_gitops::source::{Source, SourceError, SourceSpec};

fn tls_proxy(dir: &Path, backend: u16) -> (KillOnDrop, u16) {
    crate::support::tls::Pki::create_in(dir);
    let port = free_port();
    std::fs::create_dir_all(dir.join("tmp")).expect("mkdir");
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon off; master_process off; user root; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{}}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n\
              fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
              server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;\n\
               location / {{ proxy_pass http://127.0.0.1:{backend}; proxy_buffering off; }}\n }}\n}}\n"
        ),
    )
    .expect("nginx.conf");
    let child = Command::new("nginx")
        .args(["-p"])
        .arg(dir)
        .args(["-c"])
        .arg(dir.join("nginx.conf"))
        // One process (master_process off), no inherited pipes: killing it leaves nothing behind.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx starts");
    wait_for_listener(port);
    (KillOnDrop(child), port)
}

/// Set in the child process: the URL to fetch, the token file and the expected commit.
const CHILD_ENV: &str = "MACULA_TEST_HTTPS_CHILD";

#[test]
fn https_with_token_from_file_and_env() {
    if let Ok(args) = std::env::var(CHILD_ENV) {
        let mut args = args.split('\n');
        let mut next = || args.next().expect("child args").to_string();
        let (url, token, commit) = (next(), next(), next());
        fetch_with_tokens(&url, Path::new(&token), &commit);
        return;
    }
    let r = Repos::new();
    r.write("desired-state/app.txt", "tls\n");
    let c = r.commit_push("over https");
    let backend = HttpGit::start(r.bare.parent().expect("parent"), Some(("git", "t0ken-123")));
    let pki = tempfile::tempdir().expect("tmp");
    let (_nginx, port) = tls_proxy(pki.path(), backend.port);
    let url = format!("https://127.0.0.1:{port}/cgi-bin/git/lab.git");
    let token = pki.path().join("token");
    std::fs::write(&token, "t0ken-123\n").expect("write");

    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "source_https::https_with_token_from_file_and_env",
        ])
        .args(["--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, format!("{url}\n{}\n{c}", token.display()))
        .env("SSL_CERT_FILE", pki.path().join("ca.pem"))
        .env("MACULA_TEST_GIT_TOKEN", "t0ken-123")
        .env("MACULA_TEST_WRONG_TOKEN", "nope")
        .output()
        .expect("test binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child: {text}"
    );
}

/// In the child: a token from a file and from the environment fetch `commit`; a wrong token
/// fails without showing up in the error.
fn fetch_with_tokens(url: &str, token: &Path, commit: &str) {
    let sync = |auth: AuthConfig| {
        let state = tempfile::tempdir().expect("tmp");
        let cfg = SourceConfig {
            url: url.into(),
            reference: Some("main".into()),
            auth,
            ..Default::default()
        };
        Source::new(SourceSpec::from_config(&cfg).expect("spec"), state.path())
            .sync()
            .map(|o| o.commit)
    };
    assert_eq!(
        sync(AuthConfig {
            token_file: Some(token.into()),
            ..Default::default()
        })
        .expect("token from file"),
        commit
    );
    assert_eq!(
        sync(AuthConfig {
            token_env: Some("MACULA_TEST_GIT_TOKEN".into()),
            ..Default::default()
        })
        .expect("token from env"),
        commit
    );
    match sync(AuthConfig {
        token_env: Some("MACULA_TEST_WRONG_TOKEN".into()),
        ..Default::default()
    }) {
        Err(SourceError::Fetch { message, .. }) => {
            assert!(!message.contains("nope"), "token leaked: {message}")
        }
        other => panic!("wrong token must fail, got {other:?}"),
    }
}
