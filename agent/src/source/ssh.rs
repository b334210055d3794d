//! Git over ssh with an `ssh` child the fetch owns.
//!
//! gix would spawn `ssh` itself and keep the child out of reach: a fetch the daemon abandons at
//! `source.timeouts.total` (`Daemon::start_fetch`) would leave that `ssh` and the thread reading
//! from it running for as long as the server keeps the connection open. Here the fetch spawns
//! `ssh` in a process group of its own, a watchdog kills that group at the `total` deadline (the
//! read then fails and the thread ends), and dropping the transport kills it too (a fetch that
//! ended early, or failed, leaves no `ssh` or `ProxyCommand` behind). `connect` and `idle` are
//! ssh's own `ConnectTimeout` (TCP connect and banner exchange) and
//! `ServerAliveInterval`/`ServerAliveCountMax=1` (a server silent for `idle` is asked once, and
//! dropped when it stays silent for another `idle`). A fetch still running when the agent
//! exits (abandoned in a blocking thread) would leave its group behind: `stop_all`, called by
//! `main` once the runtime is shut down, kills every group still registered in `LIVE`.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::Read;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gix::bstr::BStr;
use gix::protocol::transport::client::{self, blocking_io, git};
use gix::protocol::transport::{Protocol, Service};
use gix::url::ArgumentSafety;

use super::SourceSpec;

type Conn = git::blocking_io::Connection<Box<dyn Read + Send>, ChildStdin>;

/// The process groups of the `ssh` children not yet reaped. A group is removed under this lock
/// before its leader is reaped, so a group id found here always names our `ssh`.
static LIVE: Mutex<std::collections::BTreeSet<i32>> = Mutex::new(std::collections::BTreeSet::new());

/// Kill every `ssh` a fetch still runs (the agent is exiting: such a fetch was abandoned).
pub fn stop_all() {
    if let Ok(live) = LIVE.lock() {
        for pgid in live.iter() {
            kill_group(nix::unistd::Pid::from_raw(*pgid));
        }
    }
}

/// What a failed ssh fetch leaves to explain it: whether the deadline ended it, and the
/// last lines `ssh` wrote to stderr ("Host key verification failed.", "Permission denied").
#[derive(Clone, Default)]
pub(super) struct Probe {
    expired: Arc<AtomicBool>,
    stderr: Arc<Mutex<String>>,
    reader: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Probe {
    pub(super) fn expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }

