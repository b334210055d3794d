//! One pass over granit-parser's marked events builds the value, its line index, and
//! interpolates every scalar, within the limits.
//!
//! Why granit-parser (the maintained fork of saphyr-parser, itself yaml-rust2's successor, with
//! the same event API): by default it accepts what PyYAML/libyaml accept and the YAML spec does
//! not, notably a flow collection whose entries or closing `]` are indented no deeper than its
//! key (`test: [\n  "CMD",\n]` in getsentry/self-hosted's compose file). yaml-rust2 0.13.2 and
//! saphyr-parser 0.3.4 refuse it with "invalid indentation"; docker compose loads it.
//!
//! Why not `serde_yaml::from_str`: it expands aliases without bound (a 260 KB alias bomb took
//! 2.3 GB), gives no line for semantic errors, and cannot tell a plain `${N}` (to be typed
//! after interpolation, as Compose types `retries: ${N}`) from a quoted one.
//!
//! YAML as Compose reads it: anchors and aliases; merge keys `<<: *a` and `<<: [*a, *b]`
//! (explicit keys win, then the earlier source, as YAML 1.1 says); scalars typed as serde_yaml
//! types them (YAML 1.2 core schema), so every existing serde type reads the same values.

use std::collections::HashMap;

use granit_parser::{Event, Marker, Options, Parser, ScalarStyle as TScalarStyle, Tag};
use serde_yaml::{Mapping, Number, Value};

use super::interpolate::Env;
use super::lines::{self, Kids, LineIndex, Node};
use super::{InputError, Limits, Problem};

/// What one file parsed into. `problems` are located and do not stop the parse (a bad
/// interpolation, a duplicate key); a limit or a syntax error does (`InputError`).
pub(crate) struct Built {
    pub value: Value,
    pub lines: LineIndex,
    pub problems: Vec<Problem>,
}

struct Anchor {
    value: Value,
    node: Node,
    /// Nodes in the anchored subtree (aliases inside it counted expanded).
    count: usize,
}

enum Shape {
    Map {
        map: Mapping,
        entries: Vec<(String, Node)>,
        key: Option<Key>,
        /// Sources of `<<`, applied when the mapping ends so explicit keys win wherever written.
        merges: Vec<(Value, Node, u32)>,
    },
    Seq {
        items: Vec<Value>,
        nodes: Vec<Node>,
    },
}

struct Key {
    text: String,
    value: Value,
    line: u32,
    merge: bool,
}

struct Frame {
    shape: Shape,
    anchor: usize,
    line: u32,
    nodes_before: usize,
    /// `!reset` / `!override` on this collection.
    merge_tag: Option<&'static str>,
}

struct Builder<'a> {
    file: &'a str,
    env: Option<&'a Env>,
    limits: &'a Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchor>,
    nodes: usize,
    alias_nodes: usize,
    root: Option<(Value, Node)>,
    problems: Vec<Problem>,
}

/// Parse `text` (BOM already removed) as one YAML document.
pub(crate) fn build(
    file: &str,
    text: &str,
    env: Option<&Env>,
    limits: &Limits,
) -> Result<Built, InputError> {
    let mut b = Builder {
        file,
        env,
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        alias_nodes: 0,
        root: None,
        problems: Vec::new(),
    };
    // Comments are not read; PyYAML-compatible (non-strict) indentation is the default.
    let mut options = Options::default();
    options.emit_comments = false;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut documents = 0;
    while let Some(next) = parser.next_event() {
        let (ev, span) = next.map_err(|e| InputError::Syntax {
            file: file.to_string(),
            line: e.marker().line(),
            message: e.info(),
        })?;
        let mark = span.start;
        match ev {
            Event::StreamEnd => break,
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(InputError::MultipleDocuments {
                        file: file.to_string(),
                        line: mark.line(),
                    });
                }
            }
            Event::StreamStart | Event::DocumentEnd => {}
            ev => b.event(ev, mark)?,
        }
    }
    let (value, node) = b.root.take().unwrap_or((Value::Null, Node::leaf(1)));
    Ok(Built {
        value,
        lines: LineIndex::new(Some(node)),
        problems: b.problems,
    })
}

