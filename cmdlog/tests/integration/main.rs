//! Integration tests of the `cmdlog` crate: reading, writing, the schema.

mod errors;
mod roundtrip;
mod schema;
mod support;
