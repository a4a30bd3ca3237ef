// Optional OpenTelemetry tracing: spans for HTTP requests (incoming), PostgreSQL queries and
// model calls (undici), exported over OTLP/HTTP. Loaded only when OTEL_EXPORTER_OTLP_ENDPOINT
// is set, and before the app is imported so the pg module can be hooked; when it is unset
// none of this is even imported, so tracing off costs nothing.
import { register } from 'node:module'
import type { Config } from './config.ts'

export async function startTracing(config: Config): Promise<() => Promise<void>> {
  const { createAddHookMessageChannel } = await import('import-in-the-middle')
  // ESM imports of pg go through this hook (only pg: everything else stays untouched)
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel()
  register('import-in-the-middle/hook.mjs', import.meta.url, registerOptions)

  const [{ NodeTracerProvider }, { BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }, { registerInstrumentations }] =
    await Promise.all([
      import('@opentelemetry/sdk-trace-node'),
      import('@opentelemetry/sdk-trace-base'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
      import('@opentelemetry/instrumentation')
    ])
  const [{ HttpInstrumentation }, { PgInstrumentation }, { UndiciInstrumentation }] = await Promise.all([
    import('@opentelemetry/instrumentation-http'),
    import('@opentelemetry/instrumentation-pg'),
    import('@opentelemetry/instrumentation-undici')
  ])

  const endpoint = config.OTEL_EXPORTER_OTLP_ENDPOINT!.replace(/\/+$/, '')
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': config.OTEL_SERVICE_NAME, 'service.instance.id': config.INSTANCE_ID }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }), { scheduledDelayMillis: 1_000 })]
  })
  provider.register()
  registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      // scrapes and probes would drown the traces that matter
      new HttpInstrumentation({ ignoreIncomingRequestHook: (req) => /^\/(metrics|health)/.test(req.url ?? '') }),
      new PgInstrumentation({ enhancedDatabaseReporting: false }), // statements, never their parameters
      new UndiciInstrumentation()
    ]
  })
  await waitForAllMessagesAcknowledged()
  return async () => {
    await provider.shutdown()
  }
}
