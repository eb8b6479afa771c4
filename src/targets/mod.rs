//! Where bytes go on the isolated side. Every target reads from a verified bundle (the files
//! target from a [`crate::bundle::VerifiedBundle`], the image targets through it as a
//! [`crate::oci::image::BlobSource`]), plans first (so `--dry-run` is free and conflicts abort
//! before any write), then writes each file as temp → digest check → fsync → rename.

pub mod files;
pub mod hf_cache;
pub mod models_dir;
pub mod oci_layout;
pub mod ollama;
pub mod registry;
