//! Privacy: the personal-data inventory (`inventory.rs`) that export and deletion are
//! built on, and the append-only audit log of privacy operations (`audit.rs`).

pub mod audit;
pub mod inventory;
