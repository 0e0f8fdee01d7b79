//! LCache transport.
#![warn(missing_docs)]
