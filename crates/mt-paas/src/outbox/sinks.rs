//! Where outbox items go: audit alerts and usage to the market, xAPI statements to the LRS.

use std::{collections::HashMap, time::Duration};

use mt_paas_protocol::{UsageRecord, UsageReport, paths};
use reqwest::{StatusCode, header};
use serde_json::Value;

use super::{Item, Kind};
use crate::{
    config::{ActivityLogConfig, Secret},
    integrations::{MarketError, MarketplaceClient},
};

/// How long one round of one-by-one deliveries may take (well under the lease).
const ROUND_BUDGET: Duration = Duration::from_secs(5);

/// Why an item was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub error: String,
    /// Retrying cannot help (the receiver refused the item itself).
    pub permanent: bool,
    /// The receiver's `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// The outcome of delivering a batch: one for all, or one per item.
#[derive(Debug, Clone)]
pub struct Delivery {
    all: Option<Result<(), Failure>>,
    each: HashMap<String, Result<(), Failure>>,
}

impl Delivery {
    fn all(result: Result<(), Failure>) -> Self {
        Self {
            all: Some(result),
            each: HashMap::new(),
        }
    }

    /// What became of item `id`; `None` when it was not attempted (its turn comes again).
    pub fn outcome(&self, id: &str) -> Option<Result<(), Failure>> {
        if let Some(all) = &self.all {
            return Some(all.clone());
        }
        self.each.get(id).cloned()
    }
}

fn failure_of(error: &MarketError) -> Failure {
    let (permanent, retry_after) = match error {
        MarketError::Status {
            status,
            retry_after,
            ..
        } => (
            (400..500).contains(status) && ![401, 408, 429].contains(status),
            retry_after.map(Duration::from_secs),
        ),
        MarketError::Invalid(_) => (true, None),
        _ => (false, None),
    };
    Failure {
        error: error.to_string(),
        permanent,
        retry_after,
    }
}

/// A client of an LRS's xAPI statements resource.
#[derive(Clone)]
pub struct LrsClient {
    http: reqwest::Client,
    statements: String,
    username: Option<String>,
    password: Option<Secret>,
}

impl std::fmt::Debug for LrsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LrsClient")
            .field("statements", &self.statements)
            .finish_non_exhaustive()
    }
}

impl LrsClient {
    /// A client for `logging.activity_log`; `None` without an endpoint. An HTTP client
    /// that cannot be built (no TLS roots on the machine, say) is an error, never a
    /// statement silently kept forever.
    pub fn new(config: &ActivityLogConfig, timeout: Duration) -> Result<Option<Self>, String> {
        let Some(endpoint) = config.endpoint.as_deref().filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| {
                format!(
                    "no HTTP client for the LRS: {}",
                    crate::http::error_chain(&e)
                )
            })?;
        Ok(Some(Self {
            http,
            statements: format!("{}/statements", endpoint.trim_end_matches('/')),
            username: config.username.clone(),
            password: config.password.clone(),
        }))
    }

    async fn post(&self, statements: &[&Value]) -> Result<(), Failure> {
        let mut request = self
            .http
            .post(&self.statements)
            .header("X-Experience-API-Version", "1.0.3")
            .json(&statements);
        if let Some(user) = &self.username {
            request = request.basic_auth(user, self.password.as_ref().map(Secret::expose));
        }
        let response = request.send().await.map_err(|e| Failure {
            error: format!("the LRS cannot be reached: {e}"),
            permanent: false,
            retry_after: None,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        Err(Failure {
            error: format!("the LRS answered {status}: {body}"),
            permanent: status.is_client_error()
                && ![
                    StatusCode::UNAUTHORIZED,
                    StatusCode::REQUEST_TIMEOUT,
                    StatusCode::TOO_MANY_REQUESTS,
                ]
                .contains(&status),
            retry_after,
        })
    }
}

/// The receivers of the outbox.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    /// The market (audit alerts, usage).
    pub market: Option<MarketplaceClient>,
    /// The LRS (xAPI statements).
    pub lrs: Option<LrsClient>,
}

impl Sinks {
    /// Whether items of `kind` have somewhere to go (they wait otherwise).
    pub fn handles(&self, kind: Kind) -> bool {
        match kind {
            Kind::Audit | Kind::Usage | Kind::Provisioning => self.market.is_some(),
            Kind::Activity => self.lrs.is_some(),
        }
    }

    /// Delivers a batch of one kind.
    pub async fn deliver(&self, kind: Kind, items: &[Item]) -> Delivery {
        match kind {
            Kind::Audit => self.audit(items).await,
            Kind::Usage => self.usage(items).await,
            Kind::Activity => self.activity(items).await,
            Kind::Provisioning => self.provisioning(items).await,
        }
    }

