//! Block timestamps (`Time.Protocol`, `src/lib_base/time.ml`): `i64`
//! seconds since the Unix epoch on the wire; in JSON the RFC 3339 text
//! (`"2019-11-28T13:02:13Z"`) when the instant lies between years 0 and
//! 9999 (Ptime's range), and the decimal number as a string otherwise.
//!
//! The calendar arithmetic is Howard Hinnant's `days_from_civil` /
//! `civil_from_days` on the proleptic Gregorian calendar; nothing here can
//! panic or overflow for any `i64`.

/// `0000-01-01T00:00:00Z`, the first second Octez writes as RFC 3339.
pub const MIN_RFC3339: i64 = -62_167_219_200;
/// `9999-12-31T23:59:59Z`, the last second Octez writes as RFC 3339.
pub const MAX_RFC3339: i64 = 253_402_300_799;

const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (valid for the
/// years 0..=9999 used here).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// The RFC 3339 text of `seconds` (`YYYY-MM-DDTHH:MM:SSZ`, as Octez's
/// `Time.Protocol.to_notation`), or `None` outside
/// [`MIN_RFC3339`]`..=`[`MAX_RFC3339`].
pub fn format_rfc3339(seconds: i64) -> Option<String> {
    if !(MIN_RFC3339..=MAX_RFC3339).contains(&seconds) {
        return None;
    }
    let (y, m, d) = civil_from_days(seconds.div_euclid(DAY));
    let t = seconds.rem_euclid(DAY);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    ))
}

/// Octez's JSON text of a timestamp: RFC 3339 when [`format_rfc3339`]
/// can write it, else the decimal number (`"9223372036854775807"`).
pub fn rfc3339(seconds: i64) -> String {
    format_rfc3339(seconds).unwrap_or_else(|| seconds.to_string())
}

/// Parses `n` ASCII digits at `s[at..]`.
fn digits(s: &[u8], at: usize, n: usize) -> Option<i64> {
    let part = s.get(at..at + n)?;
    part.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// Parses RFC 3339 the way Ptime does when not strict: `T`, `t` or a space
/// between date and time, optional fractional seconds (dropped: Octez
/// keeps whole seconds, rounding down), `Z`, `z` or a `±HH:MM` offset; a
/// leap second `:60` counts as `:59`. The instant must lie in
/// [`MIN_RFC3339`]`..=`[`MAX_RFC3339`].
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let s = text.as_bytes();
    let y = digits(s, 0, 4)?;
    let mo = digits(s, 5, 2)?;
    let d = digits(s, 8, 2)?;
    let h = digits(s, 11, 2)?;
    let mi = digits(s, 14, 2)?;
    let sec = digits(s, 17, 2)?;
    if s.get(4) != Some(&b'-')
        || s.get(7) != Some(&b'-')
        || !matches!(s.get(10), Some(b'T' | b't' | b' '))
        || s.get(13) != Some(&b':')
        || s.get(16) != Some(&b':')
    {
        return None;
    }
    if !(1..=12).contains(&mo)
        || !(1..=days_in_month(y, mo)).contains(&d)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut at = 19;
    if s.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while s.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return None;
        }
    }
    let offset = match s.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(s, at + 1, 2)?;
            let om = digits(s, at + 4, 2)?;
            if s.get(at + 3) != Some(&b':') || oh > 23 || om > 59 {
                return None;
            }
            at += 6;
            let o = oh * 3600 + om * 60;
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    if at != s.len() {
        return None;
    }
    let local = days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + sec.min(59);
    let t = local - offset;
    (MIN_RFC3339..=MAX_RFC3339).contains(&t).then_some(t)
}

/// Reads a timestamp from Octez's JSON text: RFC 3339 first, then a
/// decimal `i64` (optionally signed).
pub fn parse_timestamp(text: &str) -> Option<i64> {
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
