//! The one place credentials are taken out of text before it is shown. Every URL the agent
//! logs, reports in `/status`, metrics or an error goes through [`redact`]; error chains from
//! gix can quote the URL, so whole messages go through it too.

use std::borrow::Cow;

const MASK: &str = "***";

/// `text` with the userinfo of every `scheme://user:pass@host` in it replaced by `***`
/// (the user name alone can be a token, as in `https://<token>@github.com`).
pub fn redact(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first path/query/fragment char or whitespace/quote.
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str(MASK);
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `url` without the secret part of its userinfo, for handing to another system (a cluster's
/// GitRepository) that gets credentials its own way (a Secret). http(s) lose the whole userinfo
/// (a user name alone can be a token); ssh keeps the login user (`ssh://git@host/…` needs it)
/// and loses only a password.
pub fn without_credentials(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return Cow::Borrowed(url);
    };
    let (userinfo, tail) = (&rest[..at], &rest[at + 1..]);
    match (scheme, userinfo.split_once(':')) {
        ("ssh", None) => Cow::Borrowed(url),
        ("ssh", Some((user, _))) => Cow::Owned(format!("{scheme}://{user}@{tail}")),
        _ => Cow::Owned(format!("{scheme}://{tail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, without_credentials};

    #[test]
    fn userinfo_is_masked_wherever_a_url_appears() {
        assert_eq!(
            redact("http://bot:pass@127.0.0.1:8080/repo.git"),
            "http://***@127.0.0.1:8080/repo.git"
        );
        assert_eq!(
            redact("https://ghp_tok@github.com/o/r"),
            "https://***@github.com/o/r"
        );
        assert_eq!(
            redact("fetching http://u:p@h/x: I/O error: http://u:p@h/x/info/refs?service=git-upload-pack"),
            "fetching http://***@h/x: I/O error: http://***@h/x/info/refs?service=git-upload-pack"
        );
        assert_eq!(
            redact("\"https://a:b@c\" and ssh://git@host/r"),
            "\"https://***@c\" and ssh://***@host/r"
        );
        assert_eq!(redact("https://h/p@q"), "https://h/p@q");
        assert_eq!(redact("git@github.com:o/r.git"), "git@github.com:o/r.git");
        assert_eq!(redact("/srv/repo"), "/srv/repo");
        assert_eq!(redact("http://u:p@h"), "http://***@h");
    }

    #[test]
    fn credentials_leave_a_url_handed_on_but_the_ssh_login_stays() {
        assert_eq!(
            without_credentials("https://bot:pass@git.example/o/r.git"),
            "https://git.example/o/r.git"
        );
        assert_eq!(
            without_credentials("https://ghp_tok@github.com/o/r"),
            "https://github.com/o/r"
        );
        assert_eq!(
            without_credentials("ssh://git:pw@host:22/r.git"),
            "ssh://git@host:22/r.git"
        );
        assert_eq!(
            without_credentials("ssh://git@host/r.git"),
            "ssh://git@host/r.git"
        );
        assert_eq!(without_credentials("https://h/p@q"), "https://h/p@q");
    }
}
