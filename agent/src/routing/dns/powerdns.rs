//! PowerDNS backend through the HTTP API (`X-API-Key`). Records this agent owns carry a
//! comment with `account: macula-gitops`; only those are ever replaced or deleted. Reads and
//! writes are retried with backoff; nothing is planned (so nothing deleted) from a failed read.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{DnsBackend, Names};
use crate::routing::file::PowerDnsBackend;
use crate::routing::RoutingError;

pub const OWNER: &str = "macula-gitops";
const DEFAULT_TTL: u32 = 60;
const ATTEMPTS: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RrSet {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub ttl: u32,
    #[serde(default)]
    pub records: Vec<Record>,
    #[serde(default)]
    pub comments: Vec<Comment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Record {
    pub content: String,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Comment {
    pub content: String,
    #[serde(default)]
    pub account: String,
}

impl RrSet {
    fn owned(&self) -> bool {
        self.comments.iter().any(|c| c.account == OWNER)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Create or replace the A rrset `name` (FQDN with trailing dot) with one address.
    Upsert {
        name: String,
        address: String,
        ttl: u32,
    },
    /// Delete the A rrset `name` (one this agent owns).
    Delete { name: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RecordPlan {
    #[serde(default)]
    pub changes: Vec<Change>,
    /// Desired names held by records this agent does not own: left alone, reported.
    #[serde(default)]
    pub conflicts: Vec<String>,
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

/// What to change so the zone's A records owned by this agent are exactly `desired`.
pub fn plan(desired: &Names, observed: &[RrSet], ttl: u32) -> RecordPlan {
    let mut p = RecordPlan::default();
    let find = |name: &str, kind: &str| {
        observed
            .iter()
            .find(|r| fqdn(&r.name) == name && r.kind.eq_ignore_ascii_case(kind))
    };
    for (name, ip) in desired {
        let name = fqdn(name);
        let address = ip.to_string();
        if find(&name, "CNAME").is_some() {
            p.conflicts.push(name);
            continue;
        }
        match find(&name, "A") {
            Some(r) if !r.owned() => p.conflicts.push(name),
            Some(r)
                if r.ttl == ttl
                    && r.records.len() == 1
                    && r.records[0].content == address
                    && !r.records[0].disabled => {}
            _ => p.changes.push(Change::Upsert { name, address, ttl }),
        }
    }
    let wanted: Vec<String> = desired.keys().map(|n| fqdn(n)).collect();
    for r in observed {
        if r.kind.eq_ignore_ascii_case("A") && r.owned() && !wanted.contains(&fqdn(&r.name)) {
            p.changes.push(Change::Delete {
                name: fqdn(&r.name),
            });
        }
    }
    p
}

pub struct PowerDns {
    url: String,
    server: String,
    api_key: String,
    ttl: u32,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Zone {
    #[serde(default)]
    rrsets: Vec<RrSet>,
}

enum Fetched {
    Zone(Vec<RrSet>),
    Missing,
}

impl PowerDns {
    pub fn from_spec(spec: &PowerDnsBackend) -> Self {
        // reqwest is built without a default TLS provider; an Err means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            url: spec.url.trim_end_matches('/').to_string(),
            server: spec.server.clone(),
            api_key: spec.api_key.clone(),
            ttl: spec.ttl.unwrap_or(DEFAULT_TTL),
            client,
        }
    }

    fn err(&self, reason: impl Into<String>) -> RoutingError {
        RoutingError::PowerDns {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    fn zone_url(&self, zone: &str) -> String {
        format!(
            "{}/api/v1/servers/{}/zones/{}",
            self.url,
            self.server,
            fqdn(zone)
        )
    }

    /// Send a request built by `build`, retrying transport errors and 5xx with backoff.
    /// Returns the status and body of the first non-retryable answer.
    async fn send(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, String), RoutingError> {
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match build().header("X-API-Key", &self.api_key).send().await {
                Ok(resp) if !resp.status().is_server_error() => {
                    let status = resp.status();
                    let body = resp
                        .text()
                        .await
                        .map_err(|e| self.err(format!("{what}: {e}")))?;
                    return Ok((status, body));
                }
                Ok(resp) => {
                    let status = resp.status();
                    last = format!("{status}: {}", resp.text().await.unwrap_or_default().trim());
                }
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(attempt, error = %last, "powerdns {what} failed; retrying");
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        Err(self.err(format!("{what}: {last} (after {ATTEMPTS} attempts)")))
    }

    async fn fetch(&self, zone: &str) -> Result<Fetched, RoutingError> {
        let (status, body) = self
            .send("read zone", || self.client.get(self.zone_url(zone)))
            .await?;
        match status.as_u16() {
            200 => serde_json::from_str::<Zone>(&body)
                .map(|z| Fetched::Zone(z.rrsets))
                .map_err(|e| self.err(format!("read zone: unexpected answer: {e}"))),
            404 | 422 => Ok(Fetched::Missing),
            _ => Err(self.err(format!("read zone: {status}: {}", body.trim()))),
        }
    }

    async fn create_zone(&self, zone: &str) -> Result<(), RoutingError> {
        let body = serde_json::json!({
            "name": fqdn(zone),
            "kind": "Native",
            "nameservers": [],
        });
        let url = format!("{}/api/v1/servers/{}/zones", self.url, self.server);
        let (status, text) = self
            .send("create zone", || self.client.post(&url).json(&body))
            .await?;
        // 409: created meanwhile (or by a retried request that did get through).
        if status.is_success() || status.as_u16() == 409 {
            tracing::info!(zone, "powerdns zone created");
            Ok(())
        } else {
            Err(self.err(format!("create zone {zone}: {status}: {}", text.trim())))
        }
    }

    async fn patch(&self, zone: &str, changes: &[Change]) -> Result<(), RoutingError> {
        let rrsets: Vec<serde_json::Value> = changes
            .iter()
            .map(|c| match c {
                Change::Upsert { name, address, ttl } => serde_json::json!({
                    "name": name, "type": "A", "ttl": ttl, "changetype": "REPLACE",
                    "records": [{"content": address, "disabled": false}],
                    "comments": [{"content": "managed by macula-gitops routing", "account": OWNER}],
                }),
                Change::Delete { name } => serde_json::json!({
                    "name": name, "type": "A", "changetype": "DELETE",
                }),
            })
            .collect();
        let body = serde_json::json!({ "rrsets": rrsets });
        let url = self.zone_url(zone);
        let (status, text) = self
            .send("update records", || self.client.patch(&url).json(&body))
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.err(format!("update records: {status}: {}", text.trim())))
        }
    }
}

impl DnsBackend for PowerDns {
    fn name(&self) -> &'static str {
        "powerdns"
    }

    fn apply<'a>(
        &'a self,
        zone: &'a str,
        names: &'a Names,
    ) -> BoxFuture<'a, Result<bool, RoutingError>> {
        Box::pin(async move {
            let (observed, created) = match self.fetch(zone).await? {
                Fetched::Zone(r) => (r, false),
                Fetched::Missing => {
                    self.create_zone(zone).await?;
                    (Vec::new(), true)
                }
            };
            let p = plan(names, &observed, self.ttl);
            if !p.changes.is_empty() {
                self.patch(zone, &p.changes).await?;
                tracing::info!(zone, changes = p.changes.len(), "powerdns records updated");
            }
            if !p.conflicts.is_empty() {
                return Err(RoutingError::Foreign { names: p.conflicts });
            }
            Ok(created || !p.changes.is_empty())
        })
    }

    fn observe<'a>(&'a self, zone: &'a str) -> BoxFuture<'a, Result<Names, RoutingError>> {
        Box::pin(async move {
            let rrsets = match self.fetch(zone).await? {
                Fetched::Zone(r) => r,
                Fetched::Missing => Vec::new(),
            };
            Ok(owned_names(&rrsets))
        })
    }
}

/// The A records this agent owns (by the comment's account), as names.
pub fn owned_names(rrsets: &[RrSet]) -> Names {
    rrsets
        .iter()
        .filter(|r| r.owned() && r.kind.eq_ignore_ascii_case("A"))
        .filter_map(|r| {
            let ip = r
                .records
                .iter()
                .find(|x| !x.disabled)?
                .content
                .parse()
                .ok()?;
            Some((r.name.trim_end_matches('.').to_ascii_lowercase(), ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Case {
        name: String,
        desired: std::collections::BTreeMap<String, std::net::Ipv4Addr>,
        #[serde(default)]
        observed: Vec<RrSet>,
        want: RecordPlan,
    }

    #[test]
    fn plan_table() {
        let cases: Vec<Case> = serde_yaml::from_str(
            r#"
- name: empty zone gets every name
  desired: {a.z: 127.0.0.3, b.z: 127.0.0.4}
  want:
    changes:
      - {op: upsert, name: a.z., address: 127.0.0.3, ttl: 60}
      - {op: upsert, name: b.z., address: 127.0.0.4, ttl: 60}
- name: already converged is an empty plan
  desired: {a.z: 127.0.0.3}
  observed:
    - {name: a.z., type: A, ttl: 60, records: [{content: 127.0.0.3}], comments: [{content: x, account: macula-gitops}]}
    - {name: z., type: SOA, ttl: 3600, records: [{content: "a. b. 1 2 3 4 5"}]}
  want: {}
- name: owned record with a new address or ttl is replaced
  desired: {a.z: 127.0.0.9, b.z: 127.0.0.4}
  observed:
    - {name: a.z., type: A, ttl: 60, records: [{content: 127.0.0.3}], comments: [{content: x, account: macula-gitops}]}
    - {name: b.z., type: A, ttl: 300, records: [{content: 127.0.0.4}], comments: [{content: x, account: macula-gitops}]}
  want:
    changes:
      - {op: upsert, name: a.z., address: 127.0.0.9, ttl: 60}
      - {op: upsert, name: b.z., address: 127.0.0.4, ttl: 60}
- name: foreign records are never touched, a clash is reported
  desired: {a.z: 127.0.0.3, c.z: 127.0.0.5}
  observed:
    - {name: a.z., type: A, ttl: 60, records: [{content: 10.0.0.1}]}
    - {name: c.z., type: CNAME, ttl: 60, records: [{content: a.z.}], comments: [{content: x, account: someone}]}
    - {name: f.z., type: A, ttl: 60, records: [{content: 10.0.0.2}], comments: [{content: x, account: someone}]}
  want:
    conflicts: [a.z., c.z.]
- name: owned names no longer desired are deleted, foreign ones kept
  desired: {}
  observed:
    - {name: old.z., type: A, ttl: 60, records: [{content: 127.0.0.3}], comments: [{content: x, account: macula-gitops}]}
    - {name: f.z., type: A, ttl: 60, records: [{content: 10.0.0.2}]}
  want:
    changes:
      - {op: delete, name: old.z.}
"#,
        )
        .unwrap();
        for c in cases {
            let desired: Names = c.desired.into_iter().collect();
            assert_eq!(plan(&desired, &c.observed, 60), c.want, "case: {}", c.name);
        }
    }
}
