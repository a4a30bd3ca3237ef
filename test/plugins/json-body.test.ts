// The JSON body parser refuses absurd nesting and width before parsing, so such a body costs
// one linear scan, not seconds of a blocked event loop.

import { monitorEventLoopDelay } from 'node:perf_hooks'
import t from 'tap'
import { request } from 'undici'
import { loadConfig } from '../../src/config.ts'
import { jsonShapeLimits, jsonShapeViolation } from '../../src/plugins/json-body.ts'
import { backendEnv, buildTestApp, conversation, listen } from '../helper.ts'

const limits = jsonShapeLimits(loadConfig({}))
const BATCH = '/api/v1/conversations/batch'
/** The event loop stalled 15–29 s on these bodies before; a scan takes milliseconds. */
const MAX_STALL_MS = 3_000

t.test('the scan finds depth, width and length beyond the limits and ignores brackets in strings', async (t) => {
  t.match(jsonShapeViolation('['.repeat(limits.maxDepth + 1), limits), /nested deeper/)
  t.equal(jsonShapeViolation(`${'['.repeat(limits.maxDepth)}${']'.repeat(limits.maxDepth)}`, limits), undefined, 'at the limit')
  t.equal(jsonShapeViolation(JSON.stringify({ s: '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["\\' }), limits), undefined, 'brackets inside a string')
  const wide = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":0`).join(',')}}`
  t.equal(jsonShapeViolation(wide(limits.maxKeysPerObject), limits), undefined, 'keys at the limit')
  t.match(jsonShapeViolation(wide(limits.maxKeysPerObject + 1), limits), /more than \d+ keys/)
  t.match(jsonShapeViolation(`[${'0,'.repeat(limits.maxItemsPerArray)}0]`, limits), /more than \d+ items/)
  t.ok(limits.maxItemsPerArray >= 1000 && limits.maxDepth >= 12, 'an honest full batch still fits')
})

for (const [name, body] of [
  ['a 14 MB batch nested 7M deep', `{"conversations":${'['.repeat(7_000_000)}${']'.repeat(7_000_000)}}`],
  [
    'metadata with 1.3M keys',
    `{"conversations":[{"source":"web","messages":[{"role":"user","content":"my invoice is wrong"}],"metadata":{${Array.from({ length: 1_300_000 }, (_, i) => `"${i}":0`).join(',')}}}]}`
  ]
] as const) {
  t.test(`${name} is refused with 400 without stalling the event loop`, async (t) => {
    const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false' })
    const base = await listen(app)
    const delay = monitorEventLoopDelay({ resolution: 10 })
    delay.enable()
    const res = await request(`${base}${BATCH}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    const answer = (await res.body.json()) as { error: { code: string; message: string } }
    delay.disable()
    t.equal(res.statusCode, 400)
    t.equal(answer.error.code, 'BAD_REQUEST')
    const stallMs = delay.max / 1e6
    t.ok(stallMs < MAX_STALL_MS, `longest event-loop stall ${stallMs.toFixed(0)} ms`)
    const next = await request(`${base}/api/v1/conversations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(conversation()) })
    await next.body.dump()
    t.equal(next.statusCode, 202, 'the next honest request is accepted')
  })
}
