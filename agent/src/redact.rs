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

#[cfg(test)]
mod tests {
    use super::redact;

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
}
