//! Integrations with the marketplace (DESIGN §2.2 `integrations/`).

pub mod activity_log;
pub mod entitlements;
pub mod marketplace;

pub use self::{
    entitlements::{CachedEntitlement, EntitlementError, Entitlements, Lookup},
    marketplace::{Fetched, MarketError, MarketplaceClient},
};
