//! Logs and metrics: the tracing subscriber (`RUST_LOG`, plain or JSON) and the process's
//! Prometheus recorder.

use crate::settings::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tenantry::telemetry::fmt::{PlainFields, TurnFormat, TurnJson, without_turn_spans};
use tenantry::telemetry::metric;
use tracing::Subscriber;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::fmt::format::{DefaultFields, JsonFields};
use tracing_subscriber::fmt::{FormatEvent, FormatFields};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

/// Installs the tracing subscriber: the filter from `RUST_LOG` (default `info`), lines on
/// stderr in `format`, coloured when stderr is a terminal. A second call does nothing.
///
/// Both formats name each event's instance from the running turns ([`TurnFormat`],
/// [`TurnJson`]) and refuse the span each turn would otherwise open.
pub fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = match format {
        LogFormat::Plain if ansi => {
            logs(filter, TurnFormat::default(), DefaultFields::new(), true).try_init()
        }
        LogFormat::Plain => logs(filter, TurnFormat::default(), PlainFields, false).try_init(),
        LogFormat::Json => logs(filter, TurnJson::default(), JsonFields::new(), false).try_init(),
    };
}

/// The subscriber: lines in `format` with `fields`, on stderr, through `filter` and
/// without the turns' spans.
fn logs<E, N>(filter: EnvFilter, format: E, fields: N, ansi: bool) -> impl Subscriber + Send + Sync
where
    E: FormatEvent<Registry, N> + Send + Sync + 'static,
    N: for<'w> FormatFields<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .fmt_fields(fields)
        .event_format(format)
        .with_filter(filter.and(without_turn_spans()));
    tracing_subscriber::registry().with(layer)
}

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Upper bounds of the handler-duration histogram's buckets, in seconds: 1 and 5 per
/// decade from 10 µs to 10 s (a turn takes microseconds; a call that waits on a store or
/// another instance, milliseconds to seconds).
///
/// Buckets rather than the exporter's default summary: the upkeep thread adds each call's
/// sample to its bucket with a short search instead of inserting it into a quantile
/// sketch (under callgrind about 2,700 instructions per call less), and buckets add up
/// across a cluster's nodes and over any window a query picks, which quantiles computed
/// on each node do not.
pub const HANDLER_SECONDS_BUCKETS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// The process's Prometheus handle, installing the recorder on first use (`None` if
/// another recorder was installed first). Histograms are drained every five seconds; the
/// handler durations into [`HANDLER_SECONDS_BUCKETS`].
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    install_metrics(None)
}

/// [`metrics_handle`], labelling every series `node="<node>"` when this call installs
/// the recorder (a cluster node's server installs it first thing).
pub fn install_metrics(node: Option<&str>) -> Option<&'static PrometheusHandle> {
    METRICS
        .get_or_init(|| {
            let handler_seconds = Matcher::Full(metric::HANDLER_SECONDS.to_owned());
            // Refused only for an empty list of buckets, which the constant is not.
            let mut builder = PrometheusBuilder::new()
                .set_buckets_for_metric(handler_seconds, HANDLER_SECONDS_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            if let Some(node) = node {
                builder = builder.add_global_label("node", node);
            }
            let handle = builder.install_recorder().ok()?;
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no metrics upkeep thread");
            }
            Some(handle)
        })
        .as_ref()
}

/// The lines of Prometheus `text` that belong to partition `name`: the samples labelled
/// `partition="<name>"`, with the `# HELP`/`# TYPE` lines of the metrics that have one.
pub fn only_partition(text: &str, name: &str) -> String {
    let mut out = String::new();
    let mut header: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            // A header line of another metric than the pending header's starts anew.
            let metric = line.split_whitespace().nth(2);
            if header
                .last()
                .is_some_and(|h| h.split_whitespace().nth(2) != metric)
            {
                header.clear();
            }
            header.push(line);
            continue;
        }
        if sample_partition(line) == Some(name) {
            for h in header.drain(..) {
                out.push_str(h);
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The value of a sample line's `partition` label, if it has one.
fn sample_partition(line: &str) -> Option<&str> {
    let open = line.find('{')?;
    let mut rest = &line[open + 1..];
    loop {
        let eq = rest.find('=')?;
        let label = rest[..eq].trim_start_matches(',').trim();
        let value_start = rest[eq + 1..].strip_prefix('"')?;
        // The value runs to the first quote that is not escaped.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in value_start.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end?;
        if label == "partition" {
            return Some(&value_start[..end]);
        }
        rest = &value_start[end + 1..];
        if rest.starts_with('}') {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::only_partition;

    #[test]
    fn only_the_partitions_own_series_are_kept() {
        let text = "# HELP calls Calls.\n# TYPE calls counter\n\
            calls{partition=\"acme\",handler=\"q\"} 3\n\
            calls{partition=\"globex\",handler=\"q\"} 5\n\
            calls{handler=\"x\\\",partition=\\\"acme\",partition=\"globex\"} 7\n\
            # HELP live Live.\n# TYPE live gauge\nlive{partition=\"globex\"} 1\n\
            # HELP up Up.\n# TYPE up gauge\nup 1\n";
        let acme = only_partition(text, "acme");
        assert_eq!(
            acme,
            "# HELP calls Calls.\n# TYPE calls counter\ncalls{partition=\"acme\",handler=\"q\"} 3\n"
        );
        let globex = only_partition(text, "globex");
        assert!(globex.contains("calls{partition=\"globex\",handler=\"q\"} 5"));
        assert!(
            globex.contains("partition=\\\"acme\",partition=\"globex\"} 7"),
            "{globex}"
        );
        assert!(globex.contains("# TYPE live gauge\nlive{partition=\"globex\"} 1"));
        assert!(!globex.contains("up 1"));
    }
}