    /// What `ssh` wrote, complete once the transport is dropped (its stderr is then closed).
    pub(super) fn stderr(&self) -> String {
        let reader = self.reader.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = reader {
            let _ = r.join();
        }
        self.stderr
            .lock()
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
}

/// The `ssh` command line before the destination: batch mode (a daemon never prompts), the
/// key and known hosts of `source.auth`, and the deadlines of `source.timeouts`.
pub(super) fn ssh_args(spec: &SourceSpec) -> Vec<String> {
    let secs = |d: Duration| d.as_secs_f64().ceil().max(1.0) as u64;
    let t = spec.timeouts;
    let mut args: Vec<String> = vec![
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        format!("ConnectTimeout={}", secs(t.connect)),
        "-o".into(),
        format!("ServerAliveInterval={}", secs(t.idle)),
        "-o".into(),
        "ServerAliveCountMax=1".into(),
    ];
    if let Some(k) = &spec.ssh_key {
        args.extend(["-i".into(), k.display().to_string()]);
        args.extend(["-o".into(), "IdentitiesOnly=yes".into()]);
    }
    if let Some(k) = &spec.known_hosts {
        args.extend([
            "-o".into(),
            format!("UserKnownHostsFile={}", k.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
        ]);
    }
    args
}

/// A gix transport over an `ssh` child in its own process group, killed at `deadline` or
/// when the transport is dropped.
pub(super) struct SshTransport {
    url: gix::Url,
    program: OsString,
    args: Vec<String>,
    deadline: Instant,
    probe: Probe,
    conn: Option<Conn>,
    child: Option<Child>,
    watchdog: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl SshTransport {
    pub(super) fn new(url: gix::Url, spec: &SourceSpec, deadline: Instant) -> Self {
        Self {
            url,
            program: "ssh".into(),
            args: ssh_args(spec),
            deadline,
            probe: Probe::default(),
            conn: None,
            child: None,
            watchdog: None,
        }
    }

    pub(super) fn probe(&self) -> Probe {
        self.probe.clone()
    }

    /// `ssh [options] [-p port] [user@]host "git-upload-pack '<path>'"`, as git invokes it.
    fn command(&self, service: Service) -> Result<Command, client::Error> {
        let ambiguous = |what: &str, v: &str| {
            client::Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("ssh {what} {v:?} could be mistaken for an option"),
            ))
        };
        let host = match self.url.host_as_argument() {
            ArgumentSafety::Usable(h) => h.to_string(),
            ArgumentSafety::Dangerous(h) => return Err(ambiguous("host", h)),
            ArgumentSafety::Absent => return Err(ambiguous("host", "")),
        };
        let dest = match self.url.user_as_argument() {
            ArgumentSafety::Usable(u) => format!("{u}@{host}"),
            ArgumentSafety::Dangerous(u) => return Err(ambiguous("user", u)),
            ArgumentSafety::Absent => host,
        };
        let path = gix::url::expand_path::for_shell(self.url.path.clone());
        let remote = format!("{} {}", service.as_str(), gix::quote::single(path.as_ref()));
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .args(["-o", "SendEnv=GIT_PROTOCOL"])
            .env("GIT_PROTOCOL", "version=2")
            // English messages, so the ones kept in the error read the same everywhere.
            .env("LANG", "C")
            .env("LC_ALL", "C");
        if let Some(port) = self.url.port {
            cmd.arg(format!("-p{port}"));
        }
        cmd.arg(dest).arg(remote);
        Ok(cmd)
    }

    fn spawn(&mut self, service: Service) -> Result<(), client::Error> {
        use std::os::unix::process::CommandExt;
        self.stop();
        let mut cmd = self.command(service)?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: the kill reaches a `ProxyCommand` too, and a Ctrl-C meant for the
            // agent does not end the fetch behind its back.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| client::Error::InvokeProgram {
            source,
            command: self.program.clone(),
        })?;
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        if let Ok(mut live) = LIVE.lock() {
            live.insert(pgid.as_raw());
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let left = self.deadline.saturating_duration_since(Instant::now());
        let expired = self.probe.expired.clone();
        let watchdog = std::thread::Builder::new()
            .name("ssh deadline".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(left) {
                    expired.store(true, Ordering::SeqCst);
                    kill_group(pgid);
                }
            })
            .map_err(client::Error::Io)?;
        self.watchdog = Some((stop, watchdog));
        if let Some(err) = child.stderr.take() {
            let keep = self.probe.stderr.clone();
            let reader = std::thread::spawn(move || keep_tail(err, &keep));
            if let Ok(mut r) = self.probe.reader.lock() {
                *r = Some(reader);
            }
        }
        let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
            return Err(client::Error::Io(std::io::Error::other(
                "ssh without pipes",
            )));
        };
        let stdout: Box<dyn Read + Send> = Box::new(stdout);
        self.conn = Some(git::blocking_io::Connection::new(
            stdout,
            stdin,
            Protocol::V2,
            self.url.path.clone(),
            None::<(String, Option<u16>)>,
            git::ConnectMode::Process,
            false,
        ));
        self.child = Some(child);
        Ok(())
    }

    /// Ends the watchdog, then the `ssh` group, then reaps it (in that order: see `kill_group`).
    fn stop(&mut self) {
        if let Some((stop, watchdog)) = self.watchdog.take() {
            let _ = stop.send(());
            let _ = watchdog.join();
        }
        self.conn = None;
        if let Some(mut child) = self.child.take() {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            kill_group(pgid);
            if let Ok(mut live) = LIVE.lock() {
                live.remove(&pgid.as_raw());
            }
            let _ = child.wait();
        }
    }
}

/// SIGKILL to the whole group. The leader is reaped only in `Drop`, after the watchdog has
/// stopped, so the group id still names our `ssh` whenever this runs.
fn kill_group(pgid: nix::unistd::Pid) {
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
}

/// Keeps the last 2 KiB of what `ssh` writes to stderr.
fn keep_tail(mut from: impl Read, into: &Mutex<String>) {
    const KEEP: usize = 2048;
    let mut buf = [0u8; 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        let Ok(mut s) = into.lock() else { break };
        s.push_str(&String::from_utf8_lossy(&buf[..n]));
        if s.len() > KEEP {
            let mut cut = s.len() - KEEP;
            while !s.is_char_boundary(cut) {
                cut += 1;
            }
            s.drain(..cut);
        }
    }
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        self.stop();
    }
}

impl client::TransportWithoutIO for SshTransport {
    fn to_url(&self) -> Cow<'_, BStr> {
        Cow::Owned(self.url.to_bstring())
    }

    fn connection_persists_across_multiple_requests(&self) -> bool {
        true
    }

    fn configure(&mut self, _config: &dyn std::any::Any) -> gix::error::Result {
        Ok(())
    }
}

impl blocking_io::Transport for SshTransport {
    fn handshake<'a>(
        &mut self,
        service: Service,
        extra_parameters: &'a [(&'a str, Option<&'a str>)],
    ) -> Result<blocking_io::SetServiceResponse<'_>, client::Error> {
        self.spawn(service)?;
        self.conn
            .as_mut()
            .ok_or(client::Error::MissingHandshake)?
            .handshake(service, extra_parameters)
    }

    fn request(
        &mut self,
        write_mode: client::WriteMode,
        on_into_read: client::MessageKind,
        trace: bool,
    ) -> Result<blocking_io::RequestWriter<'_>, client::Error> {
        self.conn
            .as_mut()
            .ok_or(client::Error::MissingHandshake)?
            .request(write_mode, on_into_read, trace)
    }
}
