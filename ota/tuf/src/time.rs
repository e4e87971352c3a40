//! The `expires` timestamps TUF uses (`YYYY-MM-DDTHH:MM:SSZ`, UTC) as unix seconds.

use crate::error::TufError;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of `days` since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats unix seconds as `2030-01-01T00:00:00Z`.
pub fn format(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parses `2030-01-01T00:00:00Z` (fractional seconds allowed and dropped).
pub fn parse(text: &str) -> Result<i64, TufError> {
    let bad = || TufError::Format(format!("expires {text:?} is not YYYY-MM-DDTHH:MM:SSZ"));
    let body = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = body.split_once('T').ok_or_else(bad)?;
    let time = time.split('.').next().ok_or_else(bad)?;
    let num = |s: &str, len: usize| -> Result<i64, TufError> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let ([y, mo, da], [h, mi, s]) = (d.as_slice(), t.as_slice()) else {
        return Err(bad());
    };
    let (year, month, day) = (num(y, 4)?, num(mo, 2)?, num(da, 2)?);
    let (hour, minute, second) = (num(h, 2)?, num(mi, 2)?, num(s, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_and_refusals() {
        assert_eq!(parse("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse("2000-03-01T00:00:00Z").unwrap(), 951_868_800);
        assert_eq!(parse("2030-01-01T00:00:00Z").unwrap(), 1_893_456_000);
        assert_eq!(parse("2026-11-22T05:30:00.123Z").unwrap(), 1_795_325_400);
        for t in [0, 951_868_800, 1_795_325_400, 4_102_444_799] {
            assert_eq!(parse(&format(t)).unwrap(), t);
        }
        assert_eq!(format(1_893_456_000), "2030-01-01T00:00:00Z");
        for bad in [
            "2030-01-01",
            "2030-01-01T00:00:00",
            "2030-13-01T00:00:00Z",
            "30-01-01T00:00:00Z",
            "2030-01-01T00:00:00+01:00",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
