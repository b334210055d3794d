//! Push-webhook authentication for the forges we support. Pure: headers + body + secret in,
//! verdict out. All comparisons are constant-time.

use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`
    GitHub,
    /// `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>`
    Gitea,
    /// `X-Gitlab-Token: <secret>` (GitLab sends the secret itself, not a signature)
    GitLab,
    /// `X-Signature-256: [sha256=]<hex HMAC-SHA256>`, for anything that can compute one.
    Generic,
}

impl Provider {
    pub fn from_path(s: &str) -> Option<Self> {
        match s {
            "github" => Some(Self::GitHub),
            "gitea" | "forgejo" => Some(Self::Gitea),
            "gitlab" => Some(Self::GitLab),
            "generic" | "hmac" => Some(Self::Generic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::Gitea => "gitea",
            Self::GitLab => "gitlab",
            Self::Generic => "generic",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookError {
    #[error("missing {header} header")]
    Missing { header: &'static str },
    #[error("malformed {header} header")]
    Malformed { header: &'static str },
    #[error("signature in {header} does not match")]
    Mismatch { header: &'static str },
}

type HmacSha256 = hmac::Hmac<Sha256>;

/// `Ok` only if the request carries proof of the shared `secret` for `provider`.
pub fn verify(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<(), HookError> {
    match provider {
        Provider::GitHub => verify_hmac(headers, &["x-hub-signature-256"], true, body, secret),
        Provider::Gitea => verify_hmac(
            headers,
            &["x-gitea-signature", "x-forgejo-signature"],
            false,
            body,
            secret,
        ),
        Provider::Generic => verify_hmac(headers, &["x-signature-256"], false, body, secret),
        Provider::GitLab => {
            let header = "x-gitlab-token";
            let got = headers
                .get(header)
                .ok_or(HookError::Missing { header })?
                .as_bytes();
            // Hash both sides so neither the length nor a prefix of the secret leaks by timing.
            let a = Sha256::digest(got);
            let b = Sha256::digest(secret);
            if bool::from(a.as_slice().ct_eq(b.as_slice())) {
                Ok(())
            } else {
                Err(HookError::Mismatch { header })
            }
        }
    }
}

fn verify_hmac(
    headers: &HeaderMap,
    names: &[&'static str],
    prefix_required: bool,
    body: &[u8],
    secret: &[u8],
) -> Result<(), HookError> {
    let (header, value) = names
        .iter()
        .find_map(|h| headers.get(*h).map(|v| (*h, v)))
        .ok_or(HookError::Missing { header: names[0] })?;
    let value = value
        .to_str()
        .map_err(|_| HookError::Malformed { header })?
        .trim();
    let hex_sig = match value.strip_prefix("sha256=") {
        Some(h) => h,
        None if prefix_required => return Err(HookError::Malformed { header }),
        None => value,
    };
    let sig = hex::decode(hex_sig).map_err(|_| HookError::Malformed { header })?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&sig)
        .map_err(|_| HookError::Mismatch { header })
}

/// The signature a sender computes; used by tests and `macula-gitops` clients.
pub fn sign(body: &[u8], secret: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        m
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;
    const SECRET: &[u8] = b"It's a Secret to Everybody";

    #[test]
    fn github_known_vector() {
        // From GitHub's docs ("Validating webhook deliveries").
        let sig = sign(b"Hello, World!", SECRET);
        assert_eq!(
            sig,
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn each_provider_accepts_right_and_rejects_wrong() {
        let good = sign(BODY, SECRET);
        let bad = sign(BODY, b"other");
        let cases: Vec<(Provider, HeaderMap, HeaderMap)> = vec![
            (
                Provider::GitHub,
                h(&[("x-hub-signature-256", &format!("sha256={good}"))]),
                h(&[("x-hub-signature-256", &format!("sha256={bad}"))]),
            ),
            (
                Provider::Gitea,
                h(&[("x-gitea-signature", &good)]),
                h(&[("x-gitea-signature", &bad)]),
            ),
            (
                Provider::Gitea,
                h(&[("x-forgejo-signature", &good)]),
                h(&[("x-forgejo-signature", &bad)]),
            ),
            (
                Provider::GitLab,
                h(&[("x-gitlab-token", "It's a Secret to Everybody")]),
                h(&[("x-gitlab-token", "It's a Secret")]),
            ),
            (
                Provider::Generic,
                h(&[("x-signature-256", &good)]),
                h(&[("x-signature-256", &format!("sha256={bad}"))]),
            ),
        ];
        for (p, ok, wrong) in cases {
            assert_eq!(verify(p, &ok, BODY, SECRET), Ok(()), "{p:?}");
            assert!(matches!(
                verify(p, &wrong, BODY, SECRET),
                Err(HookError::Mismatch { .. })
            ));
            assert!(matches!(
                verify(p, &HeaderMap::new(), BODY, SECRET),
                Err(HookError::Missing { .. })
            ));
            // Right signature, tampered body.
            if p != Provider::GitLab {
                assert!(verify(p, &ok, b"{}", SECRET).is_err());
            }
        }
    }

    #[test]
    fn malformed_signatures() {
        let good = sign(BODY, SECRET);
        // GitHub requires the algorithm prefix.
        let no_prefix = h(&[("x-hub-signature-256", &good)]);
        assert!(matches!(
            verify(Provider::GitHub, &no_prefix, BODY, SECRET),
            Err(HookError::Malformed { .. })
        ));
        let not_hex = h(&[("x-gitea-signature", "zz")]);
        assert!(matches!(
            verify(Provider::Gitea, &not_hex, BODY, SECRET),
            Err(HookError::Malformed { .. })
        ));
        let truncated = h(&[("x-gitea-signature", &good[..20])]);
        assert!(verify(Provider::Gitea, &truncated, BODY, SECRET).is_err());
    }
}
