//! airlock: carry AI artifacts across an air gap as signed, chunked bundles.
//!
//! See `ARCHITECTURE.md` for the codemap and invariants, `docs/FORMAT.md` for the bundle format.

pub mod audit;
pub mod blob;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod error;
pub mod format;
pub mod fsutil;
pub mod hf;
pub mod import;
pub mod interrupt;
pub mod media;
pub mod net;
pub mod oci;
pub mod output;
pub mod policy;
pub mod problem;
pub mod progress;
pub mod schema;
pub mod sign;
pub mod sources;
pub mod spec;
pub mod stage;
pub mod state;
pub mod table;
pub mod targets;

pub use error::{Error, Result};
