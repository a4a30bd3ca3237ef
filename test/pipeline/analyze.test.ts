// The analyze stage over the real local analyzer: results by conversation, latency from the
// injected clock, and the abort signal reaching the analyzer.
import t from 'tap'
import { createLocalAnalyzer, LOCAL_MODEL } from '../../src/analyzers/local.ts'
import type { ClaimedConversation } from '../../src/db/conversations.ts'
import { analyzeLeaders } from '../../src/pipeline/analyze.ts'

const row = (id: string, content: string): ClaimedConversation => ({
  id,
  source: 'web-chat',
  messages: [{ role: 'user', content }],
  textHash: id,
  receivedAt: new Date(),
  attempts: 1
})

const analyzer = createLocalAnalyzer()
t.teardown(() => analyzer.close())

t.test('one call for the batch: a result per conversation, by id', async (t) => {
  const ticks = [100, 142]
  const analysis = await analyzeLeaders(
    analyzer,
    [row('a', 'I was charged twice for my invoice, I want a refund now!'), row('b', 'Thanks, the new release works great.')],
    new AbortController().signal,
    () => ticks.shift()!
  )
  t.same([...analysis.results.keys()].sort(), ['a', 'b'])
  t.match(analysis.results.get('a'), { ok: true, insight: { sentiment: 'negative' } })
  t.match(analysis.results.get('b'), { ok: true, insight: { sentiment: 'positive' } })
  t.equal(analysis.latencyMs, 42, 'latency is measured around the call, on the given clock')
  t.same(analysis.usage, { input: 0, output: 0, cost_usd: 0, calls: 0 }, 'the local analyzer costs nothing')
  t.equal(analyzer.model, LOCAL_MODEL)
})

t.test('an aborted signal stops the analysis: the abort reason is what the worker sees', async (t) => {
  const ac = new AbortController()
  ac.abort(new Error('shutting down'))
  await t.rejects(analyzeLeaders(analyzer, [row('a', 'My parcel never arrived and nobody answers.')], ac.signal), { message: 'shutting down' })
})

t.test('an empty batch is a caller bug, not a call', async (t) => {
  await t.rejects(analyzeLeaders(analyzer, [], new AbortController().signal), /at least one/)
})
