//! Validation of request inputs (keys, values, group names), shared by every front door.

/// Default bound on key length, in bytes.
pub const DEFAULT_MAX_KEY_BYTES: usize = 250;
/// Default bound on value size, in bytes (1 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
/// Bound on group name length, in bytes.
pub const MAX_GROUP_NAME_BYTES: usize = 64;

/// Size bounds on keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted key, in bytes.
    pub max_key_bytes: usize,
    /// Largest accepted value, in bytes.
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Keys must not be empty.
    #[error("key is empty")]
    EmptyKey,
    /// The key is longer than allowed.
    #[error("key is {len} bytes, more than the limit of {max}")]
    KeyTooLong {
        /// Length of the key.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is larger than allowed.
    #[error("value is {len} bytes, more than the limit of {max}")]
    ValueTooLarge {
        /// Size of the value.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Group names must not be empty.
    #[error("group name is empty")]
    EmptyGroupName,
    /// The group name is longer than [`MAX_GROUP_NAME_BYTES`].
    #[error("group name is {len} bytes, more than the limit of {max}")]
    GroupNameTooLong {
        /// Length of the name.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The group name has a character outside `[A-Za-z0-9_.-]`.
    #[error("group name {0:?} has characters outside [A-Za-z0-9_.-]")]
    InvalidGroupName(String),
}

impl Limits {
    /// Accepts a non-empty key of at most `max_key_bytes` bytes.
    pub fn check_key(&self, key: &[u8]) -> Result<(), LimitError> {
        if key.is_empty() {
            return Err(LimitError::EmptyKey);
        }
        if key.len() > self.max_key_bytes {
            return Err(LimitError::KeyTooLong {
                len: key.len(),
                max: self.max_key_bytes,
            });
        }
        Ok(())
    }

    /// Accepts a value (possibly empty) of at most `max_value_bytes` bytes.
    pub fn check_value(&self, value: &[u8]) -> Result<(), LimitError> {
        if value.len() > self.max_value_bytes {
            return Err(LimitError::ValueTooLarge {
                len: value.len(),
                max: self.max_value_bytes,
            });
        }
        Ok(())
    }
}

/// Accepts a group name: 1 to [`MAX_GROUP_NAME_BYTES`] bytes of `[A-Za-z0-9_.-]`.
pub fn check_group_name(name: &str) -> Result<(), LimitError> {
    if name.is_empty() {
        return Err(LimitError::EmptyGroupName);
    }
    if name.len() > MAX_GROUP_NAME_BYTES {
        return Err(LimitError::GroupNameTooLong {
            len: name.len(),
            max: MAX_GROUP_NAME_BYTES,
        });
    }
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if !name.bytes().all(valid) {
        return Err(LimitError::InvalidGroupName(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let l = Limits::default();
        assert_eq!(l.check_key(b""), Err(LimitError::EmptyKey));
        assert_eq!(l.check_key(b"k"), Ok(()));
        assert_eq!(l.check_key(&[0u8; 250]), Ok(()));
        assert_eq!(
            l.check_key(&[0u8; 251]),
            Err(LimitError::KeyTooLong { len: 251, max: 250 })
        );
    }

    #[test]
    fn values() {
        let l = Limits {
            max_key_bytes: 4,
            max_value_bytes: 8,
        };
        assert_eq!(l.check_value(b""), Ok(()));
        assert_eq!(l.check_value(&[1; 8]), Ok(()));
        assert_eq!(
            l.check_value(&[1; 9]),
            Err(LimitError::ValueTooLarge { len: 9, max: 8 })
        );
        assert_eq!(Limits::default().max_value_bytes, 1 << 20);
    }

    #[test]
    fn group_names() {
        assert_eq!(check_group_name("users.v2-hot_set"), Ok(()));
        assert_eq!(check_group_name(&"a".repeat(64)), Ok(()));
        assert_eq!(check_group_name(""), Err(LimitError::EmptyGroupName));
        assert_eq!(
            check_group_name(&"a".repeat(65)),
            Err(LimitError::GroupNameTooLong { len: 65, max: 64 })
        );
        for bad in ["a b", "a/b", "é", "a\0", "x:y"] {
            assert_eq!(
                check_group_name(bad),
                Err(LimitError::InvalidGroupName(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_explain_themselves() {
        let e = LimitError::KeyTooLong { len: 300, max: 250 };
        assert_eq!(
            e.to_string(),
            "key is 300 bytes, more than the limit of 250"
        );
        assert_eq!(
            LimitError::InvalidGroupName("a b".into()).to_string(),
            "group name \"a b\" has characters outside [A-Za-z0-9_.-]"
        );
    }
}
