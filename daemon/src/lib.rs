//! akscredd: keeps AKS cluster tokens fresh and serves them over a Unix socket.
//!
//! The data flows one way: `config` → `secret` → `entra` → `aks` → `broker`
//! → `api`. `main.rs` only wires them.

pub mod cloud;
pub mod config;
pub mod secret;
