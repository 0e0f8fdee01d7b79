//! Named counters declared once.
//!
//! [`counters!`](macro@crate::counters) turns one list of documented fields into a plain struct of
//! `u64`s (the report), an atomic twin (for counters bumped outside any lock) and the list of
//! names and docs every exporter walks (gRPC stats, the CLI, Prometheus). A counter therefore has
//! exactly one declaration, one doc and one name everywhere it shows.

/// Declares `$plain` (a struct of `u64` counters with `Debug, Clone, Copy, Default, PartialEq,
/// Eq`) and `$atomic` (the same fields as `AtomicU64`), with:
/// - `$plain::NAMES` / `$plain::DOCS`: every field's name and doc, in declaration order;
/// - `$plain::values()`: `(name, value)` pairs in that order; `get(name)` / `set(name, v)`;
/// - `$plain::merge(&other)`: saturating field-wise sum;
/// - `$atomic::snapshot()`: the current values as a `$plain`.
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub struct $plain:ident / $atomic:ident {
            $( $(#[doc = $doc:literal])+ $field:ident, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $plain {
            $( $(#[doc = $doc])+ pub $field: u64, )+
        }

        impl $plain {
            /// Every counter's name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];
            /// Every counter's doc (its `///` lines joined), in declaration order.
            pub const DOCS: &'static [&'static str] = &[$(concat!($($doc, " "),+)),+];

            /// `(name, value)` of every counter, in declaration order.
            pub fn values(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($field), self.$field)),+].into_iter()
            }

            /// The value of the counter called `name`.
            pub fn get(&self, name: &str) -> Option<u64> {
                match name {
                    $(stringify!($field) => Some(self.$field),)+
                    _ => None,
                }
            }

            /// Sets the counter called `name`; false (and no change) for an unknown name.
            pub fn set(&mut self, name: &str, value: u64) -> bool {
                match name {
                    $(stringify!($field) => { self.$field = value; true })+
                    _ => false,
                }
            }

            /// Adds every counter of `other` to `self`, saturating.
            pub fn merge(&mut self, other: &Self) {
                $(self.$field = self.$field.saturating_add(other.$field);)+
            }
        }

        #[doc = concat!("The counters of [`", stringify!($plain), "`] as atomics, for events counted outside any lock.")]
        #[derive(Debug, Default)]
        pub struct $atomic {
            $( $(#[doc = $doc])+ pub $field: ::std::sync::atomic::AtomicU64, )+
        }

        impl $atomic {
            /// The values now (each read on its own, relaxed: not one atomic snapshot).
            pub fn snapshot(&self) -> $plain {
                $plain {
                    $($field: self.$field.load(::std::sync::atomic::Ordering::Relaxed),)+
                }
            }
        }
    };
}

/// Adds one to an atomic counter (relaxed: counters order nothing).
pub fn bump(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    crate::counters! {
        /// Test counters.
        pub struct Sample / AtomicSample {
            /// First one.
            alpha,
            /// Second one,
            /// on two lines.
            beta,
        }
    }

    #[test]
    fn one_declaration_gives_names_docs_values_and_atomics() {
        assert_eq!(Sample::NAMES, ["alpha", "beta"]);
        assert_eq!(Sample::DOCS[0].trim(), "First one.");
        assert_eq!(Sample::DOCS[1].split_whitespace().count(), 5);
        let mut s = Sample { alpha: 1, beta: 2 };
        assert_eq!(s.values().collect::<Vec<_>>(), [("alpha", 1), ("beta", 2)]);
        assert!(s.set("beta", 7));
        assert!(!s.set("gamma", 7));
        assert_eq!((s.get("beta"), s.get("gamma")), (Some(7), None));
        s.merge(&Sample {
            alpha: u64::MAX,
            beta: 1,
        });
        assert_eq!(
            s,
            Sample {
                alpha: u64::MAX,
                beta: 8
            }
        );
        let atomic = AtomicSample::default();
        super::bump(&atomic.beta);
        super::bump(&atomic.beta);
        assert_eq!(atomic.snapshot(), Sample { alpha: 0, beta: 2 });
    }
}
