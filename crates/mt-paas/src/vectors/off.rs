//! This build has no vector store (the `vectors` feature is off): the configuration refuses
//! `database.vector`, so a store is never made and these types have no values.

use std::{convert::Infallible, sync::Arc};

use crate::{
    config::{CollectionSpec, Config},
    core::{
        database::{DatabaseRouter, Target},
        models::TenantRecord,
    },
};

/// No vector store.
#[derive(Debug, Clone)]
pub(crate) enum VectorStore {}

/// No tenant's collections (never made: only a [`VectorStore`] makes one).
#[derive(Debug)]
pub(crate) struct TenantVectors;

/// No exported collection: an archive's `.vectors.json`, if any, must be an empty list.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum ExportedCollection {}

impl VectorStore {
    pub(crate) fn from_config(_: Arc<Config>, _: DatabaseRouter) -> Option<Self> {
        None
    }

    pub(crate) fn provisioned_collections(&self) -> &[CollectionSpec] {
        match *self {}
    }

    pub(crate) fn keeps_vectors_outside_the_database(&self) -> bool {
        match *self {}
    }

    pub(crate) fn for_record(&self, _: &TenantRecord, _: Option<Target>) -> TenantVectors {
        match *self {}
    }
}

impl TenantVectors {
    pub(crate) async fn create_collection(&self, _: &str, _: usize) -> Result<(), Infallible> {
        Ok(())
    }

    pub(crate) async fn export(&self) -> Result<Vec<ExportedCollection>, Infallible> {
        Ok(Vec::new())
    }

    pub(crate) async fn import(&self, _: &[ExportedCollection]) -> Result<(), Infallible> {
        Ok(())
    }

    pub(crate) async fn drop_all(&self) -> Result<usize, Infallible> {
        Ok(0)
    }
}
