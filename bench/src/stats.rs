//! Percentiles, formatting, and the machine's load next to every figure.

use std::time::Duration;

/// Nearest-rank percentiles over a set of samples.
pub struct Summary {
    sorted: Vec<Duration>,
}

impl Summary {
    pub fn new(mut samples: Vec<Duration>) -> Summary {
        samples.sort_unstable();
        Summary { sorted: samples }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// `q` in [0, 1]; zero when there are no samples.
    pub fn pct(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn median(&self) -> Duration {
        self.pct(0.5)
    }

    pub fn p99(&self) -> Duration {
        self.pct(0.99)
    }

    pub fn min(&self) -> Duration {
        self.sorted.first().copied().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }

    pub fn mean(&self) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        self.sorted.iter().sum::<Duration>() / self.sorted.len() as u32
    }
}

/// `1.234 ms`, `56.7 µs`, `2.31 s`.
pub fn dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.3} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Milliseconds with three decimals, for tables of process times.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        return f64::NAN;
    }
    a.as_secs_f64() / b.as_secs_f64()
}

/// The 1-minute load average.
pub fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Remembers the load at the start of a measurement and prints
/// `load 1.23→1.45` at its end.
pub struct LoadSpan(f64);

impl LoadSpan {
    pub fn start() -> LoadSpan {
        LoadSpan(load())
    }

    pub fn end(&self) -> String {
        format!("load {:.2}→{:.2}", self.0, load())
    }
}

/// `met` / `**MISSED**` for a budget line.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**MISSED**" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s = Summary::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(s.median(), Duration::from_millis(50));
        assert_eq!(s.p99(), Duration::from_millis(99));
        assert_eq!(s.pct(1.0), Duration::from_millis(100));
        assert_eq!(s.pct(0.0), Duration::from_millis(1));
        assert_eq!(Summary::new(vec![]).median(), Duration::ZERO);
    }

    #[test]
    fn formats() {
        assert_eq!(dur(Duration::from_micros(56)), "56.0 µs");
        assert_eq!(dur(Duration::from_micros(1234)), "1.234 ms");
        assert_eq!(dur(Duration::from_millis(2310)), "2.31 s");
    }
}
