//! The desired state: what the repo says this host should run.
//!
//! `load` reads `hosts.yaml` and the selected stacks, interpolates, and normalises into
//! `spec` types; `validate` checks across files. Every problem becomes a `Diagnostic`.

pub mod build;
pub mod catalog;
pub mod combine;
pub mod compose;
pub mod dockerignore;
pub mod hosts;
pub mod load;
pub mod order;
pub mod paths;
pub mod spec;
pub mod validate;

use std::path::Path;

use crate::diag::Diagnostic;
/// Interpolation moved to the reader (`input/`); integration tests and benches name it here.
pub use crate::input::interpolate;
use crate::input::Env;
use spec::DesiredState;

/// Load, build and validate the desired state for `host`. Either everything is valid (the
/// warnings found on the way are in `DesiredState::warnings`), or the complete list of
/// problems, warnings included, comes back and nothing should be changed on the host.
pub fn load_desired(root: &Path, host: &str, env: &Env) -> Result<DesiredState, Vec<Diagnostic>> {
    load_checked(root, host, env, None)
}

/// `load_desired`, plus the host's privilege policy: what it refuses is reported with every
/// other problem, so one `validate` shows them all.
pub fn load_checked(
    root: &Path,
    host: &str,
    env: &Env,
    policy: Option<&crate::policy::Policy>,
) -> Result<DesiredState, Vec<Diagnostic>> {
    let (loaded, mut diags) = load::load(root, host, env);
    let Some(loaded) = loaded else {
        return Err(diags.into_sorted());
    };
    let (mut state, build_diags) = build::build(&loaded);
    diags.extend(build_diags);
    diags.extend(validate::validate(&state));
    if let Some(p) = policy {
        diags.extend(p.check(&state));
    }
    state.warnings = diags.into_result()?;
    Ok(state)
}

impl DesiredState {
    /// The flat service view routing and clusters validate against.
    pub fn catalog(&self) -> catalog::Catalog {
        catalog::Catalog {
            services: self
                .services
                .iter()
                .map(|s| catalog::ServiceRef {
                    stack: s.stack.clone(),
                    service: s.service.clone(),
                    container_name: s.container_name.clone(),
                    containers: (1..=s.replicas)
                        .map(|n| s.replica(n).container_name.clone())
                        .collect(),
                    networks: s.networks.keys().cloned().collect(),
                    container_ports: s
                        .ports
                        .iter()
                        .map(|p| (p.container_port, p.protocol))
                        .chain(s.expose.iter().copied())
                        .collect(),
                    published: s
                        .ports
                        .iter()
                        .filter_map(|p| {
                            let ip = if p.host_ip.is_empty() || p.host_ip == "0.0.0.0" {
                                None
                            } else {
                                p.host_ip.parse().ok()
                            };
                            p.host_port.map(|port| (ip, port, p.protocol))
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}
