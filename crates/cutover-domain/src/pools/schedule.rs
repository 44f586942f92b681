//! How many instances a pool keeps: a static count, or cron schedules in a time zone that
//! override it while they match (first match wins). Schedules are hour-granular (their minute
//! field is `*`), which makes "do two schedules overlap" decidable exactly: a cron's hours and
//! its days are independent, so two schedules overlap when they share an hour and a day.

use std::str::FromStr;

use chrono::{NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::{DomainError, Timestamp};

/// Most instances a pool keeps at once: desired counts are clamped to it.
pub const MAX_INSTANCES: u32 = 100;
/// Most schedules one pool has.
pub const MAX_SCHEDULES: usize = 20;

/// The first day of the span schedules are compared over: 28 years, after which the Gregorian
/// calendar repeats its weekdays and leap days (within 1901–2099).
const SPAN_START: (i32, u32, u32) = (2000, 1, 1);
const SPAN_DAYS: usize = 10_227;

/// One schedule: while `cron` matches the current local time, the pool keeps `instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Five cron fields with a minute of `*`: `* 8-18 * * 1-5` (office hours on weekdays).
    pub cron: String,
    /// Instances while it matches, 0 to [`MAX_INSTANCES`].
    pub instances: u32,
}

/// A pool's desired instance count: `instances`, unless one of `schedules` matches the local
/// time in `timezone` (the first that matches wins).
#[derive(Debug, Clone, Serialize)]
pub struct DesiredCount {
    /// Instances when no schedule matches (or there are none).
    pub instances: u32,
    /// An IANA time zone (`Europe/Paris`); schedules are read in it. Default `UTC`.
    pub timezone: String,
    /// Checked in order; overlapping schedules are refused.
    pub schedules: Vec<Schedule>,
    #[serde(skip)]
    parsed: Vec<Cron>,
    #[serde(skip)]
    zone: Option<Tz>,
}

impl PartialEq for DesiredCount {
    fn eq(&self, other: &Self) -> bool {
        (self.instances, &self.timezone, &self.schedules) == (other.instances, &other.timezone, &other.schedules)
    }
}

impl Eq for DesiredCount {}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> DomainError {
    DomainError::invalid(field, message)
}

/// A schedule's hours (bit per hour) and days over the comparison span.
struct Footprint {
    hours: u32,
    days: Vec<u64>,
}

impl Footprint {
    fn of(cron: &Cron) -> Self {
        let start = NaiveDate::from_ymd_opt(SPAN_START.0, SPAN_START.1, SPAN_START.2).unwrap_or_default();
        let at = |day: NaiveDate, hour: u32| {
            day.and_hms_opt(hour, 0, 0)
                .map(|t| Utc.from_utc_datetime(&t))
                .is_some_and(|t| cron.is_time_matching(&t).unwrap_or(false))
        };
        // Hours and days are independent fields: find the hours on a matching day and the days
        // at a matching hour.
        let mut days = vec![0_u64; SPAN_DAYS.div_ceil(64)];
        let mut hours = 0_u32;
        for hour in 0..24 {
            for (index, day) in start.iter_days().take(SPAN_DAYS).enumerate() {
                if at(day, hour) {
                    days[index / 64] |= 1 << (index % 64);
                    hours |= 1 << hour;
                }
            }
            if hours != 0 {
                break;
            }
        }
        if let Some(day) = start
            .iter_days()
            .take(SPAN_DAYS)
            .enumerate()
            .find(|(i, _)| days[i / 64] & (1 << (i % 64)) != 0)
            .map(|(_, d)| d)
        {
            for hour in 0..24 {
                if at(day, hour) {
                    hours |= 1 << hour;
                }
            }
        }
        Self { hours, days }
    }

    fn overlaps(&self, other: &Footprint) -> bool {
        self.hours & other.hours != 0 && self.days.iter().zip(&other.days).any(|(a, b)| a & b != 0)
    }

    fn never(&self) -> bool {
        self.hours == 0
    }
}

impl DesiredCount {
    /// A static count.
    pub fn fixed(instances: u32) -> Result<Self, DomainError> {
        Self::parse(instances, "UTC", Vec::new())
    }

