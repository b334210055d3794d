//! Message templates: text with `{placeholder}`s, `{{` and `}}` for literal braces. Parsed
//! when the config is loaded, so an unknown placeholder is a config error, not a blank in a
//! message at 3 a.m.

use super::event::Event;

/// The placeholders a template may use, in the order the README lists them.
pub const PLACEHOLDERS: [&str; 9] = [
    "host", "event", "headline", "revision", "short", "author", "summary", "services", "errors",
];

/// The text every sink sends unless its `template:` says otherwise.
pub const DEFAULT: &str = "{host}: {headline} {short} \"{summary}\"{author}{services}{errors}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Default for Template {
    fn default() -> Self {
        Self::parse(DEFAULT).expect("the default template parses")
    }
}

impl Template {
    /// Err names what is wrong and where (character offset).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("unclosed `{{` at character {i}"))?;
                    let name = rest[..end].trim();
                    let var = PLACEHOLDERS.iter().find(|p| **p == name).ok_or_else(|| {
                        format!(
                            "unknown placeholder {{{name}}} at character {i}; expected one of {}",
                            PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                        )
                    })?;
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(var));
                    for _ in 0..=end {
                        chars.next();
                    }
                }
                '}' => return Err(format!("lone `}}` at character {i} (write `}}}}`)")),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Self { parts })
    }

    pub fn render(&self, e: &Event) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(&value(v, e)),
            }
        }
        out
    }
}

/// A placeholder's text. `{author}` reads " by Name <mail>" (empty when unknown) so the default
/// template needs no conditionals; `{services}`/`{errors}` are `\n- item` lines.
fn value(var: &str, e: &Event) -> String {
    match var {
        "host" => e.host.clone(),
        "event" => e.kind.as_str().into(),
        "headline" => e.kind.headline().into(),
        "revision" => e.revision.clone(),
        "short" => e.short_revision(),
        "author" if e.author.is_empty() => String::new(),
        "author" => format!(" by {}", e.author),
        "summary" => e.summary.clone(),
        "services" => e.services_text(),
        "errors" => e.errors_text(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::{EventKind, ServiceChange};

    fn event() -> Event {
        let mut e = Event::new(EventKind::Failed, "lab-01", "1a2b3c4d5e6f").with_errors(["boom"]);
        e.author = "Ann <ann@example.org>".into();
        e.summary = "web: bump image".into();
        e.services = vec![ServiceChange {
            service: "apps/web".into(),
            change: "unhealthy".into(),
        }];
        e
    }

    #[test]
    fn default_template_reads_as_a_sentence_with_lists() {
        assert_eq!(
            Template::default().render(&event()),
            "lab-01: failed to apply 1a2b3c4 \"web: bump image\" by Ann <ann@example.org>\n- apps/web: unhealthy\n- boom"
        );
    }

    #[test]
    fn a_local_directory_edit_reads_as_a_directory_not_a_commit() {
        let mut e = Event::new(EventKind::Applied, "lab-01", "dir:0123456789abcdef0123");
        e.summary = "local directory /srv/desired-state".into();
        assert_eq!(
            Template::default().render(&e),
            "lab-01: applied dir:0123456789ab \"local directory /srv/desired-state\""
        );
        let t = Template::parse("{short} {revision}").expect("parses");
        assert_eq!(t.render(&e), "dir:0123456789ab dir:0123456789abcdef0123");
    }

    #[test]
    fn placeholders_braces_and_mistakes() {
        let t = Template::parse("{{{event}}} {revision} on { host }").expect("parses");
        assert_eq!(t.render(&event()), "{failed} 1a2b3c4d5e6f on lab-01");
        let err = Template::parse("hi {hots}").expect_err("unknown");
        assert!(
            err.starts_with(
                "unknown placeholder {hots} at character 3; expected one of {host}, {event}"
            ),
            "{err}"
        );
        assert!(Template::parse("{host")
            .expect_err("unclosed")
            .contains("unclosed"));
        assert!(Template::parse("a } b")
            .expect_err("lone")
            .contains("lone `}`"));
    }
}
