//! Reporting errors with their whole cause chain: the queue engine's function, so the
//! engine and the platform write causes the same way.

pub use petportrait_queue::error_chain;
