//! LCache proptests.
#![warn(missing_docs)]
