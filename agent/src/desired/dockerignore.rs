//! `.dockerignore` of a build context, read as the Docker CLI reads it: `#` comments, `!`
//! exceptions, the last matching pattern wins, `*`/`?`/`[..]` within one path segment, `**`
//! across segments, and a pattern that matches a directory excludes everything under it.
//! Used for the context digest and the tar sent to the engine, so both see the same files.

use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    rules: Vec<(bool, Vec<String>)>,
}

/// Always sent, even when a pattern excludes them (the CLI does the same).
const ALWAYS_SENT: &[&str] = &["Dockerfile", ".dockerignore"];

impl DockerIgnore {
    /// The context's `.dockerignore`, or no rules when there is none.
    pub fn load(context: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(context.join(".dockerignore")) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    pub fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (exception, pat) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let segs = pat
                    .trim_start_matches('/')
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_string)
                    .collect();
                (exception, segs)
            })
            .collect();
        Self { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `rel` (slash-separated, relative to the context) is left out of the build.
    pub fn excluded(&self, rel: &str) -> bool {
        if ALWAYS_SENT.contains(&rel) {
            return false;
        }
        let path: Vec<&str> = rel.split('/').collect();
        let mut out = false;
        for (exception, pat) in &self.rules {
            // A pattern excludes the path itself or any directory above it.
            let hit = (1..=path.len()).any(|n| match_segs(pat, &path[..n]));
            if hit {
                out = !exception;
            }
        }
        out
    }

    /// Whether some exception could re-include a path under an excluded directory, so the
    /// walk must still descend into it.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(e, _)| *e)
    }
}

fn match_segs(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=path.len()).any(|skip| match_segs(rest, &path[skip..]))
        }
        Some((p, rest)) => match path.split_first() {
            Some((s, tail)) => glob(p.as_bytes(), s.as_bytes()) && match_segs(rest, tail),
            None => false,
        },
    }
}

/// Go's `filepath.Match` for one segment: `*`, `?`, `[abc]`, `[a-z]`, `[^a]`, `\` escapes.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().position(|c| *c == b']') else {
                return false;
            };
            let (class, after) = (&rest[..end], &rest[end + 1..]);
            let Some((c, tail)) = s.split_first() else {
                return false;
            };
            let (negate, class) = match class.split_first() {
                Some((b'^', c)) | Some((b'!', c)) => (true, c),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= *c && *c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == *c;
                    i += 1;
                }
            }
            hit != negate && glob(after, tail)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            s.first() == Some(&rest[0]) && glob(&rest[1..], &s[1..])
        }
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_as_the_cli_reads_them() {
        let i = DockerIgnore::parse(
            "# comment\nnode_modules\n*.log\n!keep.log\n**/*.tmp\n/build/out\ndocs/[a-c]*\nDockerfile\n",
        );
        assert!(i.excluded("node_modules"));
        assert!(i.excluded("node_modules/x/y.js"));
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("keep.log"));
        assert!(!i.excluded("sub/a.log"), "* does not cross /");
        assert!(i.excluded("a/b/c.tmp"));
        assert!(i.excluded("x.tmp"));
        assert!(i.excluded("build/out/bin"));
        assert!(!i.excluded("build/other"));
        assert!(i.excluded("docs/apple.md"));
        assert!(!i.excluded("docs/zebra.md"));
        assert!(!i.excluded("Dockerfile"), "always sent");
        assert!(!i.excluded("src/main.rs"));
    }
}
