//! Parsing the command-line forms of sizes, durations and group settings.

use crate::config::{GroupConfig, HotCacheConfig, MissCacheConfig};
use crate::origin::OriginLoader;
use lcache_core::limits::Limits;
use lcache_core::store::Policy;
use std::time::Duration;

/// Why a command-line setting could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{input}`: {reason}")]
pub struct SpecError {
    what: &'static str,
    input: String,
    reason: String,
}

impl SpecError {
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        SpecError {
            what,
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}

/// A byte size such as `512`, `64KiB`, `64MiB`, `1GiB` or `10MB`.
pub fn parse_size(input: &str) -> Result<u64, SpecError> {
    input
        .trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|err| SpecError::new("size", input, err))
}

/// A duration such as `30s`, `500ms`, `5m` or `1h 30m`.
pub fn parse_duration(input: &str) -> Result<Duration, SpecError> {
    humantime::parse_duration(input.trim())
        .map_err(|err| SpecError::new("duration", input, err.to_string()))
}

/// An eviction policy: `tinylfu` (the default), `lru`, `lru2` or `lru2:<protected percent>`.
pub fn parse_policy(input: &str) -> Result<Policy, SpecError> {
    match input.trim().to_ascii_lowercase().as_str() {
        "tinylfu" => Ok(Policy::TinyLfu),
        "lru" => Ok(Policy::Lru),
        "lru2" => Ok(Policy::lru2()),
        other => {
            let percent = other
                .strip_prefix("lru2:")
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| (1..=99).contains(p))
                .ok_or_else(|| {
                    SpecError::new(
                        "policy",
                        input,
                        "expected tinylfu, lru, lru2 or lru2:<1-99>",
                    )
                })?;
            Ok(Policy::Lru2 {
                protected_percent: percent,
            })
        }
    }
}

/// A group: `NAME[:key=value,...]` with keys `budget` (size), `policy`, `ttl` (duration or
/// `none`), `shards`, `hot` (size, `0` disables the hot cache), `hot-ttl` (duration),
/// `miss-ttl` (how long a loader miss is remembered, `0` turns it off), `miss-budget` (size) and
/// `origin` (an `http://…/{key}` URL template: the group loads misses from it, see
/// [`crate::origin`]).
///
/// Example: `users:budget=128MiB,policy=lru2,ttl=30s,hot=16MiB,hot-ttl=2s,miss-ttl=1s`.
pub fn parse_group(input: &str) -> Result<GroupConfig, SpecError> {
    parse_group_with(input, &Limits::default())
}

