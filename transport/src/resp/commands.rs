//! The commands the RESP front door knows: one table ([`COMMANDS`]) that the dispatcher looks
//! names up in, that checks arity, and that `COMMAND` reports, plus the argument parsing that does
//! not need the handler (`SET`'s options, integers). Error texts follow Redis 7's.

use std::time::Duration;

/// What a command does; the session dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Set,
    Del,
    Exists,
    MGet,
    Ping,
    Echo,
    Quit,
    Info,
    Command,
    Client,
    Hello,
    Select,
    Auth,
    Config,
}

/// One command as `COMMAND` describes it (Redis's command-table fields).
#[derive(Debug)]
pub(crate) struct Spec {
    /// Lower-case name.
    pub(crate) name: &'static str,
    /// What it does.
    pub(crate) op: Op,
    /// Redis arity: `n > 0` exactly n arguments (the name included), `-n` at least n.
    pub(crate) arity: i64,
    /// Redis command flags.
    pub(crate) flags: &'static [&'static str],
    /// Position of the first key argument (0: none).
    pub(crate) first_key: i64,
    /// Position of the last key argument (-1: the last argument).
    pub(crate) last_key: i64,
    /// Step between key arguments.
    pub(crate) key_step: i64,
}

impl Spec {
    /// Whether a request with `len` arguments (the name included) has the right count.
    pub(crate) fn arity_ok(&self, len: usize) -> bool {
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        if self.arity >= 0 {
            len == self.arity
        } else {
            len >= -self.arity
        }
    }
}

const fn spec(
    name: &'static str,
    op: Op,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
) -> Spec {
    Spec {
        name,
        op,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        key_step: keys.2,
    }
}

/// Every command served, the hot ones first (the lookup is a scan).
pub(crate) const COMMANDS: &[Spec] = &[
    spec("get", Op::Get, 2, &["readonly", "fast"], (1, 1, 1)),
    spec("set", Op::Set, -3, &["write", "denyoom"], (1, 1, 1)),
    spec("mget", Op::MGet, -2, &["readonly", "fast"], (1, -1, 1)),
    spec("del", Op::Del, -2, &["write"], (1, -1, 1)),
    spec("exists", Op::Exists, -2, &["readonly", "fast"], (1, -1, 1)),
    spec("ping", Op::Ping, -1, &["fast", "stale"], (0, 0, 0)),
    spec("echo", Op::Echo, 2, &["fast"], (0, 0, 0)),
    spec("quit", Op::Quit, -1, &["fast", "noscript"], (0, 0, 0)),
    spec("info", Op::Info, -1, &["loading", "stale"], (0, 0, 0)),
    spec("command", Op::Command, -1, &["loading", "stale"], (0, 0, 0)),
    spec("client", Op::Client, -2, &["loading", "stale"], (0, 0, 0)),
    spec("hello", Op::Hello, -1, &["fast", "noauth"], (0, 0, 0)),
    spec("select", Op::Select, 2, &["fast", "loading"], (0, 0, 0)),
    spec("auth", Op::Auth, -2, &["fast", "noauth"], (0, 0, 0)),
    spec("config", Op::Config, -2, &["admin", "loading"], (0, 0, 0)),
];

/// The command named `name` (any case).
pub(crate) fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Why a request is refused before it reaches the handler; the text is the error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CommandError {
    /// No such command.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    Unknown {
        /// The name as sent (shortened).
        name: String,
        /// The first arguments, each quoted and followed by a space, as Redis prints them.
        args: String,
    },
    /// Wrong number of arguments.
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    /// Options that do not parse.
    #[error("ERR syntax error")]
    Syntax,
    /// An argument that should be an integer.
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// A non-positive or too large `EX`/`PX`.
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(&'static str),
    /// A Redis feature LCache does not offer.
    #[error("ERR {0} is not supported by LCache")]
    Unsupported(String),
    /// An unknown subcommand.
    #[error("ERR unknown subcommand '{sub}'. Try {command} HELP.")]
    UnknownSubcommand {
        /// The subcommand as sent.
        sub: String,
        /// The command, upper case.
        command: &'static str,
    },
}

/// At most this many characters of a client's text go into an error message.
const QUOTED_MAX: usize = 128;

/// `text` for an error message: lossy UTF-8, at most [`QUOTED_MAX`] characters.
pub(crate) fn quoted(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .take(QUOTED_MAX)
        .collect()
}

