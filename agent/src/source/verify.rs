//! Signed-revision verification: the commit (`mode: head`) or the annotated tag (`mode: tag`)
//! must carry a signature by one of the configured keys, OpenPGP or SSH.
//!
//! The cryptography is the system's, as git itself does it: `ssh-keygen -Y verify` for SSH
//! signatures and `gpgv` against a throwaway keyring for OpenPGP, so no key material or
//! trust database of the host is consulted or modified.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::config::VerifyConfig;

/// The trusted keys, split by kind.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    ssh: Vec<String>,
    /// Armored OpenPGP public key blocks.
    pgp: Vec<String>,
}

impl Keys {
    pub fn load(cfg: &VerifyConfig) -> Result<Self, String> {
        let mut keys = Keys::default();
        for k in &cfg.keys {
            let text = if Path::new(k).is_file() {
                std::fs::read_to_string(k).map_err(|e| format!("key {k}: {e}"))?
            } else {
                k.clone()
            };
            if text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
                keys.pgp.push(text);
            } else {
                let lines: Vec<_> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| {
                        l.starts_with("ssh-") || l.starts_with("ecdsa-") || l.starts_with("sk-")
                    })
                    .map(str::to_string)
                    .collect();
                if lines.is_empty() {
                    return Err(format!(
                        "key {k:?} is neither an SSH public key nor an armored OpenPGP key"
                    ));
                }
                keys.ssh.extend(lines);
            }
        }
        if keys.ssh.is_empty() && keys.pgp.is_empty() {
            return Err("source.verify.keys is empty".into());
        }
        Ok(keys)
    }
}

/// Split a raw commit into (signed payload, signature): the `gpgsig` header is cut out.
pub fn split_commit(raw: &[u8]) -> Option<(Vec<u8>, String)> {
    let text = std::str::from_utf8(raw).ok()?;
    let (headers, rest) = text.split_once("\n\n")?;
    let mut payload = String::new();
    let mut sig: Option<String> = None;
    let mut in_sig = false;
    for line in headers.split('\n') {
        if let Some(v) = line.strip_prefix("gpgsig ") {
            sig = Some(v.to_string());
            in_sig = true;
            continue;
        }
        if in_sig {
            if let Some(cont) = line.strip_prefix(' ') {
                let s = sig.as_mut().expect("set when in_sig");
                s.push('\n');
                s.push_str(cont);
                continue;
            }
            in_sig = false;
        }
        payload.push_str(line);
        payload.push('\n');
    }
    payload.push('\n');
    payload.push_str(rest);
    let mut sig = sig?;
    sig.push('\n');
    Some((payload.into_bytes(), sig))
}

/// Split a raw tag into (payload, signature): the signature is appended to the message.
pub fn split_tag(raw: &[u8]) -> Option<(Vec<u8>, String)> {
    let text = std::str::from_utf8(raw).ok()?;
    let at = [
        "-----BEGIN PGP SIGNATURE-----",
        "-----BEGIN SSH SIGNATURE-----",
    ]
    .iter()
    .filter_map(|m| text.find(m))
    .min()?;
    Some((text.as_bytes()[..at].to_vec(), text[at..].to_string()))
}

