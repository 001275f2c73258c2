//! The crate's services behind other Redis client libraries' APIs, so code written against them
//! runs through the maintenance-aware layers unchanged.
//!
//! - `redis_rs` (feature `redis-rs`): redis-rs's async `ConnectionLike` for [`Stack`],
//!   [`Pool`] and, through `redis_rs::RedisRs`, any service of the crate.
//!
//! [`Stack`]: crate::Stack
//! [`Pool`]: crate::Pool

#[cfg(feature = "redis-rs")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-rs")))]
pub mod redis_rs;
