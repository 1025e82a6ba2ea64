//! Event sinks for the live view: aligned human lines or JSON Lines.

pub mod human;
pub mod json;