/// Verify `sig` over `payload` against `keys`. Err = why it is not trusted.
pub fn verify_signature(payload: &[u8], sig: &str, keys: &Keys) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let sig_path = dir.path().join("sig");
    std::fs::write(&sig_path, sig).map_err(|e| e.to_string())?;
    if sig.starts_with("-----BEGIN SSH SIGNATURE-----") {
        if keys.ssh.is_empty() {
            return Err("SSH signature, but no SSH keys are trusted".into());
        }
        let signers = dir.path().join("allowed_signers");
        let text: String = keys
            .ssh
            .iter()
            .map(|k| format!("macula-gitops namespaces=\"git\" {k}\n"))
            .collect();
        std::fs::write(&signers, text).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-Y", "verify", "-n", "git", "-I", "macula-gitops", "-f"])
            .arg(&signers)
            .arg("-s")
            .arg(&sig_path);
        capture_with_stdin(cmd, payload, "ssh-keygen")
            .map(|_| ())
            .map_err(|_| ssh_cause(&sig_path, payload))
    } else if sig.starts_with("-----BEGIN PGP SIGNATURE-----") {
        if keys.pgp.is_empty() {
            return Err("OpenPGP signature, but no OpenPGP keys are trusted".into());
        }
        let keyring = dir.path().join("trusted.gpg");
        let mut ring = Vec::new();
        for k in &keys.pgp {
            let mut cmd = Command::new("gpg");
            cmd.arg("--homedir").arg(dir.path()).arg("--dearmor");
            ring.extend(capture_with_stdin(cmd, k.as_bytes(), "gpg --dearmor")?);
        }
        std::fs::write(&keyring, ring).map_err(|e| e.to_string())?;
        let payload_path = dir.path().join("payload");
        std::fs::write(&payload_path, payload).map_err(|e| e.to_string())?;
        let out = Command::new("gpgv")
            .arg("--homedir")
            .arg(dir.path())
            .arg("--keyring")
            .arg(&keyring)
            .arg(&sig_path)
            .arg(&payload_path)
            .output()
            .map_err(|e| format!("running gpgv: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "OpenPGP signature not valid for a trusted key: {}",
                last_line(&out.stderr)
            ))
        }
    } else {
        Err("unknown signature format".into())
    }
}

fn last_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

fn capture_with_stdin(mut cmd: Command, input: &[u8], what: &str) -> Result<Vec<u8>, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {what}: {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .map_err(|e| format!("{what}: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        // ssh-keygen reports on stdout, gpg on stderr; an empty cause helps nobody.
        let cause = [last_line(&out.stderr), last_line(&out.stdout)]
            .into_iter()
            .find(|l| !l.is_empty())
            .unwrap_or_else(|| out.status.to_string());
        Err(format!("{what}: {cause}"))
    }
}

/// Why `ssh-keygen -Y verify` refused: it only says "Could not verify signature.", so check the
/// signature without the trust list to tell an untrusted signer from a broken signature.
fn ssh_cause(sig_path: &std::path::Path, payload: &[u8]) -> String {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-Y", "check-novalidate", "-n", "git", "-s"])
        .arg(sig_path);
    match capture_with_stdin(cmd, payload, "ssh-keygen -Y check-novalidate") {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out);
            let key = text
                .split_once(" with ")
                .map(|(_, k)| k.trim().to_string())
                .unwrap_or_else(|| text.trim().to_string());
            format!("signed with {key}, which is not one of source.verify.keys")
        }
        Err(e) => format!("SSH signature does not match the signed data ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_signature_is_cut_out_of_the_payload() {
        let raw = b"tree abc\nparent def\nauthor a <a> 1 +0000\ncommitter a <a> 1 +0000\ngpgsig -----BEGIN SSH SIGNATURE-----\n U1NIU0lH\n -----END SSH SIGNATURE-----\n\nmessage\n";
        let (payload, sig) = split_commit(raw).expect("signed");
        assert_eq!(
            String::from_utf8(payload).expect("utf8"),
            "tree abc\nparent def\nauthor a <a> 1 +0000\ncommitter a <a> 1 +0000\n\nmessage\n"
        );
        assert_eq!(
            sig,
            "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n"
        );
        assert!(split_commit(b"tree abc\n\nunsigned\n").is_none());
    }

    #[test]
    fn tag_signature_is_the_tail() {
        let raw = b"object abc\ntype commit\ntag v1\ntagger t <t> 1 +0000\n\nrelease\n-----BEGIN PGP SIGNATURE-----\nxyz\n-----END PGP SIGNATURE-----\n";
        let (payload, sig) = split_tag(raw).expect("signed");
        assert!(payload.ends_with(b"release\n"));
        assert!(sig.starts_with("-----BEGIN PGP SIGNATURE-----"));
    }
}
