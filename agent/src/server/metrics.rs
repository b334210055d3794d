//! Prometheus metrics. One `Metrics` per daemon, shared (Arc) with the reconcile core, which
//! updates drift repairs and managed containers by state.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    /// Wall time of one reconcile pass.
    pub reconcile_duration: Histogram,
    /// `result` = success | invalid | refused | error | fetch-error | skipped.
    pub reconcile_total: Family<Labels, Counter>,
    pub last_success_timestamp: Gauge<f64, AtomicU64>,
    /// `revision` = the applied commit; exactly one series at a time, value 1.
    pub applied_revision: Family<Labels, Gauge>,
    pub drift_repairs: Counter,
    pub fetch_duration: Histogram,
    /// `state` = running | exited | restarting | ... (set by the reconcile core).
    pub managed_containers: Family<Labels, Gauge>,
    /// `provider`, `result` = accepted | rejected.
    pub webhooks_total: Family<Labels, Counter>,
    /// kind clusters up, Flux Kustomizations Ready (with revision), set after each pass.
    pub clusters: crate::cluster::status::ClusterMetrics,
    /// Notifications and commit statuses by target and result (`crate::notify`).
    pub notify: crate::notify::NotifyMetrics,
    /// `result` = healthy | failed | rolled-back: rollouts that ended so.
    pub rollouts_total: Family<Labels, Counter>,
    /// `revision`, `state`: the latest rollout; exactly one series at a time, value 1.
    pub rollout_state: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::new_with(|_| {})
    }

    /// Also register families owned elsewhere (e.g. the forwarders' counters).
    pub fn new_with(extra: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("macula_gitops");
        let m = Self {
            reconcile_duration: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            reconcile_total: Family::default(),
            last_success_timestamp: Gauge::default(),
            applied_revision: Family::default(),
            drift_repairs: Counter::default(),
            fetch_duration: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            managed_containers: Family::default(),
            webhooks_total: Family::default(),
            clusters: Default::default(),
            notify: Default::default(),
            rollouts_total: Family::default(),
            rollout_state: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile",
            "Reconcile passes by result",
            m.reconcile_total.clone(),
        );
        registry.register(
            "last_successful_apply_timestamp_seconds",
            "Unix time of the last successful apply",
            m.last_success_timestamp.clone(),
        );
        registry.register(
            "applied_revision_info",
            "The applied commit (value is always 1)",
            m.applied_revision.clone(),
        );
        registry.register(
            "drift_repairs",
            "Containers repaired after drifting from the desired state",
            m.drift_repairs.clone(),
        );
        registry.register(
            "fetch_duration_seconds",
            "Duration of git fetches",
            m.fetch_duration.clone(),
        );
        registry.register(
            "managed_containers",
            "Managed containers by state",
            m.managed_containers.clone(),
        );
        registry.register(
            "webhooks",
            "Webhook deliveries by provider and result",
            m.webhooks_total.clone(),
        );
        registry.register(
            "rollouts",
            "Rollouts by how they ended",
            m.rollouts_total.clone(),
        );
        registry.register(
            "rollout_state",
            "The latest rollout's revision and state (value is always 1)",
            m.rollout_state.clone(),
        );
        m.clusters.register(&mut registry);
        m.notify.register(&mut registry);
        extra(&mut registry);
        Self { registry, ..m }
    }

    pub fn count_reconcile(&self, result: &str) {
        self.reconcile_total
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }

    pub fn set_applied(&self, revision: &str) {
        self.applied_revision.clear();
        self.applied_revision
            .get_or_create(&vec![("revision".into(), revision.into())])
            .set(1);
        self.last_success_timestamp
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    /// A rollout of `revision` ended in `state` (healthy | failed | rolled-back).
    pub fn record_rollout(&self, revision: &str, state: &str) {
        self.rollouts_total
            .get_or_create(&vec![("result".into(), state.into())])
            .inc();
        self.rollout_state.clear();
        self.rollout_state
            .get_or_create(&vec![
                ("revision".into(), revision.into()),
                ("state".into(), state.into()),
            ])
            .set(1);
    }

    pub fn count_webhook(&self, provider: &str, result: &str) {
        self.webhooks_total
            .get_or_create(&vec![
                ("provider".into(), provider.into()),
                ("result".into(), result.into()),
            ])
            .inc();
    }

    /// Replace the per-state container counts in one go.
    pub fn set_managed_containers<'a>(&self, by_state: impl IntoIterator<Item = (&'a str, i64)>) {
        self.managed_containers.clear();
        for (state, n) in by_state {
            self.managed_containers
                .get_or_create(&vec![("state".into(), state.into())])
                .set(n);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_and_flux_gauges_are_served() {
        use crate::cluster::kube_ops::KustomizationStatus;
        let m = Metrics::new();
        let k = KustomizationStatus {
            namespace: "flux-system".into(),
            name: "apps".into(),
            ready: "True".into(),
            reason: None,
            message: None,
            revision: Some("main@sha1:abc".into()),
        };
        m.clusters.update(&[crate::cluster::ClusterStatus {
            name: "macula-dev".into(),
            exists: true,
            flux: None,
            kustomizations: vec![k],
            error: None,
        }]);
        let text = m.render();
        assert!(
            text.contains("macula_gitops_cluster_up{cluster=\"macula-dev\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("macula_gitops_flux_kustomization_ready{cluster=\"macula-dev\",namespace=\"flux-system\",name=\"apps\",revision=\"main@sha1:abc\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.count_reconcile("success");
        m.set_applied("abc123");
        m.set_applied("def456");
        m.reconcile_duration.observe(0.3);
        m.set_managed_containers([("running", 2), ("exited", 1)]);
        let text = m.render();
        assert!(
            text.contains("macula_gitops_reconcile_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(text.contains("macula_gitops_applied_revision_info{revision=\"def456\"} 1"));
        assert!(!text.contains("abc123"), "old revision series is dropped");
        assert!(text.contains("macula_gitops_reconcile_duration_seconds_bucket"));
        assert!(text.contains("macula_gitops_managed_containers{state=\"running\"} 2"));
        assert!(text.contains("macula_gitops_drift_repairs_total 0"));
        assert!(text.ends_with("# EOF\n"));
    }
}
