//! OCI distribution pieces shared by the image and Ollama sources and the registry target
//! (issue 3/4 build on these): image references and registry auth challenges.

pub mod archive;
pub mod auth;
pub mod challenge;
pub mod client;
pub mod image;
pub mod layout;
pub mod model;
pub mod ollama;
pub mod push;
pub mod reference;
