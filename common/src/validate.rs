//! Bounds that every payload is checked against. Pure: `now` is passed in.

use chrono::{DateTime, Duration, TimeZone, Utc};

/// Weakest RSSI accepted, in dBm.
pub const RSSI_MIN: f32 = -127.0;
/// Strongest RSSI accepted, in dBm.
pub const RSSI_MAX: f32 = 20.0;
/// Most items in one batch.
pub const MAX_BATCH_ITEMS: usize = 10_000;
/// Largest payload accepted on any topic, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;
/// How far ahead of the receiver's clock a timestamp may be before it is rejected.
pub const MAX_FUTURE_SKEW: Duration = Duration::hours(24);
/// How far an item may be newer than the `sent_at` of its batch.
pub const MAX_ITEM_AFTER_SENT: Duration = Duration::minutes(5);

/// The earliest timestamp accepted (2000-01-01T00:00:00Z): older ones are a clock that was never set.
pub fn earliest() -> DateTime<Utc> {
    Utc.timestamp_opt(946_684_800, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Checks an RSSI value; returns a reason on failure.
pub fn rssi(value: f32) -> Result<(), String> {
    if !value.is_finite() {
        return Err(format!("{value} is not a number"));
    }
    if !(RSSI_MIN..=RSSI_MAX).contains(&value) {
        return Err(format!(
            "{value} dBm is outside [{RSSI_MIN}, {RSSI_MAX}] dBm"
        ));
    }
    Ok(())
}

/// Checks a timestamp against the receiver's clock.
pub fn timestamp(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    if at < earliest() {
        return Err(format!(
            "{} is before 2000-01-01: the clock was not set",
            at.to_rfc3339()
        ));
    }
    if at > now + MAX_FUTURE_SKEW {
        return Err(format!(
            "{} is more than 24 h ahead of the receiver's clock ({})",
            at.to_rfc3339(),
            now.to_rfc3339()
        ));
    }
    Ok(())
}

/// Checks a batch's item count.
pub fn batch_len(len: usize) -> Result<(), String> {
    if len == 0 {
        return Err("batch has no items".into());
    }
    if len > MAX_BATCH_ITEMS {
        return Err(format!(
            "batch has {len} items; at most {MAX_BATCH_ITEMS} are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rssi_bounds() {
        assert!(rssi(-60.0).is_ok());
        assert!(rssi(-127.0).is_ok());
        assert!(rssi(-128.0).is_err());
        assert!(rssi(21.0).is_err());
        assert!(rssi(f32::NAN).is_err());
    }

    #[test]
    fn timestamp_bounds() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert!(timestamp(now, now).is_ok());
        assert!(timestamp(now + Duration::hours(25), now).is_err());
        assert!(timestamp(Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(), now).is_err());
    }
}
