// The deployment files are code too: Prometheus rules and config pass promtool, the
// compose file passes docker-compose, the Grafana dashboard and the alerts only query
// metrics Gleaner exports, and the compose file only sets variables Gleaner reads (the k6
// scripts are run for real in test/loadtest/k6.test.ts). CI installs the tools:
//   apt-get install -y --no-install-recommends prometheus docker-compose
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
// `yaml` comes with tap (tap-yaml); the deployment files are YAML and only tests read them.
import { parse as parseYaml } from 'yaml'
import { ConfigSchema } from '../../src/config.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const at = (...parts: string[]) => join(ROOT, ...parts)
const APT_HINT = 'apt-get install -y --no-install-recommends prometheus docker-compose'

// The contract's metric table (docs/api.md, "GET /metrics") plus the two extra gauges
// src/metrics.ts defines for pausing and budget. Hard-coded on purpose: the test must not
// depend on a file outside the repository.
const HISTOGRAMS = ['gleaner_http_request_duration_seconds', 'gleaner_model_call_duration_seconds', 'gleaner_insight_latency_seconds']
const CONTRACT_METRICS = [
  'gleaner_http_requests_total',
  'gleaner_http_request_duration_seconds',
  'gleaner_conversations_ingested_total',
  'gleaner_queue_depth',
  'gleaner_backlog_conversations',
  'gleaner_batch_size',
  'gleaner_prefilter_skips_total',
  'gleaner_analysis_cache_requests_total',
  'gleaner_model_calls_total',
  'gleaner_model_call_duration_seconds',
  'gleaner_model_tokens_total',
  'gleaner_model_cost_usd_total',
  'gleaner_circuit_state',
  'gleaner_insights_stored_total',
  'gleaner_analysis_failures_total',
  'gleaner_insight_latency_seconds'
]
const EXTRA_METRICS = ['gleaner_worker_paused', 'gleaner_budget_remaining_usd']
const KNOWN_SERIES = new Set([
  ...CONTRACT_METRICS,
  ...EXTRA_METRICS,
  ...HISTOGRAMS.flatMap((h) => [`${h}_bucket`, `${h}_sum`, `${h}_count`])
])
const baseMetric = (series: string) => {
  for (const h of HISTOGRAMS) if (series.startsWith(`${h}_`)) return h
  return series
}
const gleanerSeries = (expr: string) => [...expr.matchAll(/\bgleaner_[a-z0-9_]+/g)].map((m) => m[0])

function hasTool(name: string): boolean {
  const r = spawnSync(name, ['--version'], { encoding: 'utf8' })
  return !r.error
}

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  return { code: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() }
}

const readYaml = (path: string) => parseYaml(readFileSync(at(path), 'utf8'))

type Target = { expr?: string; datasource?: { uid?: string } }
type Panel = {
  type: string
  title: string
  datasource?: { uid?: string }
  targets?: Target[]
  panels?: Panel[]
  fieldConfig?: { defaults?: { mappings?: { type: string; options: Record<string, { text: string }> }[] } }
}
const dashboard = JSON.parse(readFileSync(at('deploy/grafana/dashboards/gleaner.json'), 'utf8')) as {
  uid: string
  title: string
  panels: Panel[]
}
const allPanels = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])])
const queryPanels = allPanels(dashboard.panels).filter((p) => p.type !== 'row')
const dashboardExprs = queryPanels.flatMap((p) => (p.targets ?? []).map((x) => ({ panel: p.title, expr: x.expr ?? '' })))

type Rule = { alert: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
const alertRules = (readYaml('deploy/prometheus/alerts.yml') as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules)

const promtool = hasTool('promtool')
const promtoolSkip = promtool ? false : `promtool not found (${APT_HINT})`

t.test('promtool accepts the alert rules', { skip: promtoolSkip }, async (t) => {
  const r = run('promtool', ['check', 'rules', 'deploy/prometheus/alerts.yml'])
  t.equal(r.code, 0, r.output)
  t.match(r.output, /SUCCESS: 7 rules found/)
})

t.test('promtool accepts the Prometheus config and the rule files it names', { skip: promtoolSkip }, async (t) => {
  const r = run('promtool', ['check', 'config', 'deploy/prometheus/prometheus.yml'])
  t.equal(r.code, 0, r.output)
  t.match(r.output, /SUCCESS: 1 rule files found/)
})

t.test('every dashboard expression is valid PromQL (checked by promtool as recording rules)', { skip: promtoolSkip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gleaner-dash-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // Grafana's range variables are not PromQL; give them concrete durations.
  const rules = dashboardExprs.map((e, i) => ({
    record: `dashboard:expr_${i}`,
    expr: e.expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '1h').replaceAll('$__interval', '15s')
  }))
  const file = join(dir, 'dashboard-rules.yml')
  writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules }] }))
  const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' })
  t.equal(r.status, 0, `${r.stdout}${r.stderr}`)
})

