//! The plugin ABI, version 1, as the host uses it: the types and schemas
//! live once, in the `replay-plugin-abi` crate, shared with the guest kit.

pub use replay_plugin_abi::*;
