//! The message formats: a resolved sink turns an [`Event`] into the one HTTP request its
//! service documents. Pure; the bodies are compared byte for byte in `tests/it/notify.rs`.
//!
//! - `json`: the event as JSON, body signed with HMAC-SHA256 (`X-Macula-Signature-256:
//!   sha256=<hex>`, GitHub's scheme) when a key is set.
//! - `ntfy`: JSON publish to the server root (`{"topic","title","message","priority","tags"}`).
//! - `slack` / `mattermost`: incoming webhook `{"text"}` (Slack's `&<>` escaped).
//! - `discord`: webhook `{"content", "allowed_mentions": {"parse": []}}` (no @everyone from a
//!   commit subject), cut to Discord's 2000 characters.
//! - `matrix`: client-server API `PUT …/rooms/{room}/send/m.room.message/{txn}`, an `m.notice`
//!   (the msgtype for bots), the transaction id stable across retries.

use std::collections::BTreeSet;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::event::{clip, Event, EventKind, ServiceChange};
use super::request::{segment, HttpRequest, Method};
use super::template::Template;

/// Discord refuses `content` longer than this.
const DISCORD_MAX: usize = 2000;
pub const SIGNATURE_HEADER: &str = "x-macula-signature-256";
pub const EVENT_HEADER: &str = "x-macula-event";
pub const DELIVERY_HEADER: &str = "x-macula-delivery";

#[derive(Clone)]
pub enum Format {
    Json { key: Option<Vec<u8>> },
    Ntfy { token: Option<String> },
    Slack,
    Discord,
    Mattermost,
    Matrix { room: String, token: String },
}

impl Format {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Json { .. } => "json",
            Self::Ntfy { .. } => "ntfy",
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::Mattermost => "mattermost",
            Self::Matrix { .. } => "matrix",
        }
    }
}

/// A notification sink with its secrets read. `Debug` shows no secret.
#[derive(Clone)]
pub struct Sink {
    pub name: String,
    pub format: Format,
    /// Webhook URL (json/slack/discord/mattermost), ntfy topic URL, or Matrix homeserver.
    pub url: String,
    pub events: BTreeSet<EventKind>,
    pub template: Template,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.name)
            .field("format", &self.format.kind())
            .field("url", &super::request::shown_url(&self.url))
            .field("events", &self.events)
            .finish()
    }
}

/// The `json` body. Field order is the wire order.
#[derive(Serialize)]
struct JsonBody<'a> {
    event: EventKind,
    host: &'a str,
    revision: &'a str,
    author: &'a str,
    summary: &'a str,
    services: &'a [ServiceChange],
    errors: &'a [String],
    at: String,
    text: &'a str,
}

