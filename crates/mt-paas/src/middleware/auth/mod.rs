//! Authentication: the service's JWTs.

mod jwt;

pub use self::jwt::{Claims, JwtKeys, TokenError};