impl Builder<'_> {
    fn event(&mut self, ev: Event, mark: Marker) -> Result<(), InputError> {
        let line = mark.line() as u32;
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let (text, mut tag) = (text.into_owned(), tag.map(|t| t.into_owned()));
                if self.wants_key() {
                    return self.key(text, style, tag, line);
                }
                self.count(1, line)?;
                // `!reset`/`!override` mark the node for Compose's merge; the scalar under
                // the tag reads as if untagged.
                let merge_tag = tag.as_ref().and_then(merge_tag);
                if merge_tag.is_some() {
                    tag = None;
                }
                let value = self.scalar(text, style, tag.as_ref(), line)?;
                let value = with_merge_tag(value, merge_tag);
                let node = Node::leaf(line);
                if anchor > 0 {
                    self.remember(anchor, &value, &node, 1, line)?;
                }
                self.value(value, node);
                Ok(())
            }
            Event::MappingStart(_, anchor, ref tag) | Event::SequenceStart(_, anchor, ref tag) => {
                let merge_tag = tag.as_ref().and_then(|t| merge_tag(t));
                if self.wants_key() {
                    return Err(self.unsupported(line, "a mapping key must be a scalar"));
                }
                if self.stack.len() >= self.limits.max_depth {
                    return Err(InputError::TooDeep {
                        file: self.file.to_string(),
                        line: line as usize,
                        limit: self.limits.max_depth,
                    });
                }
                self.count(1, line)?;
                let shape = if matches!(ev, Event::MappingStart(..)) {
                    Shape::Map {
                        map: Mapping::new(),
                        entries: Vec::new(),
                        key: None,
                        merges: Vec::new(),
                    }
                } else {
                    Shape::Seq {
                        items: Vec::new(),
                        nodes: Vec::new(),
                    }
                };
                self.stack.push(Frame {
                    shape,
                    anchor,
                    line,
                    nodes_before: self.nodes,
                    merge_tag,
                });
                Ok(())
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let frame = self.stack.pop().expect("the parser balances start and end");
                let (value, node) = self.finish(frame.shape)?;
                let value = with_merge_tag(value, frame.merge_tag);
                let node = Node {
                    line: frame.line,
                    ..node
                };
                if frame.anchor > 0 {
                    let count = self.nodes - frame.nodes_before + 1;
                    self.remember(frame.anchor, &value, &node, count, line)?;
                }
                self.value(value, node);
                Ok(())
            }
            Event::Alias(id) => {
                if self.wants_key() {
                    return Err(self.unsupported(line, "an alias cannot be a mapping key"));
                }
                let Some(a) = self.anchors.get(&id) else {
                    return Err(self.unsupported(line, "alias of an anchor that is not complete"));
                };
                let count = a.count;
                self.alias_nodes += count;
                if self.alias_nodes > self.limits.max_alias_nodes {
                    return Err(InputError::AliasExpansion {
                        file: self.file.to_string(),
                        line: line as usize,
                        limit: self.limits.max_alias_nodes,
                    });
                }
                self.count(count, line)?;
                let a = &self.anchors[&id];
                let (value, node) = (a.value.clone(), a.node.at_line(line));
                self.value(value, node);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn wants_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame {
                shape: Shape::Map { key: None, .. },
                ..
            })
        )
    }

    fn count(&mut self, n: usize, line: u32) -> Result<(), InputError> {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            return Err(InputError::TooManyNodes {
                file: self.file.to_string(),
                line: line as usize,
                limit: self.limits.max_nodes,
            });
        }
        Ok(())
    }

    /// Keep a copy for later aliases; the copy counts against the node limit like the original.
    fn remember(
        &mut self,
        id: usize,
        value: &Value,
        node: &Node,
        count: usize,
        line: u32,
    ) -> Result<(), InputError> {
        self.count(count, line)?;
        self.anchors.insert(
            id,
            Anchor {
                value: value.clone(),
                node: node.clone(),
                count,
            },
        );
        Ok(())
    }

    fn unsupported(&self, line: u32, message: &str) -> InputError {
        InputError::Syntax {
            file: self.file.to_string(),
            line: line as usize,
            message: message.to_string(),
        }
    }

    fn key(
        &mut self,
        text: String,
        style: TScalarStyle,
        tag: Option<Tag>,
        line: u32,
    ) -> Result<(), InputError> {
        self.count(1, line)?;
        let merge = style == TScalarStyle::Plain && tag.is_none() && text == "<<";
        let value = typed(&text, style, tag.as_ref()).map_err(|m| self.unsupported(line, &m))?;
        if let Some(Frame {
            shape: Shape::Map { key, .. },
            ..
        }) = self.stack.last_mut()
        {
            *key = Some(Key {
                text,
                value,
                line,
                merge,
            });
        }
        Ok(())
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        tag: Option<&Tag>,
        line: u32,
    ) -> Result<Value, InputError> {
        let Some(env) = self.env.filter(|_| text.contains('$')) else {
            return typed(&text, style, tag).map_err(|m| self.unsupported(line, &m));
        };
        let mut unset = Vec::new();
        let result = env.interpolate(&text, &mut unset);
        let path = self.path();
        for name in unset {
            self.problems.push(Problem::warning(
                line,
                &path,
                format!("variable {name} is not set; an empty string is used (set it, or write ${{{name}:-default}} or ${{{name}:?message}})"),
            ));
        }
        match result {
            // A plain scalar is typed after interpolation, as Compose types `retries: ${N}`;
            // only values that read back the same, so `0123` stays the string it was.
            Ok(s) if style == TScalarStyle::Plain && tag.is_none() => Ok(retyped(s)),
            Ok(s) => Ok(Value::String(s)),
            Err(e) => {
                self.problems
                    .push(Problem::error(line, &path, e.to_string()));
                Ok(Value::String(text))
            }
        }
    }

    /// Dotted path of the node being read, for problems found while reading it.
    fn path(&self) -> String {
        let mut p = String::new();
        for f in &self.stack {
            match &f.shape {
                Shape::Map { key: Some(k), .. } => p = lines::join(&p, &k.text),
                Shape::Map { key: None, .. } => {}
                Shape::Seq { items, .. } => p = lines::index(&p, items.len()),
            }
        }
        p
    }

    /// Put a finished node into its parent (or make it the document).
    fn value(&mut self, value: Value, node: Node) {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some((value, node));
            return;
        };
        let duplicate = match &mut frame.shape {
            Shape::Seq { items, nodes } => {
                items.push(value);
                nodes.push(node);
                None
            }
            Shape::Map {
                map,
                entries,
                key,
                merges,
            } => {
                let k = key.take().expect("a value in a mapping follows its key");
                if k.merge {
                    merges.push((value, node, k.line));
                    None
                } else if map.contains_key(&k.value) {
                    let first = entries
                        .iter()
                        .find(|(t, _)| *t == k.text)
                        .map_or(0, |(_, n)| n.line);
                    Some((k, first))
                } else {
                    map.insert(k.value, value);
                    entries.push((k.text, node.at_line(k.line)));
                    None
                }
            }
        };
        if let Some((k, first)) = duplicate {
            let path = lines::join(&self.path(), &k.text);
            self.problems.push(Problem::error(
                k.line,
                &path,
                format!("duplicate key {:?} (first at line {first})", k.text),
            ));
        }
    }

    fn finish(&mut self, shape: Shape) -> Result<(Value, Node), InputError> {
        match shape {
            Shape::Seq { items, nodes } => Ok((
                Value::Sequence(items),
                Node {
                    line: 0,
                    kids: Kids::Seq(nodes),
                },
            )),
            Shape::Map {
                mut map,
                mut entries,
                merges,
                ..
            } => {
                for (value, node, line) in merges {
                    let sources = match (value, node.kids) {
                        (Value::Sequence(items), Kids::Seq(nodes)) => {
                            items.into_iter().zip(nodes).collect()
                        }
                        (value, kids) => vec![(value, Node { line, kids })],
                    };
                    for (source, node) in sources {
                        let (Value::Mapping(m), Kids::Map(lines)) = (source, node.kids) else {
                            return Err(self.unsupported(
                                line,
                                "merge key `<<` takes a mapping, an alias of one, or a list of them",
                            ));
                        };
                        for ((k, v), (text, n)) in m.into_iter().zip(lines) {
                            if !map.contains_key(&k) {
                                map.insert(k, v);
                                entries.push((text, n));
                            }
                        }
                    }
                }
                Ok((
                    Value::Mapping(map),
                    Node {
                        line: 0,
                        kids: Kids::Map(entries),
                    },
                ))
            }
        }
    }
}