    /// Provisioning results, one request each: `{"tenant_id", "result"}`.
    async fn provisioning(&self, items: &[Item]) -> Delivery {
        let Some(market) = &self.market else {
            return Delivery::all(Err(not_configured()));
        };
        let mut each = HashMap::new();
        for item in items {
            let tenant = item.body.get("tenant_id").and_then(Value::as_str);
            let result = item
                .body
                .get("result")
                .cloned()
                .map(serde_json::from_value::<mt_paas_protocol::ProvisioningResult>);
            let outcome = match (tenant, result) {
                (Some(tenant), Some(Ok(result))) => market
                    .provisioning_result(tenant, &result)
                    .await
                    .map_err(|e| failure_of(&e)),
                _ => Err(Failure {
                    error: "not a provisioning result".to_owned(),
                    permanent: true,
                    retry_after: None,
                }),
            };
            let outage = matches!(&outcome, Err(f) if !f.permanent);
            each.insert(item.id.clone(), outcome);
            if outage {
                break;
            }
        }
        Delivery { all: None, each }
    }

    async fn audit(&self, items: &[Item]) -> Delivery {
        let Some(market) = &self.market else {
            return Delivery::all(Err(not_configured()));
        };
        let mut each = HashMap::new();
        let started = std::time::Instant::now();
        for item in items {
            // One alert per request: stay well within the batch's lease.
            if started.elapsed() > ROUND_BUDGET {
                break;
            }
            let result = market
                .post_json(mt_paas_protocol::paths::AUDIT_ALERTS, &item.body)
                .await
                .map(drop)
                .map_err(|e| failure_of(&e));
            // An outage fails the rest of the batch the same way: stop trying now.
            let outage = matches!(&result, Err(f) if !f.permanent);
            each.insert(item.id.clone(), result.clone());
            if outage {
                let rest: Vec<String> = items
                    .iter()
                    .filter(|i| !each.contains_key(&i.id))
                    .map(|i| i.id.clone())
                    .collect();
                for id in rest {
                    each.insert(id, result.clone());
                }
                break;
            }
        }
        Delivery { all: None, each }
    }

    async fn usage(&self, items: &[Item]) -> Delivery {
        let Some(market) = &self.market else {
            return Delivery::all(Err(not_configured()));
        };
        // Each record was taken by one replica: report it under that replica's id, so a
        // resend by another process is still the same key.
        let mut by_instance: HashMap<String, Vec<(&str, UsageRecord)>> = HashMap::new();
        let mut each = HashMap::new();
        for item in items {
            let instance = item
                .body
                .get("instance_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            match item
                .body
                .get("record")
                .cloned()
                .map(serde_json::from_value::<UsageRecord>)
            {
                Some(Ok(record)) => by_instance
                    .entry(instance)
                    .or_default()
                    .push((item.id.as_str(), record)),
                _ => {
                    each.insert(
                        item.id.clone(),
                        Err(Failure {
                            error: "not a usage record".to_owned(),
                            permanent: true,
                            retry_after: None,
                        }),
                    );
                }
            }
        }
        for (instance_id, records) in by_instance {
            let report = UsageReport {
                service_id: market.service_id().to_owned(),
                instance_id,
                records: records.iter().map(|(_, r)| r.clone()).collect(),
            };
            let result = market
                .post_json(&paths::usage(market.service_id()), &report)
                .await
                .map(drop)
                .map_err(|e| failure_of(&e));
            for (id, _) in records {
                each.insert(id.to_owned(), result.clone());
            }
        }
        Delivery { all: None, each }
    }

    async fn activity(&self, items: &[Item]) -> Delivery {
        let Some(lrs) = &self.lrs else {
            return Delivery::all(Err(not_configured()));
        };
        let statements: Vec<&Value> = items.iter().map(|i| &i.body).collect();
        match lrs.post(&statements).await {
            Ok(()) => Delivery::all(Ok(())),
            // A batch is all-or-nothing: find the statement the LRS refuses by sending each
            // alone, so the others are not held back by it.
            Err(f) if f.permanent && items.len() > 1 => {
                let mut each = HashMap::new();
                for item in items {
                    each.insert(item.id.clone(), lrs.post(&[&item.body]).await);
                }
                Delivery { all: None, each }
            }
            Err(f) => Delivery::all(Err(f)),
        }
    }
}

fn not_configured() -> Failure {
    Failure {
        error: "no receiver is configured".to_owned(),
        permanent: false,
        retry_after: None,
    }
}