t.test('docker-compose accepts the compose file', { skip: hasTool('docker-compose') ? false : `docker-compose not found (${APT_HINT})` }, async (t) => {
  const r = run('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'])
  t.equal(r.code, 0, r.output)
})

t.test('compose sets only variables that src/config.ts reads', async (t) => {
  const compose = readYaml('docker-compose.yml') as { name?: string; services: Record<string, { environment?: Record<string, unknown> }> }
  t.notOk('name' in compose, 'no top-level name: docker-compose 1.29 rejects it')
  const env = compose.services.gleaner?.environment
  t.ok(env && !Array.isArray(env), 'gleaner environment is a map')
  const known = new Set(Object.keys(ConfigSchema.properties))
  const names = Object.keys(env ?? {})
  t.ok(names.length > 0)
  for (const name of names) t.ok(known.has(name), `${name} is in ConfigSchema`)
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'MODEL_PROVIDER', 'MODEL_BASE_URL', 'MODEL_NAME', 'AUTH', 'HOST']) {
    t.ok(names.includes(name), `gleaner sets ${name}`)
  }
  t.equal(env?.AUTH, 'on', 'AUTH is the string "on" (unquoted YAML would make it a boolean)')
  t.equal(env?.MODEL_PROVIDER, 'openai-compatible')
  t.match(String(env?.MODEL_BASE_URL), /^http:\/\/fake-model:8089\/v1$/)
})

t.test('the dashboard is provisioned with uid "gleaner" and uses the provisioned datasource', async (t) => {
  t.equal(dashboard.uid, 'gleaner')
  const ds = readYaml('deploy/grafana/provisioning/datasources/prometheus.yml') as { datasources: { uid: string; type: string }[] }
  const uid = ds.datasources[0]?.uid
  t.ok(uid, 'the datasource has a uid')
  t.equal(ds.datasources[0]?.type, 'prometheus')
  for (const p of queryPanels) {
    t.equal(p.datasource?.uid, uid, `panel "${p.title}" uses datasource ${uid}`)
    for (const x of p.targets ?? []) t.equal(x.datasource?.uid, uid, `a target of "${p.title}" uses datasource ${uid}`)
  }
  const providers = readYaml('deploy/grafana/provisioning/dashboards/gleaner.yml') as { providers: { options: { path: string } }[] }
  const compose = readFileSync(at('docker-compose.yml'), 'utf8')
  const path = providers.providers[0]?.options.path ?? ''
  t.ok(path && compose.includes(`./deploy/grafana/dashboards:${path}`), `compose mounts the dashboards at the provider path ${path}`)
})

t.test('dashboard expressions query only metrics Gleaner exports', async (t) => {
  t.ok(dashboardExprs.length > 0)
  for (const { panel, expr } of dashboardExprs) {
    const series = gleanerSeries(expr)
    t.ok(series.length > 0, `"${panel}" queries a gleaner metric: ${expr}`)
    for (const s of series) t.ok(KNOWN_SERIES.has(s), `"${panel}": ${s} is an exported metric`)
  }
})

t.test('the dashboard shows every metric of the contract', async (t) => {
  const shown = new Set(dashboardExprs.flatMap(({ expr }) => gleanerSeries(expr).map(baseMetric)))
  for (const m of CONTRACT_METRICS) t.ok(shown.has(m), `${m} is on the dashboard`)
})

t.test('the circuit panel maps 0, 1, 2 to closed, half_open, open', async (t) => {
  const panel = queryPanels.find((p) => (p.targets ?? []).some((x) => /gleaner_circuit_state/.test(x.expr ?? '')) && p.type === 'stat')
  t.ok(panel, 'a stat panel shows gleaner_circuit_state')
  const options = panel?.fieldConfig?.defaults?.mappings?.find((m) => m.type === 'value')?.options ?? {}
  t.same(
    Object.fromEntries(Object.entries(options).map(([k, v]) => [k, v.text])),
    { 0: 'closed', 1: 'half_open', 2: 'open' }
  )
})

t.test('alerts exist, query known metrics and carry severity, summary, description, runbook', async (t) => {
  t.same(alertRules.map((r) => r.alert).sort(), [
    'GleanerBacklogGrowing',
    'GleanerBudgetExhausted',
    'GleanerCircuitOpen',
    'GleanerDeadLetters',
    'GleanerDown',
    'GleanerHighErrorRate',
    'GleanerHighLatencyP95'
  ])
  for (const r of alertRules) {
    t.match(r.labels?.severity, /^(critical|warning|info)$/, `${r.alert} has a severity`)
    for (const a of ['summary', 'description', 'runbook']) t.ok(r.annotations?.[a], `${r.alert} has a ${a}`)
    for (const s of gleanerSeries(r.expr)) t.ok(KNOWN_SERIES.has(s), `${r.alert}: ${s} is an exported metric`)
  }
})
