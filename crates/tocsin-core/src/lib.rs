//! Tocsin's domain, kept pure: no IO, no async, no HTTP, no SQL.
//! Every rule about tokens, permissions, roles and keys lives here so the
//! server and the store can only use them, never restate them.

pub mod alert;
pub mod ids;
pub mod integration;
pub mod json;
pub mod key;
pub mod permission;
pub mod policy;
pub mod role;
pub mod search;
pub mod token;
pub mod validation;

pub use ids::*;
pub use permission::{PermSet, Permission};
