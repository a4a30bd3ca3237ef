import { once } from 'node:events'
import t from 'tap'
import { type FakeModelServerOptions, startFakeModelServer } from '../../loadtest/fake-model-server.ts'
import type { AnalysisInput } from '../../src/analyzers/analyzer.ts'
import { parseInsightsAnswer } from '../../src/analyzers/parse.ts'
import { PROMPTS } from '../../src/analyzers/prompts.ts'

const conv = (id: string, text: string): AnalysisInput => ({
  id,
  source: 'test',
  messages: [
    { role: 'user', content: text },
    { role: 'assistant', content: 'Let me look into it.' }
  ]
})
const BATCH = [
  conv('a', 'Thanks, the new release works great!'),
  conv('b', 'My invoice is wrong and I want a refund, this is urgent'),
  conv('c', 'What are your opening hours?')
]

type WithTeardown = { teardown(fn: () => unknown): void }

async function setup(t: WithTeardown, opts: FakeModelServerOptions = {}) {
  const fake = await startFakeModelServer(opts)
  t.teardown(() => fake.close())
  const chat = async (items: AnalysisInput[] = BATCH, init: { headers?: Record<string, string>; signal?: AbortSignal } = {}) => {
    const res = await fetch(`${fake.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...init.headers },
      body: JSON.stringify({
        model: 'fake-1',
        messages: [
          { role: 'system', content: PROMPTS.v1.system },
          { role: 'user', content: PROMPTS.v1.buildUser(items) }
        ]
      }),
      signal: init.signal
    })
    const text = await res.text()
    const json = (() => {
      try {
        return JSON.parse(text)
      } catch {
        return undefined
      }
    })()
    return { status: res.status, headers: res.headers, text, json }
  }
  const content = (r: { json: { choices: Array<{ message: { content: string } }> } }) => r.json.choices[0]!.message.content
  return { fake, chat, content }
}

t.test('url ends in /v1 and GET /v1/models lists the model', async (t) => {
  const { fake } = await setup(t, { modelName: 'fake-xyz' })
  t.match(fake.url, /^http:\/\/127\.0\.0\.1:\d+\/v1$/)
  const res = await fetch(`${fake.url}/models`)
  t.equal(res.status, 200)
  const body = (await res.json()) as { data: Array<{ id: string }> }
  t.same(
    body.data.map((m) => m.id),
    ['fake-xyz']
  )
  t.equal(fake.stats.modelsCalls, 1)
})

t.test('answers one valid insight per conversation with usage from the prompt size', async (t) => {
  const { fake, chat, content } = await setup(t)
  const r = await chat()
  t.equal(r.status, 200)
  const text = content(r)
  const parsed = parseInsightsAnswer(text, 3)
  t.equal(parsed.parseError, undefined)
  t.equal(parsed.byIndex.size, 3)
  t.equal(parsed.byIndex.get(0)?.sentiment, 'positive')
  t.equal(parsed.byIndex.get(1)?.sentiment, 'negative')
  t.equal(parsed.byIndex.get(1)?.urgency, 'high')
  t.ok(parsed.byIndex.get(1)?.topics.includes('billing'))
  t.equal(parsed.byIndex.get(2)?.intent, 'question')
  const promptChars = PROMPTS.v1.system.length + PROMPTS.v1.buildUser(BATCH).length
  t.equal(r.json.usage.prompt_tokens, Math.ceil(promptChars / 4))
  t.equal(r.json.usage.completion_tokens, Math.ceil(text.length / 4))
  t.equal(fake.stats.calls, 1)
  t.equal(fake.stats.byStatus[200], 1)
  t.equal(fake.stats.itemsAnalysed, 3)
  t.equal(fake.stats.lastAuthorization, false)
  t.equal(fake.stats.lastRequest?.model, 'fake-1')
})

t.test('records whether an Authorization header came, and enforces requireApiKey', async (t) => {
  const { fake, chat } = await setup(t, { requireApiKey: 'right' })
  t.equal((await chat(BATCH, { headers: { authorization: 'Bearer wrong' } })).status, 401)
  t.equal(fake.stats.lastAuthorization, true)
  t.equal((await chat(BATCH, { headers: { authorization: 'Bearer right' } })).status, 200)
})

t.test('failNext answers 500 that many times, then recovers', async (t) => {
  const { fake, chat } = await setup(t, { failNext: 2 })
  t.equal((await chat()).status, 500)
  t.equal((await chat()).status, 500)
  t.equal((await chat()).status, 200)
  t.same(fake.stats.byStatus, { 500: 2, 200: 1 })
})

t.test('rateLimitNext answers 429 with Retry-After', async (t) => {
  const { chat } = await setup(t, { rateLimitNext: 1, retryAfterSeconds: 7 })
  const r = await chat()
  t.equal(r.status, 429)
  t.equal(r.headers.get('retry-after'), '7')
  t.equal((await chat()).status, 200)
})

t.test('badRequestNext answers 400', async (t) => {
  const { chat } = await setup(t, { badRequestNext: 1 })
  t.equal((await chat()).status, 400)
  t.equal((await chat()).status, 200)
})

t.test('errorRate is deterministic for a given seed', async (t) => {
  const run = async (seed: number) => {
    const fake = await startFakeModelServer({ errorRate: 0.5, seed })
    t.teardown(() => fake.close())
    const statuses: number[] = []
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${fake.url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: PROMPTS.v1.buildUser(BATCH) }] })
      })
      await res.text()
      statuses.push(res.status)
    }
    return statuses
  }
  const a = await run(42)
  t.same(await run(42), a, 'same seed, same failures')
  t.ok(a.includes(500) && a.includes(200), 'errorRate 0.5 gives both outcomes')
  t.notSame(await run(7), a, 'another seed, other failures')
})

t.test('errorRate 1 always fails, 0 never', async (t) => {
  const { fake, chat } = await setup(t, { errorRate: 1 })
  t.equal((await chat()).status, 500)
  fake.setBehaviour({ errorRate: 0 })
  t.equal((await chat()).status, 200)
})

t.test('hang holds the call until the client aborts, and counts the abort', async (t) => {
  const { fake, chat } = await setup(t, { hang: true })
  const ac = new AbortController()
  fake.events.once('call', () => ac.abort())
  const abort = once(fake.events, 'abort')
  await t.rejects(chat(BATCH, { signal: ac.signal }))
  await abort
  t.equal(fake.stats.aborted, 1)
  t.equal(fake.stats.inFlight, 0)
  t.same(fake.stats.byStatus, {}, 'it never answered')
})

t.test('close() returns while a call hangs', async (t) => {
  const fake = await startFakeModelServer({ hang: true })
  const arrived = once(fake.events, 'call')
  const pending = fetch(`${fake.url}/chat/completions`, { method: 'POST', body: '{}' }).catch((err: Error) => err)
  await arrived
  await fake.close()
  t.type(await pending, Error)
})

t.test('latencyMs holds every answer, concurrent calls overlapping in flight', async (t) => {
  const { fake, chat } = await setup(t, { latencyMs: 60_000 })
  // three calls held at once prove the delay: an undelayed answer would leave at most one in flight
  const calls = [chat(), chat(), chat()]
  await new Promise<void>((resolve) => {
    const check = () => {
      if (fake.stats.inFlight < 3) return
      fake.events.off('call', check)
      resolve()
    }
    fake.events.on('call', check)
  })
  t.equal(fake.stats.maxInFlight, 3)
  fake.setBehaviour({ latencyMs: 0 })
  await fake.close()
  for (const r of await Promise.allSettled(calls)) t.equal(r.status, 'rejected', 'held until the server closed')
})

t.test('malformed answers are not plain JSON but our parser recovers them, except garbage', async (t) => {
  const { fake, chat, content } = await setup(t)
  for (const malformed of ['fences', 'trailing-comma', 'prose', 'citations'] as const) {
    fake.setBehaviour({ malformed })
    const text = content(await chat())
    t.throws(() => JSON.parse(text), `${malformed} breaks JSON.parse`)
    t.equal(parseInsightsAnswer(text, 3).byIndex.size, 3, `${malformed} is recoverable`)
  }
  fake.setBehaviour({ malformed: 'citations' })
  t.match(content(await chat()), /\[1\]/)
  t.match(content(await chat()), /【2†source】/)
  fake.setBehaviour({ malformed: 'garbage' })
  t.ok(parseInsightsAnswer(content(await chat()), 3).parseError)
})

t.test('malformedNext spoils only that many answers', async (t) => {
  const { chat, content } = await setup(t, { malformed: 'garbage', malformedNext: 2 })
  t.ok(parseInsightsAnswer(content(await chat()), 3).parseError)
  t.ok(parseInsightsAnswer(content(await chat()), 3).parseError)
  const clean = content(await chat())
  t.doesNotThrow(() => JSON.parse(clean))
})

t.test('partial drops the last k items but never all', async (t) => {
  const { chat, content } = await setup(t, { partial: 2 })
  t.same([...parseInsightsAnswer(content(await chat()), 3).byIndex.keys()], [0])
  t.same([...parseInsightsAnswer(content(await chat([BATCH[2]!])), 1).byIndex.keys()], [0])
})

t.test('poisonMarker leaves a conversation out, or gives it an invalid item', async (t) => {
  const { fake, chat, content } = await setup(t, { poisonMarker: 'POISON' })
  const items = [BATCH[0]!, conv('p', 'this one is POISON'), BATCH[2]!]
  const omitted = parseInsightsAnswer(content(await chat(items)), 3)
  t.same([...omitted.byIndex.keys()], [0, 2])
  t.same(omitted.invalid, [])
  fake.setBehaviour({ poisonAs: 'invalid' })
  const invalid = parseInsightsAnswer(content(await chat(items)), 3)
  t.same([...invalid.byIndex.keys()], [0, 2])
  t.same(invalid.invalid, [1])
})

t.test('omitUsage leaves usage out', async (t) => {
  const { chat } = await setup(t, { omitUsage: true })
  const r = await chat()
  t.equal(r.status, 200)
  t.equal(r.json.usage, undefined)
})

t.test('reset zeroes stats and restores the start behaviour', async (t) => {
  const { fake, chat } = await setup(t, { latencyMs: 0 })
  fake.setBehaviour({ failNext: 5 })
  t.equal((await chat()).status, 500)
  fake.reset()
  t.equal(fake.stats.calls, 0)
  t.same(fake.stats.byStatus, {})
  t.equal((await chat()).status, 200)
})

t.test('behaviour and stats are reachable over HTTP for out-of-process load tests', async (t) => {
  const { fake, chat } = await setup(t)
  const set = await fetch(`${fake.url.replace(/\/v1$/, '')}/_fake/behaviour`, {
    method: 'POST',
    body: JSON.stringify({ failNext: 1 })
  })
  t.equal(set.status, 200)
  await set.text()
  t.equal((await chat()).status, 500)
  const stats = (await (await fetch(`${fake.url.replace(/\/v1$/, '')}/_fake/stats`)).json()) as { calls: number }
  t.equal(stats.calls, 1)
  const reset = await fetch(`${fake.url.replace(/\/v1$/, '')}/_fake/reset`, { method: 'POST' })
  await reset.text()
  t.equal(fake.stats.calls, 0)
})

t.test('a request without messages is a 400', async (t) => {
  const { fake } = await setup(t)
  const res = await fetch(`${fake.url}/chat/completions`, { method: 'POST', body: 'not json' })
  await res.text()
  t.equal(res.status, 400)
})
