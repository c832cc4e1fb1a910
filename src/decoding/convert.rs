//! Date and time values as ISO-8601 text that SQLite's date functions read, computed from
//! PostgreSQL's internal representation (so a session's TimeZone or DateStyle cannot change it).
//!
//! PostgreSQL counts dates in days and timestamps in microseconds from 2000-01-01; the extreme
//! values of each type mean `infinity` / `-infinity`. Years outside 1..=9999 return None: the
//! caller falls back to PostgreSQL's own text output for them.

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;
const USECS_PER_DAY: i64 = 86_400_000_000;

/// (year, month, day) of a day count from 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn ymd(days_since_pg_epoch: i64) -> Option<String> {
    let (y, m, d) = civil_from_days(days_since_pg_epoch + PG_EPOCH_DAYS);
    (1..=9999)
        .contains(&y)
        .then(|| format!("{y:04}-{m:02}-{d:02}"))
}

/// `HH:MM:SS[.ffffff]` (trailing zeros of the fraction dropped).
fn hms(usecs_of_day: i64) -> String {
    let secs = usecs_of_day / 1_000_000;
    let frac = usecs_of_day % 1_000_000;
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

/// A `date`: `YYYY-MM-DD`, or `infinity` / `-infinity`.
pub fn date(days: i32) -> Option<String> {
    match days {
        i32::MAX => Some("infinity".into()),
        i32::MIN => Some("-infinity".into()),
        d => ymd(i64::from(d)),
    }
}

/// A `timestamp` (`utc == false`): `YYYY-MM-DD HH:MM:SS[.ffffff]`; a `timestamptz` (`utc`): the
/// same instant in UTC with a `Z`. `infinity` / `-infinity` are kept as text.
pub fn timestamp(usecs: i64, utc: bool) -> Option<String> {
    match usecs {
        i64::MAX => Some("infinity".into()),
        i64::MIN => Some("-infinity".into()),
        t => {
            let days = t.div_euclid(USECS_PER_DAY);
            let rest = t.rem_euclid(USECS_PER_DAY);
            let mut s = format!("{} {}", ymd(days)?, hms(rest));
            if utc {
                s.push('Z');
            }
            Some(s)
        }
    }
}

/// A `time`: `HH:MM:SS[.ffffff]`.
pub fn time(usecs: i64) -> String {
    hms(usecs)
}

/// A `timetz`: `HH:MM:SS[.ffffff]+HH:MM` (PostgreSQL stores the zone as seconds west of UTC).
pub fn timetz(usecs: i64, zone_secs_west: i32) -> String {
    let east = -i64::from(zone_secs_west);
    let sign = if east < 0 { '-' } else { '+' };
    let a = east.abs();
    let mut s = format!("{}{sign}{:02}:{:02}", hms(usecs), a / 3600, a / 60 % 60);
    if a % 60 != 0 {
        s.push_str(&format!(":{:02}", a % 60));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0).unwrap(), "2000-01-01");
        assert_eq!(date(-1).unwrap(), "1999-12-31");
        assert_eq!(date(59).unwrap(), "2000-02-29");
        assert_eq!(date(-10_957).unwrap(), "1970-01-01");
        assert_eq!(date(i32::MAX).unwrap(), "infinity");
        assert_eq!(date(i32::MIN).unwrap(), "-infinity");
        // Year 10000 and BC dates are left to PostgreSQL's own output.
        assert_eq!(date(2_922_000), None);
        assert_eq!(date(-800_000), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0, false).unwrap(), "2000-01-01 00:00:00");
        assert_eq!(
            timestamp(1_500_000, true).unwrap(),
            "2000-01-01 00:00:01.5Z"
        );
        assert_eq!(timestamp(-1, false).unwrap(), "1999-12-31 23:59:59.999999");
        // 2024-03-10 12:34:56.789 = 8835 days after 2000-01-01.
        let t = 8835 * USECS_PER_DAY + ((12 * 3600 + 34 * 60 + 56) * 1_000_000 + 789_000);
        assert_eq!(timestamp(t, true).unwrap(), "2024-03-10 12:34:56.789Z");
        assert_eq!(timestamp(i64::MAX, true).unwrap(), "infinity");
        assert_eq!(timestamp(i64::MIN, false).unwrap(), "-infinity");
    }

    #[test]
    fn times() {
        assert_eq!(time(0), "00:00:00");
        assert_eq!(time(86_399_999_999), "23:59:59.999999");
        assert_eq!(timetz(3_600_000_000, -7200), "01:00:00+02:00");
        assert_eq!(timetz(0, 19_800), "00:00:00-05:30");
        assert_eq!(timetz(0, 0), "00:00:00+00:00");
    }
}
