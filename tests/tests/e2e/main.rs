//! End-to-end tests across the workspace's binaries, on real tools.

mod confinement;
mod flags;
mod footprint;
mod layering;
mod limits;
mod measure;
mod pipeline;
mod plugins;
mod programs;
mod reliability;
mod resume;
mod sandboxing;
mod support;
