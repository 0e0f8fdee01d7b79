//! LCache discovery.
#![warn(missing_docs)]
