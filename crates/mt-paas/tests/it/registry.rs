//! The tenant registry, on SQLite and on Postgres.

use mt_paas::{
    CentralDb, Features, IsolationMode, ManagerError, NewTenant, TenantId, TenantManager,
    TenantStatus,
};

use crate::helpers::{Backend, TestDb, on_both_backends};

fn id(s: &str) -> TenantId {
    s.parse().unwrap()
}

async fn open(db: &TestDb) -> (CentralDb, TenantManager) {
    let config = db.config("");
    let central = CentralDb::connect(&config.database.central)
        .await
        .expect("central DB");
    let manager = TenantManager::new(
        central.clone(),
        IsolationMode::DatabasePerTenant,
        Features::default(),
    );
    (central, manager)
}

async fn registry_lifecycle(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let (central, manager) = open(&db).await;

    assert_eq!(manager.count().await.unwrap(), 0);
    let hallym = manager
        .create(NewTenant::new(id("hallym"), "한림대학교"))
        .await
        .unwrap();
    manager
        .create(NewTenant::new(id("snu"), "서울대학교").isolation(IsolationMode::SchemaPerTenant))
        .await
        .unwrap();
    manager
        .create(NewTenant::new(id("korea"), "고려대학교").status(TenantStatus::Provisioning))
        .await
        .unwrap();

    let stored = manager.get(&id("hallym")).await.unwrap().unwrap();
    assert_eq!(stored, hallym, "a record reads back exactly as created");
    assert_eq!(stored.status, TenantStatus::Active);
    assert_eq!(stored.isolation, None);

    let list = manager.list().await.unwrap();
    let ids: Vec<&str> = list.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["hallym", "korea", "snu"]);
    assert_eq!(list[2].isolation, Some(IsolationMode::SchemaPerTenant));
    assert_eq!(list[1].status, TenantStatus::Provisioning);
    assert_eq!(manager.count().await.unwrap(), 3);

    let dup = manager.create(NewTenant::new(id("hallym"), "again")).await;
    assert!(
        matches!(dup, Err(ManagerError::AlreadyExists(ref t)) if t.as_str() == "hallym"),
        "{dup:?}"
    );

    manager
        .set_status(&id("korea"), TenantStatus::Active)
        .await
        .unwrap();
    assert_eq!(
        manager.get(&id("korea")).await.unwrap().unwrap().status,
        TenantStatus::Active
    );
    assert!(matches!(
        manager
            .set_status(&id("nobody"), TenantStatus::Active)
            .await,
        Err(ManagerError::NotFound(_))
    ));

    manager.remove(&id("snu")).await.unwrap();
    assert!(manager.get(&id("snu")).await.unwrap().is_none());
    assert!(matches!(
        manager.remove(&id("snu")).await,
        Err(ManagerError::NotFound(_))
    ));

    // A second connection (another process, a restart) sees the same registry.
    central.close().await;
    let (central, manager) = open(&db).await;
    assert_eq!(manager.count().await.unwrap(), 2);
    central.close().await;
    db.cleanup().await;
}
on_both_backends!(registry_lifecycle);

async fn display_names_are_checked(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let (central, manager) = open(&db).await;
    for bad in ["", "   ", "a\nb", &"x".repeat(201)] {
        let result = manager.create(NewTenant::new(id("t1"), bad)).await;
        assert!(
            matches!(result, Err(ManagerError::InvalidName(_))),
            "{bad:?}: {result:?}"
        );
    }
    assert_eq!(manager.count().await.unwrap(), 0);
    central.close().await;
    db.cleanup().await;
}
on_both_backends!(display_names_are_checked);

async fn migrations_are_idempotent(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let (central, manager) = open(&db).await;
    manager.create(NewTenant::new(id("a"), "A")).await.unwrap();
    central.migrate().await.unwrap();
    central.migrate().await.unwrap();
    assert_eq!(manager.count().await.unwrap(), 1);
    central.close().await;
    db.cleanup().await;
}
on_both_backends!(migrations_are_idempotent);

async fn the_cache_sees_changes_made_through_the_manager(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let (central, manager) = open(&db).await;
    assert!(manager.resolve(&id("late")).await.unwrap().is_none());
    manager
        .create(NewTenant::new(id("late"), "Late"))
        .await
        .unwrap();
    let tenant = manager
        .resolve(&id("late"))
        .await
        .unwrap()
        .expect("created tenant resolves at once");
    assert_eq!(tenant.name(), "Late");
    manager
        .set_status(&id("late"), TenantStatus::Suspended)
        .await
        .unwrap();
    let tenant = manager.resolve(&id("late")).await.unwrap().unwrap();
    assert_eq!(tenant.record().status, TenantStatus::Suspended);
    central.close().await;
    db.cleanup().await;
}
on_both_backends!(the_cache_sees_changes_made_through_the_manager);
