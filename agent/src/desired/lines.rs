//! Line lookup for dotted paths in a YAML file.
//!
//! serde_yaml gives a line for syntax and type errors but not for semantic ones found later
//! (a duplicate IP, an unknown service). This index maps every key path and sequence item
//! (`services.web.ports[0]`) to the line it starts on, from yaml-rust2's marked events.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// Build the index. A file that does not parse gets an empty index: its syntax error is
    /// reported separately, with the line serde_yaml gives.
    pub fn build(text: &str) -> Self {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut b, false).is_err() {
            return Self::default();
        }
        Self { lines: b.lines }
    }

    /// Line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// Join a path and a key the way every validator in the crate spells paths.
pub fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

pub fn index(prefix: &str, i: usize) -> String {
    format!("{prefix}[{i}]")
}

enum Frame {
    Map { prefix: String, key: Option<String> },
    Seq { prefix: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Builder {
    /// Path of the node that is about to start, as seen from its parent.
    fn child_path(&self) -> String {
        match self.stack.last() {
            Some(Frame::Map {
                prefix,
                key: Some(k),
            }) => join(prefix, k),
            Some(Frame::Map { prefix, key: None }) => prefix.clone(),
            Some(Frame::Seq { prefix, index: i }) => index(prefix, *i),
            None => String::new(),
        }
    }

    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(s, ..) => {
                if let Some(Frame::Map { prefix, key }) = self.stack.last_mut() {
                    if key.is_none() {
                        self.lines.entry(join(prefix, &s)).or_insert(mark.line());
                        *key = Some(s);
                        return;
                    }
                }
                let p = self.child_path();
                self.lines.entry(p).or_insert(mark.line());
                self.value_done();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let prefix = self.child_path();
                self.lines.entry(prefix.clone()).or_insert(mark.line());
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { prefix, key: None }
                } else {
                    Frame::Seq { prefix, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Alias(_) => self.value_done(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_items() {
        let text = "services:\n  web:\n    image: x\n    ports:\n      - 80:80\n      - 81:81\n    networks:\n      infra:\n        ipv4_address: 1.2.3.4\n";
        let idx = LineIndex::build(text);
        assert_eq!(idx.line_of("services.web.image"), Some(3));
        assert_eq!(idx.line_of("services.web.ports[1]"), Some(6));
        assert_eq!(
            idx.line_of("services.web.networks.infra.ipv4_address"),
            Some(9)
        );
        // Unknown leaf falls back to the nearest ancestor.
        assert_eq!(idx.line_of("services.web.networks.infra.aliases"), Some(8));
    }
}
