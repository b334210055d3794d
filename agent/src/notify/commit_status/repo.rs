//! Which repository and API a source URL belongs to: `https://github.com/o/r.git`,
//! `ssh://git@host:2222/o/r.git`, `git@host:group/sub/project.git` → host + repository path.

/// `(host, path)` of a git URL, the path without `.git` and surrounding slashes; credentials
/// and ports are dropped (an ssh port is not the API's).
pub fn parse_remote(url: &str) -> Option<(String, String)> {
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => {
            let (authority, path) = rest.split_once('/')?;
            let host = authority.rsplit('@').next()?;
            // `[::1]:8080` keeps its brackets; `host:22` loses the port.
            let host = match host.rsplit_once(':') {
                Some((h, port)) if !h.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => h,
                _ => host,
            };
            (host.to_string(), path)
        }
        // scp-like `git@host:path`
        None => {
            let (authority, path) = url.split_once(':')?;
            if authority.contains('/') {
                return None;
            }
            (authority.rsplit('@').next()?.to_string(), path)
        }
    };
    let path = path.trim_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    (!host.is_empty() && !path.is_empty()).then(|| (host, path.to_string()))
}

/// The URL's origin as the API is reached: http stays http (with its port, for a forge on a lab
/// box), everything else is https on the default port.
pub fn web_origin(url: &str) -> Option<String> {
    let (host, _) = parse_remote(url)?;
    if let Some(rest) = url.strip_prefix("http://") {
        let authority = rest.split('/').next()?;
        let authority = authority.rsplit('@').next()?;
        return Some(format!("http://{authority}"));
    }
    Some(format!("https://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_remote_form_names_host_and_repository() {
        let p = |u: &str| parse_remote(u).map(|(h, p)| format!("{h} {p}"));
        assert_eq!(
            p("https://github.com/o/r.git").as_deref(),
            Some("github.com o/r")
        );
        assert_eq!(
            p("https://tok:x@gitlab.com/g/sub/p").as_deref(),
            Some("gitlab.com g/sub/p")
        );
        assert_eq!(
            p("ssh://git@git.lab:2222/o/r.git").as_deref(),
            Some("git.lab o/r")
        );
        assert_eq!(
            p("git@github.com:o/r.git").as_deref(),
            Some("github.com o/r")
        );
        assert_eq!(
            p("http://127.0.0.1:3000/o/r/").as_deref(),
            Some("127.0.0.1 o/r")
        );
        assert_eq!(p("/srv/repo"), None);
        assert_eq!(p("file:///srv/repo").as_deref(), None);
        assert_eq!(
            web_origin("http://u:p@127.0.0.1:3000/o/r").as_deref(),
            Some("http://127.0.0.1:3000")
        );
        assert_eq!(
            web_origin("git@gitea.lab:o/r.git").as_deref(),
            Some("https://gitea.lab")
        );
    }
}
