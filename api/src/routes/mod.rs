//! One module per resource of the API contract.

pub mod account;
pub mod catalogue;
pub mod events;
pub mod files;
pub mod gallery;
pub mod generations;
pub mod health;
pub mod payments;
pub mod policy;
pub mod privacy;
pub mod tokens;
pub mod uploads;
pub mod webhooks;