#[derive(Serialize)]
struct NtfyBody {
    topic: String,
    title: String,
    message: String,
    priority: u8,
    tags: [&'static str; 1],
}

/// Slack and Mattermost incoming webhooks.
#[derive(Serialize)]
struct Text {
    text: String,
}

#[derive(Serialize)]
struct DiscordBody {
    content: String,
    allowed_mentions: Mentions,
}

#[derive(Serialize)]
struct Mentions {
    parse: [&'static str; 0],
}

#[derive(Serialize)]
struct MatrixBody {
    msgtype: &'static str,
    body: String,
}

impl Sink {
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    pub fn request(&self, e: &Event) -> HttpRequest {
        let text = self.template.render(e);
        let agent = concat!("macula-gitops/", env!("CARGO_PKG_VERSION"));
        let req = match &self.format {
            Format::Json { key } => {
                let body = JsonBody {
                    event: e.kind,
                    host: &e.host,
                    revision: &e.revision,
                    author: &e.author,
                    summary: &e.summary,
                    services: &e.services,
                    errors: &e.errors,
                    at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    text: &text,
                };
                let mut r = HttpRequest::json(Method::Post, self.url.clone(), &body)
                    .header(EVENT_HEADER, e.kind.as_str())
                    .header(DELIVERY_HEADER, delivery_id(e));
                if let Some(key) = key {
                    let sig = crate::server::webhook::sign(&r.body, key);
                    r = r.header(SIGNATURE_HEADER, format!("sha256={sig}"));
                }
                r
            }
            Format::Ntfy { token } => {
                let (root, topic) = split_topic(&self.url);
                let body = NtfyBody {
                    topic,
                    title: format!("{}: {} {}", e.host, e.kind.headline(), e.short_revision()),
                    message: text,
                    priority: ntfy_priority(e.kind),
                    tags: [ntfy_tag(e.kind)],
                };
                let r = HttpRequest::json(Method::Post, root, &body);
                match token {
                    Some(t) => r.header("authorization", format!("Bearer {t}")),
                    None => r,
                }
            }
            Format::Slack => HttpRequest::json(
                Method::Post,
                self.url.clone(),
                &Text {
                    text: slack_escape(&text),
                },
            ),
            Format::Mattermost => HttpRequest::json(Method::Post, self.url.clone(), &Text { text }),
            Format::Discord => HttpRequest::json(
                Method::Post,
                self.url.clone(),
                &DiscordBody {
                    content: clip(&text, DISCORD_MAX - 1),
                    allowed_mentions: Mentions { parse: [] },
                },
            ),
            Format::Matrix { room, token } => {
                let url = format!(
                    "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                    self.url.trim_end_matches('/'),
                    segment(room),
                    delivery_id(e)
                );
                HttpRequest::json(
                    Method::Put,
                    url,
                    &MatrixBody {
                        msgtype: "m.notice",
                        body: text,
                    },
                )
                .header("authorization", format!("Bearer {token}"))
            }
        };
        req.header("user-agent", agent)
    }
}

/// One id per event, the same on every retry (Matrix de-duplicates a transaction by it;
/// webhook receivers can too).
pub fn delivery_id(e: &Event) -> String {
    let mut h = Sha256::new();
    h.update(e.fingerprint());
    h.update(e.at.to_rfc3339());
    hex::encode(&h.finalize()[..12])
}

/// `https://ntfy.sh/alerts` → (`https://ntfy.sh/`, `alerts`): ntfy takes JSON at its root.
fn split_topic(url: &str) -> (String, String) {
    let trimmed = url.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((root, topic)) if !root.ends_with('/') => (format!("{root}/"), topic.to_string()),
        _ => (url.to_string(), String::new()),
    }
}

/// ntfy priorities: 1 min … 3 default … 5 max.
fn ntfy_priority(k: EventKind) -> u8 {
    match k {
        EventKind::Failed | EventKind::RolledBack => 4,
        EventKind::Invalid | EventKind::Refused => 4,
        EventKind::Applied | EventKind::DriftRepaired => 3,
        EventKind::Applying | EventKind::Held => 2,
    }
}

/// ntfy shows a tag that names an emoji as that emoji.
fn ntfy_tag(k: EventKind) -> &'static str {
    match k {
        EventKind::Applying => "hourglass_flowing_sand",
        EventKind::Applied => "white_check_mark",
        EventKind::Failed => "x",
        EventKind::RolledBack => "rewind",
        EventKind::DriftRepaired => "wrench",
        EventKind::Invalid | EventKind::Refused => "no_entry",
        EventKind::Held => "hourglass",
    }
}

/// Slack reads `&`, `<`, `>` as markup (`<!channel>` pings everyone); its docs ask senders to
/// escape exactly these three.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntfy_topic_url_splits_into_root_and_topic() {
        assert_eq!(
            split_topic("https://ntfy.sh/alerts"),
            ("https://ntfy.sh/".into(), "alerts".into())
        );
        assert_eq!(
            split_topic("http://127.0.0.1:80/ntfy/lab/"),
            ("http://127.0.0.1:80/ntfy/".into(), "lab".into())
        );
        assert_eq!(slack_escape("<!channel> & co"), "&lt;!channel&gt; &amp; co");
    }
}
