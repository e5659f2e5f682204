//! Block timestamps (`Time.Protocol`, `src/lib_base/time.ml`): `i64`
//! seconds since the Unix epoch on the wire; in JSON the RFC 3339 text
//! (`"2019-11-28T13:02:13Z"`, Octez's `Ptime.to_rfc3339 ~frac_s:0
//! ~tz_offset_s:0`) when the instant lies between years 0 and 9999
//! (Ptime's range), and the decimal number as a string otherwise. On the
//! `time` crate; private to the crate, the JSON of the types is its
//! public face.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// `0000-01-01T00:00:00Z`, the first second Octez writes as RFC 3339.
pub(crate) const MIN_RFC3339: i64 = -62_167_219_200;
/// `9999-12-31T23:59:59Z`, the last second Octez writes as RFC 3339.
pub(crate) const MAX_RFC3339: i64 = 253_402_300_799;

/// The RFC 3339 text of `seconds` (`YYYY-MM-DDTHH:MM:SSZ`, as Octez's
/// `Time.Protocol.to_notation`), or `None` outside
/// [`MIN_RFC3339`]`..=`[`MAX_RFC3339`].
pub(crate) fn format_rfc3339(seconds: i64) -> Option<String> {
    if !(MIN_RFC3339..=MAX_RFC3339).contains(&seconds) {
        return None;
    }
    let f = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()?
        .format(f)
        .ok()
}

/// Octez's JSON text of a timestamp: RFC 3339 when [`format_rfc3339`]
/// can write it, else the decimal number (`"9223372036854775807"`).
pub(crate) fn rfc3339(seconds: i64) -> String {
    format_rfc3339(seconds).unwrap_or_else(|| seconds.to_string())
}

/// Parses RFC 3339 as Ptime does when not strict: `T`, `t` or a space
/// between date and time, optional fractional seconds (dropped: Octez
/// keeps whole seconds, rounding down), `Z`, `z` or a `±HH:MM` offset. The
/// instant must lie in [`MIN_RFC3339`]`..=`[`MAX_RFC3339`].
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    // The `time` crate takes any separator; Ptime only these.
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    // Whole seconds, rounding down (the offset is whole minutes).
    let t = t.replace_nanosecond(0).ok()?.unix_timestamp();
    (MIN_RFC3339..=MAX_RFC3339).contains(&t).then_some(t)
}

/// Reads a timestamp from Octez's JSON text: RFC 3339 first, then a
/// decimal `i64` (optionally signed).
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    parse_rfc3339(text).or_else(|| {
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(format_rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(1_596_822_004).unwrap(),
            "2020-08-07T17:40:04Z"
        );
        assert_eq!(format_rfc3339(MIN_RFC3339).unwrap(), "0000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(MAX_RFC3339).unwrap(), "9999-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(-1).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(MAX_RFC3339 + 1), None);
        assert_eq!(format_rfc3339(MIN_RFC3339 - 1), None);
        assert_eq!(rfc3339(i64::MAX), "9223372036854775807");
        assert_eq!(rfc3339(i64::MIN), "-9223372036854775808");
    }

    #[test]
    fn parse_inverts_format_and_accepts_ptime_variants() {
        for t in [
            0,
            -1,
            1_596_822_004,
            MIN_RFC3339,
            MAX_RFC3339,
            951_782_400,
            -2_208_988_800,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t).unwrap()), Some(t), "{t}");
        }
        assert_eq!(parse_rfc3339("2020-08-07t17:40:04z"), Some(1_596_822_004));
        assert_eq!(
            parse_rfc3339("2020-08-07 17:40:04.999Z"),
            Some(1_596_822_004)
        );
        assert_eq!(
            parse_rfc3339("2020-08-07T19:40:04+02:00"),
            Some(1_596_822_004)
        );
        assert_eq!(
            parse_rfc3339("2020-08-07T15:40:04-02:00"),
            Some(1_596_822_004)
        );
        // Fractions round down, before the epoch too.
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.5Z"), Some(-1));
        for bad in [
            "",
            "2020-02-30T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2020-13-01T00:00:00Z",
            "2020-01-01T24:00:00Z",
            "2020-01-01T00:00:00",
            "2020-01-01T00:00:00Zx",
            "2020-01-01T00:00:00.Z",
            "0000-01-01T00:00:00+00:01",
            "+020-01-01T00:00:00Z",
            "２020-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(parse_timestamp("9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_timestamp("-5"), Some(-5));
        assert_eq!(parse_timestamp("5x"), None);
        assert_eq!(parse_timestamp("99999999999999999999"), None);
    }
}
