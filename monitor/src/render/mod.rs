//! Renderers: turn a `World` into text. They never read the kernel.

pub mod json;
pub mod status;
pub mod table;