impl CommandError {
    /// The error for an unknown command `name` with arguments `args`.
    pub(crate) fn unknown<'a>(name: &[u8], args: impl Iterator<Item = &'a [u8]>) -> Self {
        let args = args
            .take(16)
            .map(|a| format!("'{}' ", quoted(a)))
            .collect::<String>();
        CommandError::Unknown {
            name: quoted(name),
            args,
        }
    }
}

/// A signed decimal integer (Redis's `string2ll`: no spaces, no `+`, no leading zeros).
pub(crate) fn parse_integer(text: &[u8]) -> Result<i64, CommandError> {
    let ok = match text {
        [b'0'] => true,
        [b'-', b'1'..=b'9', rest @ ..] | [b'1'..=b'9', rest @ ..] => {
            rest.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    if !ok {
        return Err(CommandError::NotInteger);
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(CommandError::NotInteger)
}

/// The lifetime `SET`'s options ask for (`None`: no expiry).
///
/// `EX seconds` and `PX milliseconds` are served. `NX`, `XX`, `GET`, `KEEPTTL`, `EXAT` and
/// `PXAT` answer an error: a cache write here is unconditional and returns nothing, and an
/// absolute expiry would need the wall clock.
pub(crate) fn set_ttl<'a>(
    mut options: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<Duration>, CommandError> {
    let mut ttl = None;
    while let Some(option) = options.next() {
        let upper = option.to_ascii_uppercase();
        let per_unit = match upper.as_slice() {
            b"EX" => Duration::from_secs(1),
            b"PX" => Duration::from_millis(1),
            b"NX" | b"XX" | b"GET" | b"KEEPTTL" | b"EXAT" | b"PXAT" => {
                return Err(CommandError::Unsupported(format!(
                    "SET {}",
                    String::from_utf8_lossy(&upper)
                )))
            }
            _ => return Err(CommandError::Syntax),
        };
        if ttl.is_some() {
            return Err(CommandError::Syntax);
        }
        let amount = parse_integer(options.next().ok_or(CommandError::Syntax)?)?;
        let amount = u32::try_from(amount)
            .ok()
            .filter(|&n| n > 0)
            .ok_or(CommandError::InvalidExpire("set"))?;
        ttl = Some(per_unit * amount);
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl(options: &[&str]) -> Result<Option<Duration>, String> {
        set_ttl(options.iter().map(|o| o.as_bytes())).map_err(|e| e.to_string())
    }

    #[test]
    fn names_are_case_insensitive_and_arity_is_checked() {
        let get = lookup(b"gEt").unwrap();
        assert_eq!(get.op, Op::Get);
        assert!(get.arity_ok(2));
        assert!(!get.arity_ok(3));
        let del = lookup(b"DEL").unwrap();
        assert!(!del.arity_ok(1));
        assert!(del.arity_ok(2) && del.arity_ok(9));
        assert!(lookup(b"flushall").is_none());
        assert!(lookup(b"").is_none());
    }

    #[test]
    fn set_options() {
        assert_eq!(ttl(&[]), Ok(None));
        assert_eq!(ttl(&["ex", "10"]), Ok(Some(Duration::from_secs(10))));
        assert_eq!(ttl(&["PX", "1500"]), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(ttl(&["EX", "1", "PX", "5"]), Err("ERR syntax error".into()));
        assert_eq!(ttl(&["EX"]), Err("ERR syntax error".into()));
        assert_eq!(ttl(&["FOO"]), Err("ERR syntax error".into()));
        assert_eq!(
            ttl(&["EX", "x"]),
            Err("ERR value is not an integer or out of range".into())
        );
        for bad in ["0", "-5", "99999999999"] {
            assert_eq!(
                ttl(&["EX", bad]),
                Err("ERR invalid expire time in 'set' command".into()),
                "{bad}"
            );
        }
        assert_eq!(
            ttl(&["nx"]),
            Err("ERR SET NX is not supported by LCache".into())
        );
    }

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_integer(b"0"), Ok(0));
        assert_eq!(parse_integer(b"-12"), Ok(-12));
        for bad in [
            "",
            "-",
            "01",
            "+1",
            " 1",
            "1a",
            "-0",
            "99999999999999999999",
        ] {
            assert!(parse_integer(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_command_message() {
        let args: [&[u8]; 2] = [b"a", b"b c"];
        assert_eq!(
            CommandError::unknown(b"FOO", args.into_iter()).to_string(),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b c' "
        );
    }
}
