//! Integration tests of `aotc` on the real LLVM 14 tools: C programs built
//! through partitions and compared with `clang-14`, stability of partition
//! files, the logs it writes, driver mode, other targets, and errors.

mod driver;
mod errors;
mod logs;
mod programs;
mod stability;
mod support;
