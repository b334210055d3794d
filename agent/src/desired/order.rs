//! Ordering between stacks: `hosts.yaml` `stacks: {<stack>: {after: [<stack> | <stack>/<service>]}}`.
//!
//! A stack that comes after another waits, when its containers are started, for every service
//! of that stack (or the one named) to be healthy — running, for a service without a
//! healthcheck. The order is a property of the stacks, not of a host: it is written once at the
//! top of `hosts.yaml` and applies on every host among the stacks that host runs (an `after`
//! stack the host does not run is no constraint there). Applies follow it; prunes remove later
//! stacks first.
//!
//! It is resolved into per-service dependencies (`DesiredState::dependencies`) so apply's
//! `depends_on` levels carry it with no second ordering mechanism.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::compose::Condition;
use super::spec::{DesiredState, ServiceSpec};

/// One `after` entry: a whole stack, or one of its services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub stack: String,
    pub service: Option<String>,
}

impl After {
    pub fn parse(s: &str) -> Self {
        match s.split_once('/') {
            Some((stack, service)) => Self {
                stack: stack.to_string(),
                service: Some(service.to_string()),
            },
            None => Self {
                stack: s.to_string(),
                service: None,
            },
        }
    }
}

/// Problems in the `stacks:` section as `(yaml path, message)`. `exists(stack)` says whether
/// `stacks/<stack>/` has a compose file; `services(stack)` lists a loaded stack's services
/// (`None` when the host does not run it, so a service of it cannot be checked here).
pub fn check(
    order: &BTreeMap<String, Vec<String>>,
    exists: impl Fn(&str) -> bool,
    services: impl Fn(&str) -> Option<Vec<String>>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (stack, after) in order {
        if !exists(stack) {
            out.push((
                format!("stacks.{stack}"),
                format!("unknown stack {stack:?}: there is no compose file under stacks/{stack}/"),
            ));
        }
        for (i, entry) in after.iter().enumerate() {
            let path = format!("stacks.{stack}.after[{i}]");
            let a = After::parse(entry);
            if a.stack == *stack {
                out.push((path, format!("{stack:?} cannot come after itself")));
            } else if !exists(&a.stack) {
                out.push((
                    path,
                    format!(
                        "unknown stack {:?}: there is no compose file under stacks/{}/ (expected <stack> or <stack>/<service>)",
                        a.stack, a.stack
                    ),
                ));
            } else if let (Some(svc), Some(known)) = (&a.service, services(&a.stack)) {
                if !known.contains(svc) {
                    out.push((
                        path,
                        format!(
                            "unknown service {svc:?} in stack {:?} (its services: {})",
                            a.stack,
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    let graph: BTreeMap<&str, Vec<&str>> = order
        .iter()
        .map(|(s, after)| {
            let deps = after
                .iter()
                .map(|a| a.split_once('/').map_or(a.as_str(), |(s, _)| s))
                .filter(|a| a != s) // reported above
                .collect();
            (s.as_str(), deps)
        })
        .collect();
    if let Some(cycle) = find_cycle(&graph) {
        out.push((
            format!("stacks.{}.after", cycle[0]),
            format!("after forms a cycle: {}", cycle.join(" -> ")),
        ));
    }
    out
}

/// A cycle in `graph` (node → the nodes it depends on), as `a -> b -> a`; a node with no
/// entry has no edges (unknown names are reported elsewhere). The one cycle finder for
/// services and stacks.
pub fn find_cycle(graph: &BTreeMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        g: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut HashMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n, Mark::Visiting);
        path.push(n);
        for dep in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(dep, g, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

impl DesiredState {
    /// What `spec` waits for before it starts, as full `stack/service` keys: its `depends_on`
    /// (with their conditions) and, through `hosts.yaml` `after`, the services of earlier
    /// stacks this host runs — healthy when they have a healthcheck, else started.
    pub fn dependencies(&self, spec: &ServiceSpec) -> Vec<(String, Condition)> {
        let mut out: Vec<(String, Condition)> = spec
            .depends_on
            .iter()
            .map(|(d, c)| (format!("{}/{d}", spec.stack), *c))
            .collect();
        for a in self.selection.order.get(&spec.stack).into_iter().flatten() {
            let a = After::parse(a);
            for s in self.services.iter().filter(|s| {
                s.stack == a.stack && a.service.as_ref().is_none_or(|n| *n == s.service)
            }) {
                let cond = if s.healthcheck.is_some() {
                    Condition::ServiceHealthy
                } else {
                    Condition::ServiceStarted
                };
                out.push((s.key(), cond));
            }
        }
        out
    }

    /// Every desired service that depends on one of `keys`, directly or not (`keys` included).
    pub fn dependents(&self, keys: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = keys.clone();
        loop {
            let before = out.len();
            for s in &self.services {
                if self.dependencies(s).iter().any(|(d, _)| out.contains(d)) {
                    out.insert(s.key());
                }
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// A stack's place in the order: 0 for a stack after nothing, else one more than the
    /// latest stack it comes after. Prunes remove higher ranks first.
    pub fn stack_rank(&self, stack: &str) -> usize {
        fn rank(
            order: &BTreeMap<String, Vec<String>>,
            stack: &str,
            seen: &mut BTreeSet<String>,
        ) -> usize {
            if !seen.insert(stack.to_string()) {
                return 0; // a cycle is refused by validation; never loop on one
            }
            let r = order
                .get(stack)
                .into_iter()
                .flatten()
                .map(|a| rank(order, &After::parse(a).stack, seen) + 1)
                .max()
                .unwrap_or(0);
            seen.remove(stack);
            r
        }
        rank(&self.selection.order, stack, &mut BTreeSet::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(yaml: &str) -> BTreeMap<String, Vec<String>> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn check_table() {
        let stacks = ["registry", "apps", "tools"];
        let exists = |s: &str| stacks.contains(&s);
        let services = |s: &str| (s == "registry").then(|| vec!["registry".to_string()]);
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("{apps: [registry], tools: [apps, registry/registry]}", &[]),
            (
                "{apps: [nope]}",
                &[("stacks.apps.after[0]", "unknown stack \"nope\"")],
            ),
            (
                "{ghost: [apps]}",
                &[("stacks.ghost", "unknown stack \"ghost\"")],
            ),
            (
                "{apps: [registry/mirror]}",
                &[(
                    "stacks.apps.after[0]",
                    "unknown service \"mirror\" in stack \"registry\" (its services: registry)",
                )],
            ),
            // A service of a stack the host does not run cannot be checked here: no error.
            ("{apps: [tools/x]}", &[]),
            (
                "{apps: [apps]}",
                &[("stacks.apps.after[0]", "cannot come after itself")],
            ),
            (
                "{apps: [tools], tools: [registry], registry: [apps/x]}",
                &[(
                    "stacks.apps.after",
                    "after forms a cycle: apps -> tools -> registry -> apps",
                )],
            ),
        ];
        for (yaml, want) in cases {
            let got = check(&order(yaml), exists, services);
            assert_eq!(got.len(), want.len(), "{yaml}: {got:?}");
            for ((path, msg), (wpath, wmsg)) in got.iter().zip(want.iter()) {
                assert_eq!(path, wpath, "{yaml}");
                assert!(msg.contains(wmsg), "{yaml}: {msg}");
            }
        }
    }
}
