//! LCache sim.
#![warn(missing_docs)]
