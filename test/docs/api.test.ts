// docs/api.md is the contract and must say what the service does: its routes are exactly
// the OpenAPI document's, its label lists are the domain's, its metric table is the
// metrics module's. And the repository's documents point only inside the repository.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import t from 'tap'
import { CONVERSATION_STATUSES, INTENTS, ROLES, SCOPES, SENTIMENTS, TIERS, URGENCIES } from '../../src/domain.ts'
import { createMetrics } from '../../src/metrics.ts'
import { buildTestApp } from '../helper.ts'

const ROOT = resolve(new URL('../..', import.meta.url).pathname)
const doc = readFileSync(join(ROOT, 'docs/api.md'), 'utf8')

/** "GET /api/v1/conversations/{id}" for every `### \`METHOD /path\`` heading, `:id` written as OpenAPI does. */
function documentedRoutes(markdown: string): string[] {
  return [...markdown.matchAll(/^### `(GET|POST|PUT|PATCH|DELETE) (\/\S*)`\s*$/gm)].map(
    (m) => `${m[1]} ${m[2]!.replace(/:([A-Za-z_]+)/g, '{$1}')}`
  )
}

/** The first column (code) → the second column of a markdown table's rows. */
function tableRows(markdown: string, firstHeader: string): Map<string, string> {
  const start = markdown.indexOf(`| ${firstHeader} |`)
  if (start === -1) throw new Error(`no table starting with | ${firstHeader} |`)
  const rows = new Map<string, string>()
  for (const line of markdown.slice(start).split('\n').slice(2)) {
    if (!line.startsWith('|')) break
    const [, first, second] = line.split('|').map((c) => c.trim())
    rows.set(first!.replaceAll('`', ''), second!)
  }
  return rows
}

t.test('every route of the OpenAPI document is in docs/api.md, and every route there is served', async (t) => {
  const app = await buildTestApp(t, { DATA_DIR: 'memory://', WORKER_ENABLED: 'false' })
  const openapi = (await app.inject({ url: '/docs/json' })).json() as { paths: Record<string, Record<string, unknown>> }
  const served = Object.entries(openapi.paths).flatMap(([path, methods]) =>
    Object.keys(methods)
      .filter((m) => m !== 'head')
      .map((m) => `${m.toUpperCase()} ${path}`)
  )
  const documented = documentedRoutes(doc)
  t.ok(served.length > 10 && documented.length > 10, 'both sides list routes')
  t.same([...documented].sort(), [...new Set(documented)].sort(), 'no route documented twice')
  for (const route of served) t.ok(documented.includes(route), `${route} is documented`)
  for (const route of documented) t.ok(served.includes(route), `${route} is served`)
})

t.test('the label lists in docs/api.md are the domain’s, in its order', async (t) => {
  const labels = tableRows(doc, 'label')
  const lists: Record<string, readonly string[]> = {
    role: ROLES,
    status: CONVERSATION_STATUSES,
    sentiment: SENTIMENTS,
    urgency: URGENCIES,
    intent: INTENTS,
    scope: SCOPES,
    tier: TIERS
  }
  t.same([...labels.keys()].sort(), Object.keys(lists).sort(), 'one row per list')
  for (const [name, values] of Object.entries(lists)) {
    const documented = (labels.get(name) ?? '').split(',').map((v) => v.trim().replaceAll('`', ''))
    t.same(documented, [...values], name)
  }
})

t.test('the metric table in docs/api.md is what /metrics exports, with the right types', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false })
  const exported = new Map((await metrics.registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]))
  const documented = tableRows(doc, 'metric')
  t.same([...documented.keys()].sort(), [...exported.keys()].sort(), 'the same metrics')
  for (const [name, type] of exported) t.equal(documented.get(name), type, `${name} is a ${type}`)
})

t.test('the repository points only inside itself', async (t) => {
  const tracked = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean)
  const text = tracked.filter((f) => /\.(md|ts|js|json|ya?ml|sh|sql)$|Dockerfile$|\/run$/.test(f) && f !== 'package-lock.json')
  for (const file of text) {
    const content = readFileSync(join(ROOT, file), 'utf8')
    t.notMatch(content, /\.\.\/shared\/|shared\/API\.md/, `${file} does not point at ../shared`)
  }
  for (const file of tracked.filter((f) => f.endsWith('.md'))) {
    const content = readFileSync(join(ROOT, file), 'utf8')
    for (const m of content.matchAll(/\]\(([^)\s#]+)(#[^)]*)?\)/g)) {
      const target = m[1]!
      if (/^[a-z]+:/i.test(target)) continue // a URL
      const path = resolve(ROOT, dirname(file), target)
      t.ok(path.startsWith(`${ROOT}/`) && existsSync(path), `${file} links to ${target}, a file of the repository`)
    }
  }
})
