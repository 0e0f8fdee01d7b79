//! LCache node.
#![warn(missing_docs)]
