//! Declares the `tokio_unstable` cfg (set workspace-wide in `.cargo/config.toml`) so the crate
//! can report whether it was built with it.
#![allow(clippy::print_stdout)]

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tokio_unstable)");
}