const CORE_TAG: &str = "tag:yaml.org,2002:";

/// Compose's merge tags (`!reset`, `!override`): kept on the value as `Value::Tagged` for
/// `desired::compose::merge`, which reads and removes them.
fn merge_tag(t: &Tag) -> Option<&'static str> {
    match (t.handle(), t.suffix()) {
        ("!", "reset") => Some("reset"),
        ("!", "override") => Some("override"),
        _ => None,
    }
}

fn with_merge_tag(value: Value, tag: Option<&'static str>) -> Value {
    match tag {
        Some(t) => Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
            tag: serde_yaml::value::Tag::new(t),
            value,
        })),
        None => value,
    }
}

/// A scalar as serde_yaml types it: plain scalars by the YAML 1.2 core schema, quoted and
/// block scalars as strings, `!!str`/`!!int`/... as asked.
fn typed(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    match tag {
        None if style == TScalarStyle::Plain => Ok(resolve(text)),
        None => Ok(Value::String(text.to_string())),
        Some(t) if t.handle() == CORE_TAG => match t.suffix() {
            "str" => Ok(Value::String(text.to_string())),
            "null" | "bool" | "int" | "float" => Ok(resolve(text)),
            other => Err(format!("tag !!{other} is not supported")),
        },
        Some(t) => Err(format!("tag {}{} is not supported", t.handle(), t.suffix())),
    }
}

