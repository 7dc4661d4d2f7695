//! When a failed delivery is tried again: the configured schedule (Standard Webhooks'
//! by default) with ±10 % jitter, so deliveries that failed together do not return
//! together, and never sooner than the endpoint's `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// The longest `Retry-After` we honour: a day, beyond which the schedule decides.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// The delay before the next attempt after `attempts_made` attempts failed, or `None`
/// when the schedule has no attempt left. `schedule[0]` is the first attempt's own delay.
pub fn next_delay(
    schedule: &[Duration],
    attempts_made: i64,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Option<Duration> {
    let index = usize::try_from(attempts_made).ok()?;
    let planned = *schedule.get(index)?;
    let jitter_span = planned.as_millis() as u64 / 10;
    let jittered = if jitter_span == 0 {
        planned
    } else {
        let offset = rng.random_range(0..=2 * jitter_span);
        (planned + Duration::from_millis(offset)).saturating_sub(Duration::from_millis(jitter_span))
    };
    Some(jittered.max(retry_after.map_or(Duration::ZERO, |r| r.min(MAX_RETRY_AFTER))))
}

/// Reads `Retry-After` as seconds (the form endpoints send for 429 and 503); an HTTP
/// date is honoured as "the schedule decides".
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn schedule() -> Vec<Duration> {
        crate::config::parse_schedule(crate::config::DEFAULT_RETRY_SCHEDULE).expect("the default parses")
    }

    #[test]
    fn the_default_schedule_runs_about_a_day_and_a_half_with_jitter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let schedule = schedule();
        assert_eq!(schedule.len(), 8);
        let total: Duration = schedule.iter().sum();
        assert_eq!(total, Duration::from_secs(5 + 300 + 1_800 + 7_200 + 18_000 + 36_000 + 36_000));
        for made in 1..8 {
            let planned = schedule[made as usize];
            for _ in 0..50 {
                let delay = next_delay(&schedule, made, None, &mut rng).expect("an attempt is left");
                assert!(delay >= planned * 9 / 10 && delay <= planned * 11 / 10, "{delay:?} for {planned:?}");
            }
        }
        assert_eq!(next_delay(&schedule, 8, None, &mut rng), None, "eight attempts in all");
    }

    #[test]
    fn retry_after_is_honoured_up_to_a_day() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let schedule = schedule();
        let asked = Some(Duration::from_secs(120));
        assert!(next_delay(&schedule, 1, asked, &mut rng).expect("left") >= Duration::from_secs(120));
        let huge = Some(Duration::from_secs(10 * 86_400));
        assert_eq!(next_delay(&schedule, 1, huge, &mut rng), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