    /// Checks a count: instances within [0, [`MAX_INSTANCES`]], a known time zone, at most
    /// [`MAX_SCHEDULES`] schedules, each a valid five-field cron with a minute of `*` that
    /// matches some time, and no two schedules matching the same hour.
    pub fn parse(instances: u32, timezone: &str, schedules: Vec<Schedule>) -> Result<Self, DomainError> {
        if instances > MAX_INSTANCES {
            return Err(invalid("desired.instances", format!("must be at most {MAX_INSTANCES}")));
        }
        let zone = Tz::from_str(timezone).map_err(|_| {
            invalid("desired.timezone", format!("{timezone:?} is not an IANA time zone (like Europe/Paris)"))
        })?;
        if schedules.len() > MAX_SCHEDULES {
            return Err(invalid("desired.schedules", format!("at most {MAX_SCHEDULES} schedules")));
        }
        let mut parsed = Vec::with_capacity(schedules.len());
        let mut footprints: Vec<Footprint> = Vec::with_capacity(schedules.len());
        for (index, schedule) in schedules.iter().enumerate() {
            let field = format!("desired.schedules[{index}]");
            if schedule.instances > MAX_INSTANCES {
                return Err(invalid(format!("{field}.instances"), format!("must be at most {MAX_INSTANCES}")));
            }
            let fields: Vec<&str> = schedule.cron.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(invalid(
                    format!("{field}.cron"),
                    "must have five fields: minute hour day-of-month month day-of-week",
                ));
            }
            if fields[0] != "*" {
                return Err(invalid(
                    format!("{field}.cron"),
                    "the minute field must be `*`: schedules are by the hour",
                ));
            }
            let cron = Cron::new(&schedule.cron).parse().map_err(|e| {
                invalid(format!("{field}.cron"), format!("{:?} is not a cron expression: {e}", schedule.cron))
            })?;
            let footprint = Footprint::of(&cron);
            if footprint.never() {
                return Err(invalid(format!("{field}.cron"), format!("{:?} never matches", schedule.cron)));
            }
            if let Some(earlier) = footprints.iter().position(|other| other.overlaps(&footprint)) {
                return Err(invalid(
                    format!("{field}.cron"),
                    format!(
                        "{:?} overlaps schedule {earlier} ({:?}): schedules must not match the same hour",
                        schedule.cron, schedules[earlier].cron
                    ),
                ));
            }
            footprints.push(footprint);
            parsed.push(cron);
        }
        Ok(Self { instances, timezone: timezone.to_owned(), schedules, parsed, zone: Some(zone) })
    }

    /// How many instances the pool wants at `now`, within [0, [`MAX_INSTANCES`]].
    pub fn at(&self, now: Timestamp) -> u32 {
        let count = self.zone.and_then(|zone| {
            let utc = Utc.timestamp_micros(now.as_micros()).single()?;
            let local = utc.with_timezone(&zone).with_second(0)?.with_nanosecond(0)?;
            self.parsed
                .iter()
                .zip(&self.schedules)
                .find(|(cron, _)| cron.is_time_matching(&local).unwrap_or(false))
                .map(|(_, schedule)| schedule.instances)
        });
        count.unwrap_or(self.instances).min(MAX_INSTANCES)
    }

    /// Whether the count depends on the time.
    pub fn is_scheduled(&self) -> bool {
        !self.schedules.is_empty()
    }
}

impl<'de> Deserialize<'de> for DesiredCount {
    /// Read back (from the store's column) through [`DesiredCount::parse`]: checked again.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            instances: u32,
            #[serde(default = "utc")]
            timezone: String,
            #[serde(default)]
            schedules: Vec<Schedule>,
        }
        let raw = Raw::deserialize(deserializer)?;
        DesiredCount::parse(raw.instances, &raw.timezone, raw.schedules).map_err(serde::de::Error::custom)
    }
}