/// [`parse_group`] for a node with `limits` (an origin refuses values over the value limit).
pub fn parse_group_with(input: &str, limits: &Limits) -> Result<GroupConfig, SpecError> {
    let (name, options) = input.split_once(':').unwrap_or((input, ""));
    let name = name.trim();
    if name.is_empty() {
        return Err(SpecError::new("group", input, "the group needs a name"));
    }
    let mut group = GroupConfig::new(name);
    let mut hot_budget = None;
    let mut hot_lifetime = GroupConfig::DEFAULT_HOT_LIFETIME;
    let mut miss_budget = None;
    let mut miss_ttl = GroupConfig::DEFAULT_MISS_TTL;
    for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (key, value) = option.split_once('=').ok_or_else(|| {
            SpecError::new("group", input, format!("`{option}` is not key=value"))
        })?;
        match key.trim() {
            "budget" => group = group.with_budget(parse_size(value)?),
            "policy" => group.policy = parse_policy(value)?,
            "ttl" if value.trim() == "none" => group.default_ttl = None,
            "ttl" => group.default_ttl = Some(parse_duration(value)?),
            "shards" => {
                group.shards = value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| n.is_power_of_two())
                    .ok_or_else(|| SpecError::new("shards", value, "expected a power of two"))?;
            }
            "hot" => hot_budget = Some(parse_size(value)?),
            "hot-ttl" => hot_lifetime = parse_duration(value)?,
            "miss-ttl" if value.trim() == "0" => miss_ttl = Duration::ZERO,
            "miss-ttl" => miss_ttl = parse_duration(value)?,
            "miss-budget" => miss_budget = Some(parse_size(value)?),
            "origin" => {
                let origin = OriginLoader::new(value.trim(), limits.max_value_bytes)
                    .map_err(|err| SpecError::new("origin", value, err.to_string()))?;
                group = group.with_loader(origin);
            }
            other => {
                return Err(SpecError::new(
                    "group",
                    input,
                    format!(
                        "unknown option `{other}` (budget, policy, ttl, shards, hot, hot-ttl, \
                         miss-ttl, miss-budget, origin)"
                    ),
                ))
            }
        }
    }
    let hot_budget = hot_budget.unwrap_or(group.budget_bytes / 8);
    group.hot = (hot_budget > 0).then_some(HotCacheConfig {
        budget_bytes: hot_budget,
        lifetime: hot_lifetime,
    });
    let miss_budget = miss_budget.unwrap_or(group.budget_bytes / GroupConfig::MISS_BUDGET_DIVISOR);
    group.misses = (miss_budget > 0 && !miss_ttl.is_zero()).then_some(MissCacheConfig {
        budget_bytes: miss_budget,
        ttl: miss_ttl,
    });
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("64 MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn policies() {
        assert_eq!(parse_policy("tinylfu").unwrap(), Policy::TinyLfu);
        assert_eq!(parse_policy(" TinyLFU ").unwrap(), Policy::TinyLfu);
        assert_eq!(parse_policy("LRU").unwrap(), Policy::Lru);
        assert_eq!(parse_policy("lru2").unwrap(), Policy::lru2());
        assert_eq!(
            parse_policy("lru2:60").unwrap(),
            Policy::Lru2 {
                protected_percent: 60
            }
        );
        for bad in ["lfu", "lru2:0", "lru2:100", "lru2:x"] {
            assert!(parse_policy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_with_every_option() {
        let g = parse_group("users:budget=128MiB,policy=lru,ttl=30s,shards=8,hot=16MiB,hot-ttl=3s")
            .unwrap();
        assert_eq!(g.name, "users");
        assert_eq!(g.budget_bytes, 128 << 20);
        assert_eq!(g.policy, Policy::Lru);
        assert_eq!(g.default_ttl, Some(Duration::from_secs(30)));
        assert_eq!(g.shards, 8);
        assert_eq!(
            g.hot,
            Some(HotCacheConfig {
                budget_bytes: 16 << 20,
                lifetime: Duration::from_secs(3)
            })
        );
    }

    #[test]
    fn group_defaults_and_disabled_hot_cache() {
        let g = parse_group("plain").unwrap();
        assert_eq!(g.budget_bytes, GroupConfig::DEFAULT_BUDGET_BYTES);
        assert_eq!(g.policy, Policy::TinyLfu);
        assert_eq!(g.default_ttl, None);
        assert_eq!(g.hot.map(|h| h.budget_bytes), Some(g.budget_bytes / 8));
        assert_eq!(parse_group("cold:hot=0").unwrap().hot, None);
        assert_eq!(
            g.misses,
            Some(MissCacheConfig {
                budget_bytes: g.budget_bytes / 32,
                ttl: Duration::from_secs(1)
            })
        );
        assert_eq!(parse_group("open:miss-ttl=0").unwrap().misses, None);
        let m = parse_group("m:miss-ttl=250ms,miss-budget=1MiB").unwrap();
        assert_eq!(
            m.misses,
            Some(MissCacheConfig {
                budget_bytes: 1 << 20,
                ttl: Duration::from_millis(250)
            })
        );
    }

    #[tokio::test]
    async fn an_origin_gives_the_group_a_loader() {
        let g = parse_group("items:origin=http://127.0.0.1:8080/items/{key}").unwrap();
        assert!(g.loader.is_some());
        assert!(parse_group("plain").unwrap().loader.is_none());
        let err = parse_group("items:origin=http://127.0.0.1:8080/items/").unwrap_err();
        assert!(err.to_string().contains("{key}"), "{err}");
    }

    #[test]
    fn bad_groups_are_explained() {
        for bad in [
            "",
            ":budget=1MiB",
            "g:budget",
            "g:colour=blue",
            "g:shards=3",
            "g:ttl=later",
        ] {
            let err = parse_group(bad).unwrap_err();
            assert!(err.to_string().starts_with("invalid"), "{bad}: {err}");
        }
    }
}
