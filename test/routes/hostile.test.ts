// Hostile and broken input over real HTTP: each case gets a clear 4xx with the contract's
// error body (or is stored safely), and the next valid request still succeeds.

import t from 'tap'
import { request } from 'undici'
import { backendEnv, buildTestApp, conversation, listen } from '../helper.ts'

type Case = {
  name: string
  method?: 'GET' | 'POST' | 'DELETE'
  path?: string
  headers?: Record<string, string>
  body?: string | object
  status: number
  code?: string
  field?: RegExp
}

const valid = () => conversation()
const withMsg = (m: object) => ({ ...valid(), messages: [m] })
const deep = (levels: number): object => (levels === 0 ? { leaf: 1 } : { d: deep(levels - 1) })
const BATCH = '/api/v1/conversations/batch'

const cases: Case[] = [
  { name: 'malformed JSON', body: '{"source": "web", ', status: 400, code: 'BAD_REQUEST' },
  { name: 'trailing garbage after JSON', body: '{}xyz', status: 400, code: 'BAD_REQUEST' },
  { name: 'empty body declared as JSON', body: '', status: 400, code: 'BAD_REQUEST' },
  { name: 'text/plain body', headers: { 'content-type': 'text/plain' }, body: 'hello', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'XML body', headers: { 'content-type': 'application/xml' }, body: '<a/>', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'form body', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'body over the limit', body: JSON.stringify({ ...valid(), metadata: { x: 'a'.repeat(1_100_000) } }), status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { name: 'array instead of object', body: '[1,2,3]', status: 400, code: 'VALIDATION_FAILED' },
  { name: 'JSON null', body: 'null', status: 400 },
  { name: 'JSON string', body: '"conversation"', status: 400, code: 'VALIDATION_FAILED' },
  { name: 'missing source', body: { messages: valid().messages }, status: 400, code: 'VALIDATION_FAILED', field: /source/ },
  { name: 'source of the wrong type', body: { ...valid(), source: 42 }, status: 400, code: 'VALIDATION_FAILED', field: /source/ },
  { name: 'source too long', body: { ...valid(), source: 's'.repeat(65) }, status: 400, code: 'VALIDATION_FAILED', field: /source/ },
  { name: 'source with forbidden characters', body: { ...valid(), source: 'web chat/../x' }, status: 400, code: 'VALIDATION_FAILED', field: /source/ },
  { name: 'no messages', body: { ...valid(), messages: [] }, status: 400, code: 'VALIDATION_FAILED', field: /messages/ },
  { name: 'messages not an array', body: { ...valid(), messages: 'hi' }, status: 400, code: 'VALIDATION_FAILED', field: /messages/ },
  { name: 'unknown role', body: withMsg({ role: 'hacker', content: 'x y z w' }), status: 400, code: 'VALIDATION_FAILED', field: /role/ },
  { name: 'empty content', body: withMsg({ role: 'user', content: '' }), status: 400, code: 'VALIDATION_FAILED', field: /content/ },
  { name: 'content too long', body: withMsg({ role: 'user', content: 'a'.repeat(32_001) }), status: 400, code: 'VALIDATION_FAILED', field: /content/ },
  { name: 'content of the wrong type', body: withMsg({ role: 'user', content: 12 }), status: 400, code: 'VALIDATION_FAILED', field: /content/ },
  { name: 'too many messages', body: { ...valid(), messages: Array.from({ length: 501 }, () => ({ role: 'user', content: 'hi there friend' })) }, status: 400, code: 'VALIDATION_FAILED', field: /messages/ },
  { name: 'unknown top-level field', body: { ...valid(), priority: 'high' }, status: 400, code: 'VALIDATION_FAILED', field: /priority/ },
  { name: 'unknown message field', body: withMsg({ role: 'user', content: 'hello there', score: 1 }), status: 400, code: 'VALIDATION_FAILED', field: /score/ },
  { name: 'message time that does not parse', body: withMsg({ role: 'user', content: 'hello there', at: 'yesterday' }), status: 400, code: 'VALIDATION_FAILED', field: /at/ },
  { name: 'metadata as an array', body: { ...valid(), metadata: [1, 2] }, status: 400, code: 'VALIDATION_FAILED', field: /metadata/ },
  { name: 'metadata as null', body: { ...valid(), metadata: null }, status: 400, code: 'VALIDATION_FAILED', field: /metadata/ },
  { name: 'metadata too deep', body: { ...valid(), metadata: deep(6) }, status: 400, code: 'VALIDATION_FAILED', field: /metadata/ },
  { name: 'metadata too large', body: { ...valid(), metadata: { blob: 'x'.repeat(9000) } }, status: 400, code: 'VALIDATION_FAILED', field: /metadata/ },
  { name: '__proto__ key', body: `{"__proto__": {"admin": true}, "source": "web", "messages": [{"role": "user", "content": "my invoice is wrong"}]}`, status: 400, code: 'BAD_REQUEST' },
  { name: 'constructor.prototype key', body: `{"constructor": {"prototype": {"admin": true}}, "source": "web", "messages": []}`, status: 400, code: 'BAD_REQUEST' },
  { name: '__proto__ inside metadata', body: `{"source": "web", "messages": [{"role": "user", "content": "my invoice is wrong"}], "metadata": {"__proto__": {"x": 1}}}`, status: 400, code: 'BAD_REQUEST' },
  { name: 'empty external_id', body: { ...valid(), external_id: '' }, status: 400, code: 'VALIDATION_FAILED', field: /external_id/ },
  { name: 'external_id too long', body: { ...valid(), external_id: 'e'.repeat(201) }, status: 400, code: 'VALIDATION_FAILED', field: /external_id/ },
  { name: 'NUL characters are removed and stored', body: withMsg({ role: 'user', content: 'my invoice\u0000 is wrong, please fix it' }), status: 202 },
  { name: 'a lone surrogate escape is stored replaced', body: `{"source":"web","messages":[{"role":"user","content":"my invoice \\ud800 is wrong, please fix it"}]}`, status: 202 },
  { name: 'emoji and right-to-left text', body: withMsg({ role: 'user', content: '😡😡 الفاتورة خاطئة وأريد استرداد المبلغ עברית 🙏' }), status: 202 },
  { name: 'SQL-looking text', body: withMsg({ role: 'user', content: "Robert'); DROP TABLE conversations;-- my invoice is wrong" }), status: 202 },
  { name: 'deeply nested JSON body', body: `${'['.repeat(5000)}${']'.repeat(5000)}`, status: 400 },
  { name: 'batch that is not an array', path: BATCH, body: { conversations: { a: 1 } }, status: 400, code: 'VALIDATION_FAILED', field: /conversations/ },
  { name: 'empty batch', path: BATCH, body: { conversations: [] }, status: 400, code: 'VALIDATION_FAILED', field: /conversations/ },
  { name: 'batch over the item limit', path: BATCH, body: { conversations: Array.from({ length: 1001 }, () => ({})) }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'batch with unknown field', path: BATCH, body: { conversations: [valid()], dryRun: true }, status: 400, code: 'VALIDATION_FAILED', field: /dryRun/ },
  { name: 'bad conversation id', method: 'GET', path: '/api/v1/conversations/%27%20OR%201=1--', status: 404, code: 'NOT_FOUND' },
  { name: 'very long id', method: 'GET', path: `/api/v1/conversations/${'a'.repeat(5000)}`, status: 400, code: 'BAD_REQUEST' },
  { name: 'bad cursor', method: 'GET', path: '/api/v1/insights?cursor=%%%', status: 400 },
  { name: 'negative limit', method: 'GET', path: '/api/v1/insights?limit=-1', status: 400, code: 'VALIDATION_FAILED', field: /limit/ },
  { name: 'huge limit', method: 'GET', path: '/api/v1/insights?limit=99999999999999999999', status: 400, code: 'VALIDATION_FAILED', field: /limit/ },
  { name: 'since that does not parse', method: 'GET', path: '/api/v1/insights?since=last%20tuesday', status: 400, code: 'VALIDATION_FAILED', field: /since/ },
  { name: 'since in year 0000', method: 'GET', path: '/api/v1/insights?since=0000-01-01T00:00:00Z', status: 400, code: 'VALIDATION_FAILED', field: /since/ },
  { name: 'until on a leap second', method: 'GET', path: '/api/v1/insights/summary?until=2026-11-20T23:59:60Z', status: 400, code: 'VALIDATION_FAILED', field: /until/ },
  { name: 'cursor far past year 9999', method: 'GET', path: `/api/v1/insights?cursor=${Buffer.from('+275760-09-13T00:00:00.000Z|00000000-0000-0000-0000-000000000000').toString('base64url')}`, status: 400, code: 'BAD_REQUEST' },
  { name: 'usage since year 0000', method: 'GET', path: '/api/v1/usage?since=0000-01-01', status: 400, code: 'BAD_REQUEST' },
  { name: 'dead-letter cursor in year 0000', method: 'GET', path: `/api/v1/dead-letters?cursor=${Buffer.from('0000-01-01T00:00:00.000Z|00000000-0000-0000-0000-000000000000').toString('base64url')}`, status: 400, code: 'BAD_REQUEST' },
  { name: 'unknown route', method: 'GET', path: '/api/v1/nothing-here', status: 404, code: 'NOT_FOUND' },
  { name: 'wrong method', method: 'DELETE', path: '/api/v1/conversations', status: 404, code: 'NOT_FOUND' },
  { name: 'NUL in a query filter', method: 'GET', path: '/api/v1/insights?source=web%00chat', status: 400, code: 'BAD_REQUEST' },
  { name: 'NUL in a summary filter', method: 'GET', path: '/api/v1/insights/summary?topic=%00', status: 400, code: 'BAD_REQUEST' },
  { name: 'header flood', method: 'GET', path: '/api/v1/insights', headers: Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`x-flood-${i}`, 'v'.repeat(20)])), status: 431, code: 'HEADERS_TOO_LARGE' }
]

