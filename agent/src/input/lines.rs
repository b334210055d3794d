//! Line lookup for dotted paths in a YAML file.
//!
//! serde_yaml values carry no positions, yet semantic problems found after loading (a duplicate
//! IP, an unknown service) must name a line. The reader builds this index in the same pass as
//! the value: a tree shaped like the value, one line per node. A mapping entry's line is its
//! key's line; a node that came from an alias or a merge key keeps the lines of the anchor it
//! was copied from, which is where the text the user has to change is.
//!
//! A tree rather than a `path → line` map: a map keyed by full paths grows with depth × nodes,
//! which a 10 MB file with long keys turns into gigabytes.

/// Line of every node of one parsed file (1-based).
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    root: Option<Node>,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) line: u32,
    pub(crate) kids: Kids,
}

#[derive(Debug, Clone)]
pub(crate) enum Kids {
    Leaf,
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
}

impl Node {
    pub(crate) fn leaf(line: u32) -> Self {
        Self {
            line,
            kids: Kids::Leaf,
        }
    }

    /// The same subtree, its top at `line` (where an alias was written).
    pub(crate) fn at_line(&self, line: u32) -> Self {
        Self {
            line,
            kids: self.kids.clone(),
        }
    }

    /// The entry for `path` (dotted, `[i]` for items) below this node, keys holding dots
    /// included: at each mapping the longest key that matches wins.
    fn find(&self, path: &str) -> Option<&Node> {
        if path.is_empty() {
            return Some(self);
        }
        match &self.kids {
            Kids::Leaf => None,
            Kids::Seq(items) => {
                let rest = path.strip_prefix('[')?;
                let close = rest.find(']')?;
                let i: usize = rest[..close].parse().ok()?;
                let after = &rest[close + 1..];
                items.get(i)?.find(after.strip_prefix('.').unwrap_or(after))
            }
            Kids::Map(entries) => {
                let mut best: Option<(&Node, &str)> = None;
                for (k, n) in entries {
                    let Some(rest) = path.strip_prefix(k.as_str()) else {
                        continue;
                    };
                    let fits = rest.is_empty() || rest.starts_with(['.', '[']);
                    if fits && best.is_none_or(|(_, r)| rest.len() < r.len()) {
                        best = Some((n, rest));
                    }
                }
                let (n, rest) = best?;
                n.find(rest.strip_prefix('.').unwrap_or(rest))
            }
        }
    }
}

impl LineIndex {
    pub(crate) fn new(root: Option<Node>) -> Self {
        Self { root }
    }

    /// Line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut p = path;
        loop {
            if let Some(n) = root.find(p) {
                return Some(n.line as usize);
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
