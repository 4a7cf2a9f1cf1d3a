//! The few things the bench reads from the operator's Prometheus text exposition.

/// `(name, labels, value)` for every sample line.
pub fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n.to_string(), rest.trim_end_matches('}').to_string()),
                None => (head.to_string(), String::new()),
            };
            Some((name, labels, value))
        })
        .collect()
}

pub fn sum(text: &str, name: &str) -> f64 {
    samples(text).iter().filter(|(n, _, _)| n == name).map(|(_, _, v)| v).sum()
}

pub fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// A histogram's cumulative buckets `(le, count)`, sorted, `+Inf` last.
pub fn histogram(text: &str, name: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut out: Vec<(f64, f64)> = samples(text)
        .into_iter()
        .filter(|(n, _, _)| *n == bucket)
        .filter_map(|(_, l, v)| {
            let le = label(&l, "le")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, v))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Bucket-wise difference (after − before) of two cumulative histograms with the same buckets.
pub fn histogram_delta(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, v)| (*le, v - before.iter().find(|(l, _)| l == le).map(|(_, b)| *b).unwrap_or(0.0)))
        .collect()
}

/// The q-quantile of a cumulative histogram, interpolated linearly inside the bucket (as Prometheus's
/// histogram_quantile does); the highest finite bound if it falls in +Inf.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let width = count - prev.1;
            let frac = if width > 0.0 { (rank - prev.1) / width } else { 1.0 };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, count);
    }
    None
}

/// Nearest-rank percentile of raw values.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let idx = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    Some(values[idx])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\nidbind_arm_requests_total{operation=\"A\",code=\"200\"} \
        3\nidbind_arm_requests_total{operation=\"A\",code=\"429\"} 1\nh_bucket{le=\"1.0\"} \
        2\nh_bucket{le=\"2.0\"} 4\nh_bucket{le=\"+Inf\"} 4\n";

    #[test]
    fn parses_counters_and_histograms() {
        assert_eq!(sum(TEXT, "idbind_arm_requests_total"), 4.0);
        let h = histogram(TEXT, "h");
        assert_eq!(h.len(), 3);
        assert_eq!(quantile(&h, 0.5), Some(1.0));
        assert_eq!(quantile(&h, 0.75), Some(1.5));
        let mut v = vec![3.0, 1.0, 2.0];
        assert_eq!(percentile(&mut v, 0.5), Some(2.0));
        assert_eq!(percentile(&mut v, 0.99), Some(3.0));
    }
}
