//! Privacy: the personal-data inventory (`inventory.rs`) that export and deletion are
//! built on, the append-only audit log of privacy operations (`audit.rs`), and privacy
//! requests (`requests.rs`) carried out by the privacy job: the access export
//! (`export.rs`, written as a ZIP by `archive.rs`) and the account's deletion
//! (`deletion.rs`).

pub mod archive;
pub mod audit;
pub mod deletion;
pub mod export;
pub mod inventory;
pub mod requests;
