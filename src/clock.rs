//! Wall-clock time as the API and the audit log write it: RFC 3339, UTC, milliseconds, `Z`.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `2026-11-25T13:09:04.123Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let f =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    rfc3339(now())
}

/// Parses any RFC 3339 timestamp.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> i64 {
    now().unix_timestamp()
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_round_trips() {
        let t = super::parse("2026-03-12T10:00:00.123456789+00:00").unwrap();
        assert_eq!(super::rfc3339(t), "2026-03-12T10:00:00.123Z");
        assert!(super::parse(&super::now_rfc3339()).is_some());
    }
}
