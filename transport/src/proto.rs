//! Code generated from `proto/lcache/v1/cache.proto` (package `lcache.v1`).
//!
//! These types are the wire format only; the rest of LCache uses the domain types of
//! [`crate::types`], converted in the private `convert` module.
#![allow(missing_docs, missing_debug_implementations, clippy::all)]

tonic::include_proto!("lcache.v1");
