//! The dev data of the README's demo, loaded into an empty market.

use std::collections::BTreeMap;

use mt_paas_protocol::SubscriptionState;

use crate::{
    DEV_API_KEY, DEV_PASSWORD, DEV_WEBHOOK_SECRET, Market, crypto,
    store::{Plan, Service, Tenant, User},
};

/// The features of the seed's `features.defaults` (DESIGN §8.3).
pub(crate) const FEATURES: [&str; 6] = [
    "ai_chat",
    "file_upload",
    "rag",
    "discussion",
    "quiz",
    "api_integration",
];

fn features(enabled: &[&str]) -> BTreeMap<String, bool> {
    FEATURES
        .iter()
        .map(|f| ((*f).to_owned(), enabled.contains(f)))
        .collect()
}

pub(crate) async fn load(market: &Market) -> Result<(), crate::MarketError> {
    let store = market.store();
    store
        .put_plan(&Plan {
            id: "basic".into(),
            name: "Basic".into(),
            features: features(&["ai_chat", "file_upload"]),
            requests_per_minute: Some(60),
        })
        .await?;
    store
        .put_plan(&Plan {
            id: "premium".into(),
            name: "Premium".into(),
            features: features(&FEATURES),
            requests_per_minute: Some(600),
        })
        .await?;
    let key_hash = crypto::sha256_hex(DEV_API_KEY.as_bytes());
    let services = [
        (
            "basic_service",
            "Basic Service",
            Some("http://127.0.0.1:8000".to_owned()),
        ),
        ("keli_tutor", "KELI TUTOR", None),
    ];
    for (id, name, base_url) in &services {
        store
            .create_service(
                &Service {
                    id: (*id).into(),
                    name: (*name).into(),
                    base_url: base_url.clone(),
                    webhook_secret: DEV_WEBHOOK_SECRET.into(),
                },
                &key_hash,
            )
            .await?;
    }
    let tenants = [
        ("hallym", "한림대학교", "premium", "alice", "Alice Kim"),
        ("korea", "고려대학교", "basic", "bob", "Bob Lee"),
        ("snu", "서울대학교", "basic", "carol", "Carol Park"),
    ];
    for (id, name, plan, user, user_name) in tenants {
        let tenant = Tenant {
            id: id.into(),
            name: name.into(),
        };
        store.create_tenant(&tenant).await?;
        store
            .create_user(&User {
                id: user.into(),
                tenant_id: id.into(),
                name: user_name.into(),
                email: format!("{user}@{id}.ac.kr"),
                password_hash: crypto::hash_password(DEV_PASSWORD)?,
            })
            .await?;
        for (service_id, _, _) in &services {
            store
                .create_subscription(service_id, id, plan, SubscriptionState::Active, None)
                .await?;
        }
        // basic_service is reachable in the dev stack: it gets each tenant provisioned.
        let basic = store.service("basic_service").await?;
        if let Some(service) = basic
            && let Err(e) = market.queue_provision(&service, &tenant, plan, None).await
        {
            tracing::warn!(error = %e, "cannot queue a dev provision command");
        }
    }
    Ok(())
}
