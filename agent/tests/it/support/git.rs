//! Real git repositories for source and daemon tests: a bare "server" repo, a working clone
//! that pushes to it, and optional smart-HTTP serving through `git http-backend`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{free_port, run, wait_for_listener, KillOnDrop};

/// `program` run in `dir` with a fixed commit identity and `dir` as HOME, so no user or
/// system git config leaks into a test.
pub fn in_repo(dir: &Path, program: &str) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    c
}

/// `git args` in `dir`; must succeed. Returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run(in_repo(dir, "git").args(args))
}

/// A bare repo plus a work clone pushing to it, in one temp dir.
pub struct Repos {
    pub tmp: tempfile::TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Repos {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bare = tmp.path().join("server/lab.git");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&bare).expect("mkdir");
        std::fs::create_dir_all(&work).expect("mkdir");
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(
            &work,
            &["remote", "add", "origin", bare.to_str().expect("utf8")],
        );
        Self { tmp, bare, work }
    }

    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.work.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }

    /// Commit everything and push; returns the commit id.
    pub fn commit_push(&self, msg: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--allow-empty", "-m", msg]);
        git(
            &self.work,
            &["push", "-q", "origin", "HEAD:main", "--follow-tags"],
        );
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// `busybox httpd` running `git http-backend` as CGI for everything under `root`.
pub struct HttpGit {
    _server: KillOnDrop,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl HttpGit {
    /// Serve repos under `project_root` at `http://127.0.0.1:<port>/cgi-bin/git/<repo>`;
    /// with `basic = Some((user, pass))`, requests need that basic auth.
    pub fn start(project_root: &Path, basic: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cgi = dir.path().join("cgi-bin");
        std::fs::create_dir_all(&cgi).expect("mkdir");
        let script = cgi.join("git");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexport GIT_PROJECT_ROOT='{}'\nexport GIT_HTTP_EXPORT_ALL=1\nexport REMOTE_USER=test\nexec /usr/lib/git-core/git-http-backend\n",
                project_root.display()
            ),
        )
        .expect("write cgi");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut conf = String::new();
        if let Some((u, p)) = basic {
            conf.push_str(&format!("/cgi-bin:{u}:{p}\n"));
        }
        std::fs::write(dir.path().join("httpd.conf"), conf).expect("conf");
        let port = free_port();
        let child = Command::new("busybox")
            .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("httpd.conf"))
            .spawn()
            .expect("busybox httpd starts");
        wait_for_listener(port);
        Self {
            _server: KillOnDrop(child),
            port,
            _dir: dir,
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/git/{repo}", self.port)
    }
}

/// A throwaway OpenSSH server on 127.0.0.1 that accepts one client key, for ssh:// fetches.
pub struct SshServer {
    _server: KillOnDrop,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl SshServer {
    /// Returns the server, the client's private key path, and a known_hosts file for it.
    pub fn start() -> (Self, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let keygen = |name: &str| {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(name))
                .status()
                .expect("ssh-keygen");
            assert!(st.success());
        };
        keygen("host");
        keygen("client");
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).expect("copy");
        let port = free_port();
        let host_pub = std::fs::read_to_string(d.join("host.pub")).expect("read");
        let mut parts = host_pub.split_whitespace();
        let (kind, key) = (parts.next().expect("kind"), parts.next().expect("key"));
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .expect("known_hosts");
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {ak}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPidFile {pid}\n",
                host = d.join("host").display(),
                ak = d.join("authorized_keys").display(),
                pid = d.join("sshd.pid").display(),
            ),
        )
        .expect("config");
        // sshd insists on its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sshd starts");
        wait_for_listener(port);
        let key = d.join("client");
        let kh = d.join("known_hosts");
        (
            Self {
                _server: KillOnDrop(child),
                port,
                dir,
            },
            key,
            kh,
        )
    }

    pub fn url(&self, repo: &Path) -> String {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, repo.display())
    }
}

/// A server on 127.0.0.1 that accepts and then says nothing, or (with `banner`) sends ssh's
/// version line first: `ssh` then gets past `ConnectTimeout` (connect and banner) and waits in
/// the key exchange for ever.
pub fn mute_ssh_server(banner: bool) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                if banner {
                    let _ = c.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
                }
                let mut buf = [0u8; 4096];
                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    port
}
