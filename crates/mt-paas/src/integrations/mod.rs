//! Integrations with the marketplace (DESIGN §2.2 `integrations/`).

pub(crate) mod activity_log;
pub(crate) mod entitlements;
pub(crate) mod marketplace;

pub(crate) use self::{
    entitlements::{CachedEntitlement, Entitlements, Lookup},
    marketplace::{MarketError, MarketplaceClient},
};
