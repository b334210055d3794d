//! The kind config (`kind.x-k8s.io/v1alpha4`) generated for one cluster.
//!
//! Besides the nodes and their port mappings it always carries the containerd patch that
//! makes containerd read `/etc/containerd/certs.d`, where registry wiring puts `hosts.toml`:
//! without it the mirrors are ignored and nodes cannot pull `localhost:5001/...`.

use serde_json::{json, Value};

use super::file::ClusterSpec;

pub const API_VERSION: &str = "kind.x-k8s.io/v1alpha4";

pub const CONTAINERD_PATCH: &str =
    "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"";

/// The config as a JSON value (field names as kind spells them).
pub fn config_value(name: &str, spec: &ClusterSpec) -> Value {
    let nodes: Vec<Value> = spec
        .nodes
        .iter()
        .map(|n| {
            let mut node = json!({ "role": n.role.to_string() });
            if let Some(image) = n.image.as_ref().or(spec.image.as_ref()) {
                node["image"] = json!(image);
            }
            if !n.extra_port_mappings.is_empty() {
                node["extraPortMappings"] = n
                    .extra_port_mappings
                    .iter()
                    .map(|m| {
                        let mut v = json!({
                            "containerPort": m.container_port,
                            "hostPort": m.host_port,
                            "protocol": m.protocol.to_string(),
                        });
                        if let Some(a) = &m.listen_address {
                            v["listenAddress"] = json!(a);
                        }
                        v
                    })
                    .collect();
            }
            node
        })
        .collect();
    json!({
        "kind": "Cluster",
        "apiVersion": API_VERSION,
        "name": name,
        "containerdConfigPatches": [CONTAINERD_PATCH],
        "nodes": nodes,
    })
}

/// The config file kind reads.
pub fn render(name: &str, spec: &ClusterSpec) -> String {
    serde_yaml::to_string(&config_value(name, spec))
        .expect("a JSON value always serialises to YAML")
}
