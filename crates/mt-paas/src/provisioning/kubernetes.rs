//! DOCKER_PER_TENANT beyond one machine (DESIGN §9): the same tenant stack as Kubernetes
//! manifests. One namespace per tenant holds its database (a StatefulSet with its own
//! volume, a Service, a Secret with the tenant's credentials) and, with `images.app`, the
//! service's own app; a NetworkPolicy admits traffic only from inside the namespace and from
//! pods labelled `mt-paas.io/role: router` (the service that routes to it); a ResourceQuota
//! bounds what one tenant may take.
//!
//! `mt-paas tenant render ID --target kubernetes` prints them; CI validates them offline
//! against the Kubernetes schemas.

use serde_json::json;

use super::ProvisionError;
use crate::{
    config::Config,
    core::{database::docker_database_url, models::TenantId},
};

/// The database port inside the namespace.
const DB_PORT: u16 = 5432;
/// The app's port inside the namespace.
const APP_PORT: u16 = 8000;

/// The namespace of `tenant` in `service`: `mtp-{service}-{tenant}` with `_` as `-`, and the
/// first 8 hex digits of SHA-256 over both ids, so that ids which differ only in `_` / `-`
/// (or whose join is ambiguous) never share one. At most 63 characters.
pub(crate) fn namespace(service: &str, tenant: &TenantId) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{service}\0{tenant}").as_bytes(),
    );
    let hash: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let readable = format!("mtp-{service}-{tenant}").replace('_', "-");
    // 63 − "-" − 8 hex digits; ids are ASCII, so bytes are characters.
    let mut readable = readable[..readable.len().min(54)].to_owned();
    while readable.ends_with('-') {
        readable.pop();
    }
    format!("{readable}-{hash}")
}

/// The manifests of `tenant`'s stack, as one multi-document YAML stream.
pub fn render(
    config: &Config,
    tenant: &TenantId,
    display_name: &str,
) -> Result<String, ProvisionError> {
    let docker = &config.isolation.docker;
    let service = &config.service.id;
    let ns = namespace(service, tenant);
    let url = docker_database_url(config, tenant, DB_PORT);
    let options = url
        .pg_options()
        .map_err(|e| ProvisionError::Docker(format!("isolation.docker.database_url: {e}")))?;
    let user = options.get_username().to_owned();
    let password = url.password().unwrap_or_default();
    let database = options.get_database().unwrap_or("app").to_owned();
    let labels = json!({
        "app.kubernetes.io/managed-by": "mt-paas",
        "mt-paas.io/service": service,
        "mt-paas.io/tenant": tenant.as_str(),
    });
    let with = |component: &str| {
        let mut labels = labels.clone();
        labels["app.kubernetes.io/component"] = json!(component);
        labels
    };
    let mut documents = vec![
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "labels": labels,
                "annotations": {"mt-paas.io/tenant-name": display_name},
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": ns, "labels": with("db")},
            "type": "Opaque",
            "stringData": {
                "POSTGRES_USER": user,
                "POSTGRES_PASSWORD": password,
                "POSTGRES_DB": database,
                "DATABASE_URL": format!("postgresql://{user}:{password}@db:{DB_PORT}/{database}"),
            },
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": ns, "labels": with("db")},
            "spec": {
                "serviceName": "db",
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/component": "db"}},
                "template": {
                    "metadata": {"labels": with("db")},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "containers": [{
                            "name": "db",
                            "image": docker.images.db,
                            "envFrom": [{"secretRef": {"name": "db"}}],
                            "env": [{"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
                            "ports": [{"name": "postgres", "containerPort": DB_PORT}],
                            "readinessProbe": {
                                "exec": {"command": ["sh", "-c", "pg_isready -h 127.0.0.1 -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\""]},
                                "periodSeconds": 2,
                                "failureThreshold": 30,
                            },
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "1", "memory": "512Mi"},
                            },
                            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
                        }],
                    },
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }],
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "db", "namespace": ns, "labels": with("db")},
            "spec": {
                "selector": {"app.kubernetes.io/component": "db"},
                "ports": [{"name": "postgres", "port": DB_PORT, "targetPort": DB_PORT}],
            },
        }),
    ];
    if let Some(app) = &docker.images.app {
        documents.push(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app", "namespace": ns, "labels": with("app")},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/component": "app"}},
                "template": {
                    "metadata": {"labels": with("app")},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "containers": [{
                            "name": "app",
                            "image": app,
                            "env": [
                                {"name": "MT_PAAS_TENANT_ID", "value": tenant.as_str()},
                                {"name": "PORT", "value": APP_PORT.to_string()},
                                {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "DATABASE_URL"}}},
                            ],
                            "ports": [{"name": "http", "containerPort": APP_PORT}],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "1", "memory": "512Mi"},
                            },
                        }],
                    },
                },
            },
        }));
        documents.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "app", "namespace": ns, "labels": with("app")},
            "spec": {
                "selector": {"app.kubernetes.io/component": "app"},
                "ports": [{"name": "http", "port": APP_PORT, "targetPort": APP_PORT}],
            },
        }));
    }
    documents.push(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "tenant-only", "namespace": ns, "labels": labels},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [
                    {"podSelector": {}},
                    {
                        "namespaceSelector": {},
                        "podSelector": {"matchLabels": {"mt-paas.io/role": "router", "mt-paas.io/service": service}},
                    },
                ],
            }],
        },
    }));
    documents.push(json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "tenant", "namespace": ns, "labels": labels},
        "spec": {
            "hard": {
                "requests.cpu": "2",
                "requests.memory": "2Gi",
                "limits.cpu": "4",
                "limits.memory": "4Gi",
                "pods": "10",
                "persistentvolumeclaims": "4",
                "requests.storage": "20Gi",
            },
        },
    }));
    let mut stream = String::new();
    for document in &documents {
        let yaml = yaml_serde::to_string(document)
            .map_err(|e| ProvisionError::Docker(format!("cannot write a manifest: {e}")))?;
        stream.push_str("---\n");
        stream.push_str(&yaml);
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TenantId {
        s.parse().unwrap()
    }

    #[test]
    fn namespaces_are_valid_and_never_shared() {
        let names = [
            namespace("keli_tutor", &id("a_b")),
            namespace("keli_tutor", &id("a-b")),
            namespace("keli", &id("tutor_a_b")),
            namespace("keli_tutor", &id(&"x".repeat(63))),
        ];
        for name in &names {
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !name.starts_with('-')
                    && !name.ends_with('-'),
                "an RFC 1123 label: {name}"
            );
        }
        let distinct: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
    }
}
