//! The classic Prometheus text format (0.0.4), for scrapers that ask for
//! `text/plain` and cannot read OpenMetrics (older Prometheus servers and
//! agents, the text parsers of client libraries).
//!
//! prometheus-client writes OpenMetrics only; the two formats differ in a
//! few places, which this rewrites line by line:
//!
//! - a counter family is named without `_total` in OpenMetrics (`# TYPE
//!   ysum_jobs counter`, samples `ysum_jobs_total`), with it in the classic
//!   format (`# TYPE ysum_jobs_total counter`);
//! - an info family (`# TYPE x info`, samples `x_info … 1`) is a gauge
//!   named `x_info`;
//! - `# UNIT` lines and the final `# EOF` do not exist in the classic
//!   format.
//!
//! Samples are written the same way in both.

/// Whether a scraper's `Accept` header asks for the classic format: it
/// names `text/plain` and not OpenMetrics (Prometheus names both, and reads
/// OpenMetrics; a scraper that says nothing gets OpenMetrics).
pub fn wanted(accept: &str) -> bool {
    let accept = accept.to_ascii_lowercase();
    accept.contains("text/plain") && !accept.contains("application/openmetrics-text")
}

/// `openmetrics`, rewritten in the classic text format.
pub fn from_openmetrics(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE, which decides the family's classic name.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').or(Some((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (classic_name, classic_kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((help_name, text)) = help.take() {
                if help_name == name {
                    out.push_str(&format!("# HELP {classic_name} {text}\n"));
                }
            }
            out.push_str(&format!("# TYPE {classic_name} {classic_kind}\n"));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            // Neither exists in the classic format.
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters gain `_total` in their family, infos become gauges, units
    /// and the end marker go, samples stay.
    #[test]
    fn rewrites_the_differences() {
        let openmetrics = "\
# HELP ysum_jobs Jobs that ended.
# TYPE ysum_jobs counter
ysum_jobs_total{kind=\"sumn\",outcome=\"ok\"} 5
# HELP ysum_uptime_seconds Time since start.
# TYPE ysum_uptime_seconds gauge
# UNIT ysum_uptime_seconds seconds
ysum_uptime_seconds 1.5
# HELP ysum_remote_worker Each live worker.
# TYPE ysum_remote_worker info
ysum_remote_worker_info{worker=\"w1\"} 1
# EOF
";
        assert_eq!(
            from_openmetrics(openmetrics),
            "\
# HELP ysum_jobs_total Jobs that ended.
# TYPE ysum_jobs_total counter
ysum_jobs_total{kind=\"sumn\",outcome=\"ok\"} 5
# HELP ysum_uptime_seconds Time since start.
# TYPE ysum_uptime_seconds gauge
ysum_uptime_seconds 1.5
# HELP ysum_remote_worker_info Each live worker.
# TYPE ysum_remote_worker_info gauge
ysum_remote_worker_info{worker=\"w1\"} 1
"
        );
    }

    /// Prometheus' own Accept header gets OpenMetrics; `text/plain` alone
    /// gets the classic format; nothing gets OpenMetrics.
    #[test]
    fn negotiation() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(!wanted(prometheus));
        assert!(wanted("text/plain;version=0.0.4"));
        assert!(wanted("Text/Plain"));
        assert!(!wanted(""));
        assert!(!wanted("*/*"));
    }
}
