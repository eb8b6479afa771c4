//! Where bytes go on the isolated side. Every target takes a [`crate::bundle::VerifiedBundle`],
//! plans first (so `--dry-run` is free and conflicts abort before any write), then writes each
//! file as temp → digest check → fsync → rename.

pub mod files;
pub mod oci_layout;
