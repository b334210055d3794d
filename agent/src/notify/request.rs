//! One HTTP call a sink or commit-status provider wants made: built purely from an event (so
//! tests compare it byte for byte), sent by a [`super::deliver::Transport`].
//!
//! The URL and some headers carry secrets (a Slack webhook URL *is* its token); `Debug` and
//! [`HttpRequest::shown`] print only the scheme and host.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
}

#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A JSON body; bodies are structs, so the key order on the wire is their field order.
    pub fn json(method: Method, url: String, body: &impl serde::Serialize) -> Self {
        Self {
            method,
            url,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).expect("plain structs serialise"),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// `scheme://host[:port]` of the URL: what logs, status and errors may show.
    pub fn shown(&self) -> String {
        shown_url(&self.url)
    }
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {} ({} bytes)",
            self.method,
            self.shown(),
            self.body.len()
        )
    }
}

/// The origin of `url` without userinfo, path or query — those can hold tokens.
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            match u.port() {
                Some(p) => format!("{}://{host}:{p}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// `text` as one URL path segment: everything but ASCII letters and digits percent-encoded
/// (a Matrix room id `!r:example.org`, a GitLab project path `group/project`).
pub fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_origin_is_ever_shown() {
        let r = HttpRequest::json(
            Method::Post,
            "https://u:p@hooks.slack.com/services/T0/B0/secret?x=1".into(),
            &serde_json::Map::new(),
        );
        assert_eq!(r.shown(), "https://hooks.slack.com");
        assert_eq!(format!("{r:?}"), "Post https://hooks.slack.com (2 bytes)");
        assert_eq!(shown_url("http://127.0.0.1:9/x"), "http://127.0.0.1:9");
        assert_eq!(segment("!r:ex.org"), "%21r%3Aex%2Eorg");
    }
}
