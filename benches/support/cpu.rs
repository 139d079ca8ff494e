//! CPU time from `/proc` (Linux), for the end-to-end benches that say where a run's time
//! went: the client's and the server's.

/// CPU seconds (user + system) of this process and of every `postgres` process, with the
/// processes they have reaped. Other clients of the server count too.
pub fn cpu() -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let of = |stat: &str| -> Option<(String, f64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime, stime, and cutime, cstime: the postmaster gathers there the CPU of the
        // backends it has reaped (a source's connection ends before the run does).
        let mut sum = 0.0;
        for i in 11..=14 {
            sum += fields.get(i)?.parse::<f64>().ok()?;
        }
        Some((name, sum / ticks))
    };
    let own = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| of(&s)).map_or(0.0, |(_, t)| t);
    let mut server = 0.0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
                && let Some((name, t)) = of(&stat)
                && name.starts_with("postgres")
            {
                server += t;
            }
        }
    }
    (own, server)
}
