//! mt-paas against real vector stores: pgvector in the local Postgres, a Chroma server, and a
//! Qdrant that follows Qdrant's documented REST semantics. A test whose store does not answer
//! is listed as ignored with that store named (`tests/support/needs.rs`); under `CI=true` it
//! runs and fails.

#![allow(unreachable_pub, clippy::unwrap_used, clippy::type_complexity)]

#[path = "it/helpers.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
mod helpers;
#[path = "support/needs.rs"]
mod needs;
#[path = "stores/vectors.rs"]
mod vectors;

use needs::{Needs, test};

fn main() -> std::process::ExitCode {
    needs::main(vec![
        test(
            "vectors::pgvector_in_tenant_schemas",
            Needs::Pgvector,
            vectors::pgvector_in_tenant_schemas,
        ),
        test(
            "vectors::pgvector_in_tenant_databases",
            Needs::Pgvector,
            vectors::pgvector_in_tenant_databases,
        ),
        test(
            "vectors::chroma_collections_per_tenant",
            Needs::Chroma,
            vectors::chroma_collections_per_tenant,
        ),
        test(
            "vectors::qdrant_collections_per_tenant",
            Needs::Nothing,
            vectors::qdrant_collections_per_tenant,
        ),
        test(
            "vectors::the_vector_store_is_checked_when_the_config_loads",
            Needs::Nothing,
            vectors::the_vector_store_is_checked_when_the_config_loads,
        ),
    ])
}
