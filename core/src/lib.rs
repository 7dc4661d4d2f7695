//! PetPortrait's shared library: configuration, the domain vocabulary, the one module
//! that holds SQL (`db`), the one module that knows the queue (`queue`), the object
//! store (`storage`) and untrusted-image checks (`imaging`). The studio is a crate of its
//! own (`petportrait-studio`), which the API and the scheduler never link.

pub mod accounts;
pub mod changes;
pub mod config;
pub mod db;
pub mod domain;
pub mod errors;
pub mod fairness;
pub mod hosts;
pub mod ids;
pub mod imaging;
pub mod memory;
pub mod metrics;
pub mod objects;
pub mod outbound;
pub mod output_options;
pub mod pipe;
pub mod privacy;
pub mod queue;
pub mod rate_limit;
pub mod sealing;
pub mod services;
pub mod shutdown;
pub mod storage;
pub mod stripe;
pub mod telemetry;
pub mod time;
pub mod views;
pub mod webhooks;
