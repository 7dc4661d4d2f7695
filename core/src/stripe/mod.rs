//! Stripe: verifying the events it signs, calling its API (Checkout Sessions), and
//! reading what a paid session bought.

mod client;
mod sessions;
mod signature;

pub use client::{CheckoutRequest, CreatedSession, STRIPE_VERSION, SessionPage, StripeClient, StripeError};
pub use sessions::{CheckoutSession, NotOurs, purchase_for};
pub use signature::{SIGNATURE_TOLERANCE_SECS, SignatureError, verify_signature};
