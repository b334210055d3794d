//! Top-level `secrets:`/`configs:` resolved once per stack, then each service reference turned
//! into a read-only file mount, where `docker compose` puts it: `/run/secrets/<name>` for
//! secrets, `/<name>` for configs, or the reference's `target`.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use super::{rel_to, Report};
use crate::desired::compose::{FileDef, FileRef, Service};
use crate::desired::load::LoadedStack;
use crate::desired::paths::{self, resolve_inside};
use crate::desired::spec::{MountOptions, MountSource, MountSpec, Sensitive};
use crate::input::Env;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn section(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::Config => "configs",
        }
    }
}

#[derive(Default)]
pub(super) struct Defs {
    resolved: BTreeMap<(&'static str, String), Option<MountSource>>,
}

impl Defs {
    /// Add the definitions of another file of the same stack (an `include:`d one).
    pub(super) fn extend(&mut self, other: Defs) {
        self.resolved.extend(other.resolved);
    }

    pub(super) fn new(root: &Path, stack: &LoadedStack, env: &Env, r: &mut Report) -> Self {
        let mut resolved = BTreeMap::new();
        for (kind, defs) in [
            (Kind::Secret, &stack.secrets),
            (Kind::Config, &stack.configs),
        ] {
            resolve_all(root, stack, env, kind, defs, &mut resolved, r);
        }
        Defs { resolved }
    }

    pub(super) fn mounts(&self, svc: &Service, base: &str, r: &mut Report) -> Vec<MountSpec> {
        let mut out = Vec::new();
        for (kind, refs) in [(Kind::Secret, &svc.secrets), (Kind::Config, &svc.configs)] {
            for (i, fr) in refs.iter().enumerate() {
                let path = format!("{base}.{}[{i}]", kind.section());
                match self.resolved.get(&(kind.section(), fr.source.clone())) {
                    None => r.err(
                        path,
                        format!(
                            "{} {:?} is not declared under top-level `{}:`",
                            &kind.section()[..kind.section().len() - 1],
                            fr.source,
                            kind.section()
                        ),
                    ),
                    // Its own problem is reported where it is defined.
                    Some(None) => {}
                    Some(Some(source)) => out.push(mount(kind, fr, source.clone(), &path, r)),
                }
            }
        }
        out
    }
}

fn resolve_all(
    root: &Path,
    stack: &LoadedStack,
    env: &Env,
    kind: Kind,
    defs: &IndexMap<String, FileDef>,
    out: &mut BTreeMap<(&'static str, String), Option<MountSource>>,
    r: &mut Report,
) {
    for (name, def) in defs {
        let path = format!("{}.{name}", kind.section());
        let source = resolve(root, stack, env, name, def, &path, r);
        if def.template_driver.is_some() || def.driver.is_some() || def.driver_opts.is_some() {
            r.warn(
                path.clone(),
                "driver and template_driver are ignored: only Docker Swarm uses them",
            );
        }
        out.insert((kind.section(), name.clone()), source);
    }
}

fn resolve(
    root: &Path,
    stack: &LoadedStack,
    env: &Env,
    name: &str,
    def: &FileDef,
    path: &str,
    r: &mut Report,
) -> Option<MountSource> {
    let given = [
        def.file.is_some(),
        def.environment.is_some(),
        def.content.is_some(),
    ];
    if def.external.external {
        r.err(
            path,
            "external secrets and configs live in Docker Swarm; on one engine use file, environment or content",
        );
        return None;
    }
    if given.iter().filter(|g| **g).count() != 1 {
        r.err(path, "set exactly one of file, environment, content");
        return None;
    }
    if let Some(f) = &def.file {
        return match resolve_inside(root, &stack.dir, f) {
            Ok(real) => match paths::digest(&real) {
                Ok(digest) => Some(MountSource::Repo {
                    path: rel_to(root, &real),
                    digest,
                    local: real,
                }),
                Err(e) => {
                    r.err(format!("{path}.file"), format!("cannot read {f:?}: {e}"));
                    None
                }
            },
            Err(e) => {
                r.err(format!("{path}.file"), e.to_string());
                None
            }
        };
    }
    let content = match (&def.environment, &def.content) {
        (Some(var), _) => match env.get(var) {
            Some(v) => v.as_bytes().to_vec(),
            None => {
                r.err(
                    format!("{path}.environment"),
                    format!("variable {var} is not set in the agent's environment"),
                );
                return None;
            }
        },
        (None, Some(c)) => c.as_bytes().to_vec(),
        (None, None) => return None,
    };
    Some(MountSource::Generated {
        name: name.to_string(),
        digest: hex::encode(Sha256::digest(&content)),
        content: Sensitive(content),
    })
}

fn mount(kind: Kind, fr: &FileRef, source: MountSource, path: &str, r: &mut Report) -> MountSpec {
    let target = match (kind, &fr.target) {
        (_, Some(t)) if t.starts_with('/') => t.clone(),
        (Kind::Secret, Some(t)) => format!("/run/secrets/{t}"),
        (Kind::Secret, None) => format!("/run/secrets/{}", fr.source),
        (Kind::Config, Some(t)) => format!("/{t}"),
        (Kind::Config, None) => format!("/{}", fr.source),
    };
    let owner = fr.uid.is_some() || fr.gid.is_some();
    let mut options = MountOptions::default();
    match &source {
        MountSource::Generated { .. } => {
            // Compose writes these files 0444 unless told otherwise.
            options.file_mode = Some(fr.mode.unwrap_or(0o444));
            if owner {
                options.file_owner = Some((
                    fr.uid.as_ref().map(|u| u.text().to_string()).unwrap_or_else(|| "0".into()),
                    fr.gid.as_ref().map(|g| g.text().to_string()).unwrap_or_else(|| "0".into()),
                ));
            }
        }
        _ if owner || fr.mode.is_some() => r.warn(
            path,
            "uid, gid and mode are ignored for a file-based secret or config: the file is bound as it is in the repo (as docker compose does)",
        ),
        _ => {}
    }
    MountSpec {
        source,
        target,
        read_only: true,
        options,
        at: path.to_string(),
    }
}
