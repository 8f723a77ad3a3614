//! The control-plane protocol between a service built on mt-paas and the marketplace
//! (DESIGN §6): the wire types of both directions and the Standard Webhooks signature
//! that authenticates the market's commands.
//!
//! Field names are the seed's. Every type tolerates unknown fields, so either side can add
//! fields without breaking the other.
//!
//! ```
//! use mt_paas_protocol::webhook::{WebhookSecret, sign, Verifier};
//!
//! let secret: WebhookSecret = "whsec_bXQtcGFhcy1kZXYtd2ViaG9vay1zZWNyZXQtMzJieQ==".parse().unwrap();
//! let body = br#"{"reason":"subscription_expired"}"#;
//! let headers = sign(&secret, "msg_1", 1_767_441_600, body);
//! let verifier = Verifier::new(vec![secret]);
//! assert!(verifier.verify(&headers.id, &headers.timestamp, &headers.signature, body, 1_767_441_600).is_ok());
//! ```

pub mod openapi;
pub mod paths;
pub mod types;
pub mod webhook;
pub mod xapi;

pub use types::*;
