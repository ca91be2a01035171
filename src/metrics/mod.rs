//! Lifetime metrics: a typed set of monotonic counters (and one histogram), persisted in the store with
//! every commit so they survive restarts, and served in the Prometheus text format.
//!
//! - [`model`]: the counters the daemon updates (one relaxed atomic add each, nothing else on the hot
//!   path) and the histogram.
//! - [`persist`]: the table of every counter with its **stable ID**, the key its lifetime value is saved
//!   under. IDs never change; a metric can be renamed freely. Saved states written before the IDs existed
//!   (keyed by the series string) are migrated on load.
//! - [`exposition`]: the Prometheus text format, built with the `prometheus` crate's data model and
//!   `TextEncoder` from the same table.
//! - [`http`]: `GET /metrics`.
//!
//! Counters are never reset on read. At start-up the daemon loads the totals the store saved and keeps
//! counting from there; each commit saves the current totals.

mod exposition;
mod http;
mod model;
mod persist;

pub use http::{MetricsError, MetricsServer};
pub use model::{Counter, EntryErrorCounters, Histogram, Metrics, StoreHealth, SYNC_BUCKETS};
