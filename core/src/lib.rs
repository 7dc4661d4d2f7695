//! PetPortrait's shared library: configuration, the domain vocabulary, the one module
//! that holds SQL (`db`), the one module that knows the queue (`queue`), the object
//! store (`storage`), untrusted-image checks (`imaging`) and the local studio.

pub mod config;
pub mod db;
pub mod domain;
pub mod errors;
pub mod ids;
pub mod imaging;
pub mod output_options;
pub mod queue;
pub mod services;
pub mod shutdown;
pub mod storage;
pub mod studio;
pub mod telemetry;
pub mod time;
