//! The one test image: FROM scratch + Debian's busybox-static (applets installed in /bin) +
//! `udpecho`, a static UDP echo server (busybox has no UDP server applet). Nothing can be
//! pulled here, so every test runs this image. Its tag is derived from its content: a changed
//! recipe gets a new tag instead of silently reusing a stale image, and an unchanged one is
//! built once per machine, not per test.

use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// `STOPSIGNAL SIGKILL`: the agent stops a container gracefully before removing it, as compose
/// does, and `sleep` as PID 1 ignores SIGTERM — without it every recreate in the suite would wait
/// the 10 s grace period. A test of the graceful stop sets `stop_signal` itself.
const DOCKERFILE: &str = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCOPY udpecho /bin/udpecho\nSTOPSIGNAL SIGKILL\n";

/// `udpecho ADDR TAG`: answers every datagram with `TAG:` + the datagram.
const UDP_ECHO_SRC: &str = r#"
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let s = std::net::UdpSocket::bind(&args[1]).unwrap();
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = s.recv_from(&mut buf).unwrap();
        let mut out = format!("{}:", args[2]).into_bytes();
        out.extend_from_slice(&buf[..n]);
        let _ = s.send_to(&out, from);
    }
}
"#;

const BUSYBOX: &str = "/bin/busybox";

/// The image's tag, building it first if the engine does not have it. Blocking (docker CLI);
/// built once per test process.
pub fn busybox() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let busybox =
            std::fs::read(BUSYBOX).expect("busybox-static is installed (tests/run.sh installs it)");
        let mut h = Sha256::new();
        for part in [DOCKERFILE.as_bytes(), UDP_ECHO_SRC.as_bytes(), &busybox] {
            h.update(part);
        }
        let tag = format!("macula-test-busybox:{}", &hex::encode(h.finalize())[..12]);
        if !exists(&tag) {
            build(&tag);
        }
        tag
    })
}

fn exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn build(tag: &str) {
    let ctx = tempfile::tempdir().expect("temp dir");
    std::fs::copy(BUSYBOX, ctx.path().join("busybox")).expect("copy busybox");
    std::fs::write(ctx.path().join("Dockerfile"), DOCKERFILE).expect("write Dockerfile");
    std::fs::write(ctx.path().join("udpecho.rs"), UDP_ECHO_SRC).expect("write udpecho.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    super::run(
        Command::new(rustc)
            .args(["-O", "-C", "target-feature=+crt-static", "-o"])
            .arg(ctx.path().join("udpecho"))
            .arg(ctx.path().join("udpecho.rs")),
    );
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(ctx.path())
        .output()
        .expect("docker CLI runs");
    // Another test process may have built the same content meanwhile: that is as good.
    assert!(
        out.status.success() || exists(tag),
        "building {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