fn retyped(s: String) -> Value {
    match resolve(&s) {
        v @ (Value::Bool(_) | Value::Number(_)) if scalar_text(&v) == s => v,
        _ => Value::String(s),
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The YAML 1.2 core schema as serde_yaml 0.9 applies it to plain scalars.
pub(crate) fn resolve(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Number(f64::INFINITY.into())
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Number(f64::NEG_INFINITY.into()),
        ".nan" | ".NaN" | ".NAN" => return Value::Number(f64::NAN.into()),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return Value::String(s.to_string());
    }
    if let Some(n) = integer(s) {
        return Value::Number(n);
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let leading_zero_digits = unsigned.len() > 1
        && unsigned.starts_with('0')
        && unsigned[1..].bytes().all(|b| b.is_ascii_digit());
    let unpositive = s.strip_prefix('+').unwrap_or(s);
    let two_signs = s.starts_with('+') && unpositive.starts_with(['+', '-']);
    if !(leading_zero_digits || two_signs) {
        if let Ok(f) = unpositive.parse::<f64>() {
            if f.is_finite() {
                return Value::Number(f.into());
            }
        }
    }
    Value::String(s.to_string())
}

fn integer(s: &str) -> Option<Number> {
    let (negative, unsigned) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if unsigned.starts_with(['+', '-']) || unsigned.is_empty() {
        return None;
    }
    let (radix, digits) = if let Some(d) = unsigned.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = unsigned.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = unsigned.strip_prefix("0b") {
        (2, d)
    } else {
        if unsigned.len() > 1 && unsigned.starts_with('0') {
            return None;
        }
        (10, unsigned)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        let v = i64::try_from(magnitude)
            .map(|m| -m)
            .ok()
            .or((magnitude == 1u64 << 63).then_some(i64::MIN))?;
        Some(v.into())
    } else {
        Some(magnitude.into())
    }
}
