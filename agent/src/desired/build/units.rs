//! Values with units as Compose reads them: Go durations (`1m30s`) and byte sizes (`512m`,
//! `2gb`, binary multiples as docker/go-units' `RAMInBytes`).

/// Go-style durations as Compose writes them: `1m30s`, `500ms`, `10s`; a bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 30s, 1m30s, 500ms)");
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = tail;
    }
    Ok(total as i64)
}

/// `RAMInBytes`: a number of bytes, or a number with `k`, `m`, `g`, `t`, `p` (any case, an
/// optional `i` and `b`, an optional space), in multiples of 1024.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a size (e.g. 512m, 2g, 1gb, 65536)");
    let t = s.trim();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_len);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    Ok((n * mult) as i64)
}

/// `cpus: 0.5` → nano-CPUs, as Compose sets `NanoCpus`.
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|c| c.is_finite() && *c >= 0.0)
        .map(|c| (c * 1e9).round() as i64)
        .ok_or_else(|| format!("{s:?} is not a number of CPUs (e.g. 0.5, 2)"))
}

/// `cpu_rt_runtime`/`cpu_rt_period`: microseconds, or a duration.
pub fn parse_micros(s: &str) -> Result<i64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) => Ok(n),
        Err(_) => parse_duration(s).map(|ns| ns / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5 minutes").is_err());
    }

    #[test]
    fn sizes_as_compose_reads_them() {
        assert_eq!(parse_bytes("2gb"), Ok(2 << 30));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1.5k"), Ok(1536));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("1 g"), Ok(1 << 30));
        assert!(parse_bytes("2 gigabytes").is_err());
        assert!(parse_bytes("m").is_err());
        assert!(parse_bytes("-1").is_err());
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert!(parse_cpus("half").is_err());
        assert_eq!(parse_micros("400ms"), Ok(400_000));
    }
}
