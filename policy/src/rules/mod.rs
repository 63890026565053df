//! The rules, one file per family, side by side: each judges one part of a
//! command and writes its findings into the shared [`crate::ctx::Ctx`].
//! They import the context, the verdict types and the helpers below them
//! (the policy model, the root's file system), never the checker that
//! calls them.

/// The argument grammar: each argv word against the program's allowlist.
pub(crate) mod args;
/// The tool's binary: the kind is allowed, the program resolves inside its `dirs`, is not world-writable and matches its pin.
pub(crate) mod binary;
/// Input directories (`-I`, `-L`, ...): everything beneath one a tool may read must be an input.
pub(crate) mod dirs;
/// The environment: only the variables, and values, the policy allows.
pub(crate) mod env;
/// What the linker reads from the root: objects and archives that name no other file, at check time and right before it runs.
pub(crate) mod linker;
/// The paths: cwd, inputs and outputs inside the root, and the whole-log rules on them.
pub(crate) mod paths;
