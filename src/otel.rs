//! OpenTelemetry export (`--features otel`): when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, Baton's spans — a task (`invoke_agent`), each
//! model call (`chat`) and tool call (`execute_tool`), with the GenAI semantic conventions'
//! attribute names — go to that collector over OTLP/HTTP (protobuf). Jaeger and Tempo take it
//! directly. The standard `OTEL_*` variables (service name, headers, timeout) apply.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The exporter's provider, to flush at exit.
pub(crate) struct Otel(SdkTracerProvider);

impl Otel {
    /// A `tracing` layer exporting spans, if an OTLP endpoint is configured.
    pub(crate) fn from_env<S>() -> Option<(Otel, impl tracing_subscriber::Layer<S>)>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let configured = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
        if !configured {
            return None;
        }
        // reqwest is built with rustls and no provider of its own.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: OpenTelemetry exporter: {e}");
                return None;
            }
        };
        let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "baton".into());
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build();
        let tracer = provider.tracer("baton");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("baton", tracing::Level::INFO),
            );
        Some((Otel(provider), layer))
    }

    /// Exports what is left.
    pub(crate) fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("warning: OpenTelemetry export at exit: {e}");
        }
    }
}

use tracing_subscriber::Layer as _;
