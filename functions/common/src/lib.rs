//! Shared crate of the chat handoff relay: domain types, the session store,
//! credentials, client events and their delivery, and the provider adapters.
pub mod chaos;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod entry;
pub mod error;
pub mod events;
// Pure entry points for fuzz/ and its corpus replay test; not part of the API.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod http_event;
pub mod metrics;
pub mod providers;
pub mod reorder;
pub mod request;
pub mod secrets;
pub mod service;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod time;
