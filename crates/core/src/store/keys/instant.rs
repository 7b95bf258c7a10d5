//! The codec shared by every key space that is ordered by an instant (`tmr/`, `evt/`): one
//! encoding, one decoding, one "due by" bound, so a queue of timers is read in time order and no
//! module rebuilds the format by hand.
//!
//! Encoding: `{prefix}{unix seconds, 20 digits}\x1f{rest}`. Instants before 1970 are clamped to 0
//! (no timer is ever set in the past of the epoch); the fixed width keeps byte order = time order.

use super::SEP;

/// `{prefix}{seconds:020}\x1f{rest}`.
pub fn instant_key(prefix: &str, unix_seconds: i64, rest: &str) -> String {
    format!("{prefix}{:020}{SEP}{rest}", unix_seconds.max(0))
}

/// The exclusive upper bound of every key of `prefix` due at or before `unix_seconds`: keys of that
/// very second continue with the separator 0x1f, and a space sorts after it.
pub fn due_bound(prefix: &str, unix_seconds: i64) -> String {
    format!("{prefix}{:020} ", unix_seconds.max(0))
}

/// `(seconds, rest)` of a key made by [`instant_key`]; `None` for any other key.
pub fn parse_instant_key<'a>(prefix: &str, key: &'a str) -> Option<(i64, &'a str)> {
    let body = key.strip_prefix(prefix)?;
    let (seconds, rest) = body.split_once(SEP)?;
    if seconds.len() != 20 || !seconds.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((seconds.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoding_inverts_encoding(at in 0i64..=i64::MAX / 2, rest in "[a-z0-9:/\\x1f-]{0,40}") {
            let key = instant_key("tmr/", at, &rest);
            prop_assert_eq!(parse_instant_key("tmr/", &key), Some((at, rest.as_str())));
            prop_assert_eq!(parse_instant_key("evt/", &key), None);
        }

        #[test]
        fn byte_order_is_time_order(a in 0i64..4_000_000_000, b in 0i64..4_000_000_000, x in "[a-z]{0,8}", y in "[a-z]{0,8}") {
            let (ka, kb) = (instant_key("evt/", a, &x), instant_key("evt/", b, &y));
            if a < b {
                prop_assert!(ka < kb);
            }
            // Everything due by `b` sorts below the bound; anything later does not.
            prop_assert_eq!(ka.as_str() < due_bound("evt/", b).as_str(), a <= b);
        }
    }

    #[test]
    fn instants_before_the_epoch_are_clamped() {
        assert_eq!(instant_key("tmr/", -5, "x"), instant_key("tmr/", 0, "x"));
    }
}
