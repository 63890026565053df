//! Integration tests of `aotc` on the real LLVM 14 tools: C programs built
//! through partitions and compared with `clang-14`, stability of partition
//! files, the logs it writes, driver mode, other targets, and errors.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]

mod driver;
mod errors;
mod logs;
mod programs;
mod stability;
mod support;
