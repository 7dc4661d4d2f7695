//! Privacy: the personal-data inventory (`inventory.rs`) that export and deletion are
//! built on.

pub mod inventory;
