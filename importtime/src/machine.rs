//! The machine and the date, for the report's metadata (Linux `/proc`, `/etc`).

use crate::report::Machine;

fn first_line(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
        .filter(|s| !s.is_empty())
}

/// Host name, OS, logical CPUs, CPU model and memory of this machine.
pub fn this_machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|r| r.trim().strip_suffix("kB"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024);
    let os = first_line("/proc/sys/kernel/ostype")
        .zip(first_line("/proc/sys/kernel/osrelease"))
        .map_or_else(
            || std::env::consts::OS.to_owned(),
            |(t, r)| format!("{t} {r}"),
        );
    Machine {
        hostname: first_line("/proc/sys/kernel/hostname")
            .or_else(|| first_line("/etc/hostname"))
            .unwrap_or_default(),
        os,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        cpu,
        memory_bytes,
    }
}

/// Now, as `2026-12-02T19:18:02Z`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the epoch as an RFC 3339 UTC time (days to civil date: Howard Hinnant's
/// `civil_from_days`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_238_482), "2026-12-02T19:08:02Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn this() {
        let m = this_machine();
        assert!(m.cpus >= 1);
        assert!(m.memory_bytes > 0);
    }
}
