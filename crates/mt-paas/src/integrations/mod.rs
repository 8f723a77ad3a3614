//! Integrations with the marketplace (DESIGN §2.2 `integrations/`).

pub(crate) mod entitlements;
pub(crate) mod marketplace;

pub(crate) use self::{
    entitlements::{Entitlements, Lookup},
    marketplace::{MarketError, MarketplaceClient},
};