fn utc() -> String {
    "UTC".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, instances: u32) -> Schedule {
        Schedule { cron: cron.into(), instances }
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339("at", text).unwrap()
    }

    #[test]
    fn a_static_count_is_the_same_at_every_time() {
        let desired = DesiredCount::fixed(3).unwrap();
        assert_eq!(desired.at(at("2026-12-01T03:00:00Z")), 3);
        assert!(!desired.is_scheduled());
        assert_eq!(DesiredCount::fixed(101).unwrap_err().field(), "desired.instances");
    }

    #[test]
    fn the_first_matching_schedule_wins_in_the_pool_time_zone() {
        let desired = DesiredCount::parse(
            1,
            "Europe/Paris",
            vec![schedule("* 8-17 * * 1-5", 10), schedule("* 18-19 * * 1-5", 4)],
        )
        .unwrap();
        // Tuesday 1 December 2026: Paris is UTC+1.
        assert_eq!(desired.at(at("2026-12-01T07:30:00Z")), 10, "08:30 in Paris");
        assert_eq!(desired.at(at("2026-12-01T06:59:59Z")), 1, "07:59 in Paris");
        assert_eq!(desired.at(at("2026-12-01T17:00:00Z")), 4, "18:00 in Paris");
        assert_eq!(desired.at(at("2026-12-01T19:00:00Z")), 1, "20:00 in Paris");
        // Saturday.
        assert_eq!(desired.at(at("2026-12-05T09:00:00Z")), 1);
        // Summer time: UTC+2.
        assert_eq!(desired.at(at("2026-07-01T06:00:00Z")), 10, "08:00 in Paris in July");
    }

    #[test]
    fn overlapping_schedules_are_refused_naming_both() {
        let err = DesiredCount::parse(1, "UTC", vec![schedule("* 8-12 * * 1-5", 5), schedule("* 12-14 * * *", 2)])
            .unwrap_err();
        assert_eq!(err.field(), "desired.schedules[1].cron");
        assert!(err.to_string().contains("overlaps schedule 0"), "{err}");
        // Same hours on different days, or different hours on the same days: no overlap.
        assert!(
            DesiredCount::parse(1, "UTC", vec![schedule("* 8-12 * * 1-5", 5), schedule("* 8-12 * * 0,6", 2)]).is_ok()
        );
        assert!(DesiredCount::parse(1, "UTC", vec![schedule("* 0-7 * * *", 5), schedule("* 8-23 * * *", 2)]).is_ok());
        // A day of the month against a weekday: they meet on some date.
        assert!(DesiredCount::parse(1, "UTC", vec![schedule("* 9 13 * *", 5), schedule("* 9 * * 5", 2)]).is_err());
        // 29 February against a schedule of February only: they meet.
        assert!(DesiredCount::parse(1, "UTC", vec![schedule("* 0 29 2 *", 5), schedule("* 0 * 2 *", 2)]).is_err());
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let cases = [
            (schedule("0 8 * * *", 1), "minute field"),
            (schedule("* 8 * *", 1), "five fields"),
            (schedule("* 25 * * *", 1), "not a cron"),
            (schedule("* * 31 2 *", 1), "never matches"),
            (schedule("* * * * *", 101), "at most 100"),
        ];
        for (bad, why) in cases {
            let err = DesiredCount::parse(0, "UTC", vec![bad.clone()]).unwrap_err();
            assert!(err.field().starts_with("desired.schedules[0]"), "{bad:?}: {err}");
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
        assert_eq!(DesiredCount::parse(0, "Mars/Olympus", vec![]).unwrap_err().field(), "desired.timezone");
        let many = (0..21).map(|h| schedule(&format!("* {h} * * *"), 1)).collect();
        assert_eq!(DesiredCount::parse(0, "UTC", many).unwrap_err().field(), "desired.schedules");
    }

    #[test]
    fn a_stored_count_reads_back_checked() {
        let desired = DesiredCount::parse(2, "Asia/Tokyo", vec![schedule("* 9-17 * * 1-5", 6)]).unwrap();
        let json = serde_json::to_string(&desired).unwrap();
        let back: DesiredCount = serde_json::from_str(&json).unwrap();
        assert_eq!(back, desired);
        assert_eq!(back.at(at("2026-12-01T01:00:00Z")), 6, "10:00 in Tokyo");
        assert!(serde_json::from_str::<DesiredCount>(r#"{"instances":500}"#).is_err());
    }
}
