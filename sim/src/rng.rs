//! One root seed, one rng per component.
//!
//! Every source of randomness in a run (options, fault schedule, each loader, each client worker,
//! turmoil itself) is a [`ChaCha8Rng`] seeded from the run's seed and the component's name, so
//! adding a component or drawing more numbers in one never shifts another's sequence.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The seed of component `name` in the run of `seed`.
pub fn component_seed(seed: u64, name: &str) -> u64 {
    xxh3_64_with_seed(name.as_bytes(), seed)
}

/// The rng of component `name` in the run of `seed`.
pub fn component_rng(seed: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(component_seed(seed, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn components_are_independent_and_stable() {
        let a: u64 = component_rng(1, "a").random();
        let a2: u64 = component_rng(1, "a").random();
        let b: u64 = component_rng(1, "b").random();
        let a_other_seed: u64 = component_rng(2, "a").random();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_ne!(a, a_other_seed);
    }
}
