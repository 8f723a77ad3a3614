//! The tenant of the running request, as a task-local: [`current_tenant`], [`in_tenant`] and
//! [`spawn_in_tenant`].

use std::future::Future;

use tokio::task::JoinHandle;

use crate::core::tenant::Tenant;

tokio::task_local! {
    static CURRENT_TENANT: Tenant;
}

/// The tenant of the request being served, anywhere inside it; `None` outside a tenant route.
pub fn current_tenant() -> Option<Tenant> {
    CURRENT_TENANT.try_with(Tenant::clone).ok()
}

/// Runs `future` with `tenant` as its [`current_tenant`].
pub async fn in_tenant<F: Future>(tenant: Tenant, future: F) -> F::Output {
    CURRENT_TENANT.scope(tenant, future).await
}

/// Spawns `future` on the runtime, carrying the current tenant (if any) into it.
///
/// `tokio::spawn` starts a task with no task-locals; use this instead for background work
/// that must know its tenant.
pub fn spawn_in_tenant<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tenant = current_tenant();
    tokio::spawn(async move {
        match tenant {
            Some(tenant) => CURRENT_TENANT.scope(tenant, future).await,
            None => future.await,
        }
    })
}
