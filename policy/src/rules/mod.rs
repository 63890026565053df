//! The rules, one file per family, side by side: each judges one part of a
//! command and writes its findings into the shared [`crate::ctx::Ctx`].
//! They import the context, the verdict types and the helpers below them
//! (the policy model, the root's file system), never the checker that
//! calls them. What each family judges:
//!
//! - [`binary`]: the tool's binary: its kind is allowed, the program
//!   resolves inside the kind's `dirs`, is not world-writable, matches its pin;
//! - [`args`]: the argument grammar: each argv word against the program's allowlist;
//! - [`paths`]: cwd, inputs and outputs inside the root, and the whole-log rules on them;
//! - [`late`]: the per-path whole-log rules judged after the stream, for logs
//!   whose paths were spilled to disk;
//! - [`dirs`]: input directories (`-I`, `-L`, ...): all a tool may read beneath one is an input;
//! - [`linker`]: what the linker reads from the root: objects and archives
//!   that name no other file, at check time and right before it runs;
//! - [`derived`]: outputs a flag writes unnamed (`-gsplit-dwarf`'s `.dwo`) are declared;
//! - [`builtin`]: the built-in file operations: allowed, well formed, naming what they declare;
//! - [`env`](mod@env): the environment: only the variables, and values, the policy allows.

pub(crate) mod args;
pub(crate) mod binary;
pub(crate) mod builtin;
pub(crate) mod derived;
pub(crate) mod dirs;
pub(crate) mod env;
pub(crate) mod late;
pub(crate) mod linker;
pub(crate) mod paths;
