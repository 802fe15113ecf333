//! akscredd: keeps AKS cluster tokens fresh and serves them over a Unix socket.
//!
//! The data flows one way: `config` → `secret` → `entra` → `aks` → `broker`
//! → `live` (reload) → `api` → `systemd`. `main.rs` only wires them.

pub mod aks;
pub mod api;
pub mod broker;
pub mod clock;
pub mod cloud;
pub mod config;
pub mod entra;
pub mod exec_kubeconfig;
pub mod http;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod secret;
pub mod service;
pub mod signals;
pub mod socket;
pub mod systemd;