t.test('hostile input', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false' })
  const base = await listen(app)
  t.ok(cases.length >= 40, `${cases.length} cases`)

  for (const c of cases) {
    t.test(c.name, async (t) => {
      const headers: Record<string, string> = { 'content-type': 'application/json', ...c.headers }
      const payload = typeof c.body === 'string' ? c.body : c.body === undefined ? undefined : JSON.stringify(c.body)
      const method = c.method ?? 'POST'
      const res = await request(`${base}${c.path ?? '/api/v1/conversations'}`, {
        method,
        headers: payload === undefined ? c.headers : headers,
        body: payload
      })
      const text = await res.body.text()
      t.equal(res.statusCode, c.status, `status ${c.status}`)
      if (c.status >= 400) {
        const b = JSON.parse(text)
        t.match(b, { error: { code: String, message: String }, request_id: String }, 'contract error body')
        if (c.code) t.equal(b.error.code, c.code)
        if (c.field) t.match(b.error.message, c.field, 'names the field')
        t.notMatch(text, /at .*\.ts|node_modules|SELECT|INSERT|stack/i, 'no stack, path or SQL leaks')
      }
      const next = await request(`${base}/api/v1/conversations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(valid())
      })
      await next.body.dump()
      t.equal(next.statusCode, 202, 'the next valid request still succeeds')
    })
  }
})
