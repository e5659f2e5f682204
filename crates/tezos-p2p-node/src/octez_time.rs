//! Times as Octez writes them in JSON.

use std::time::{Duration, SystemTime};

/// A time as Octez writes it in JSON (`Time.System.encoding`:
/// `Ptime.to_rfc3339 ~frac_s:3` with no time zone): UTC, milliseconds
/// (truncated), and RFC 3339's unknown local offset `-00:00`, as in
/// `2024-05-01T12:34:56.789-00:00`; clamped to years 0–9999 (Ptime's
/// range).
pub fn octez_time(t: SystemTime) -> String {
    use std::time::UNIX_EPOCH;
    let min = UNIX_EPOCH - Duration::from_secs(62_167_219_200);
    let max = UNIX_EPOCH + Duration::new(253_402_300_799, 999_999_999);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]-00:00"
    );
    time::OffsetDateTime::from(t.clamp(min, max))
        .format(f)
        .unwrap_or_default()
}

/// A block timestamp as Octez writes it in JSON (`Time.Protocol`:
/// `Ptime.to_rfc3339 ~frac_s:0 ~tz_offset_s:0`, `2019-11-28T13:02:13Z`)
/// between years 0 and 9999, the decimal number of seconds otherwise.
pub fn octez_protocol_time(seconds: i64) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
        .and_then(|t| t.format(f).ok())
        .unwrap_or_else(|| seconds.to_string())
}
