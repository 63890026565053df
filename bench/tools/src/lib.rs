//! Helpers for the benchmarks of issue 7, behind two thin binaries:
//! `treepeak` (a process-tree peak-memory sampler, [`proc_tree`]) and `plot`
//! (the scale figure, [`scale_plot`]).
//!
//! `treepeak` is the benchmark's referee for memory, so nothing here is
//! shared with replay's own monitor: the two measure the same runs
//! independently and the benchmark compares them.

pub mod proc_tree;
pub mod scale_plot;
