// The model path against real-provider behaviour, over real HTTP with the fake server:
// prompt v2 and its response format, redaction, token budgets, truncation, certain-only
// answer matching, and each answer shape providers send.
import { pino } from 'pino'
import t from 'tap'
import { ANSWER_SHAPES, ERROR_STYLES, type FakeModelServerOptions, startFakeModelServer } from '../../loadtest/fake-model-server.ts'
import { type AnalysisInput, ModelCallError } from '../../src/analyzers/analyzer.ts'
import type { TransportClock } from '../../src/analyzers/model-transport.ts'
import { createOpenAICompatibleAnalyzer } from '../../src/analyzers/openai-compatible.ts'
import { findConversationBlocks, PROMPTS } from '../../src/analyzers/prompts.ts'
import { loadConfig } from '../../src/config.ts'
import { INTENT_DEFINITIONS, INTENTS, SENTIMENTS, URGENCIES, URGENCY_RUBRIC } from '../../src/domain.ts'
import { createMetrics } from '../../src/metrics.ts'
import { findPii } from '../../src/pii.ts'

type WithTeardown = { teardown(fn: () => unknown): void }
const clock: TransportClock = { sleep: async (_ms, signal) => signal.throwIfAborted(), random: () => 0.5 }

const conv = (id: string, ...messages: AnalysisInput['messages']): AnalysisInput => ({ id, source: 'test', messages })
const say = (content: string) => ({ role: 'user' as const, content })
const reply = (content: string) => ({ role: 'agent' as const, content })

async function setup(t: WithTeardown, fakeOpts: FakeModelServerOptions = {}, env: Record<string, string> = {}) {
  const fake = await startFakeModelServer(fakeOpts)
  t.teardown(() => fake.close())
  const bodies: string[] = []
  fake.events.on('request', (b) => bodies.push(b))
  const config = loadConfig({
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: fake.url,
    MODEL_NAME: 'fake-1',
    MODEL_RETRY_BASE_MS: '1',
    MODEL_MAX_RETRIES: '1',
    ...env
  })
  const metrics = createMetrics({ defaultMetrics: false })
  const analyzer = createOpenAICompatibleAnalyzer(config, { metrics, logger: pino({ level: 'silent' }), clock })
  t.teardown(() => analyzer.close())
  const counter = async (c: { get(): Promise<{ values: Array<{ labels: Record<string, unknown>; value: number }> }> }, label: string) => {
    const out: Record<string, number> = {}
    for (const v of (await c.get()).values) out[String(v.labels[label])] = v.value
    return out
  }
  const userPrompts = () => bodies.map((b) => (JSON.parse(b) as { messages: Array<{ role: string; content: string }> }).messages.find((m) => m.role === 'user')!.content)
  return { fake, config, metrics, analyzer, bodies, counter, userPrompts }
}

/** Each conversation says which one it is, and the fake's summary quotes the customer's first line. */
const numbered = (n: number, prefix = 'conv') =>
  Array.from({ length: n }, (_, i) => conv(`${prefix}${i}`, say(`I am conversation ${prefix}${i} and my invoice is wrong`), reply('Let me check.')))

const landedRight = (results: Awaited<ReturnType<ReturnType<typeof createOpenAICompatibleAnalyzer>['analyzeBatch']>>['results']) =>
  results.every((r) => !r.ok || r.insight.summary.includes(`conversation ${r.id} `))

// ---------------------------------------------------------------------------------------
// 1. Prompt v2

t.test('prompt v2 carries every intent, urgency and sentiment of the domain with its definition', async (t) => {
  const { system } = PROMPTS.v2
  for (const intent of INTENTS) t.ok(system.includes(`- ${intent}: ${INTENT_DEFINITIONS[intent]}`), intent)
  for (const u of URGENCIES) t.ok(system.includes(`- ${u}: ${URGENCY_RUBRIC[u]}`), u)
  for (const s of SENTIMENTS) t.ok(system.includes(`  - ${s}: `), s)
  t.match(system, /Example 1:/)
  t.match(system, /in English/)
})

t.test('prompt v2 leaves [system] and [tool] messages out of what the model sees', async (t) => {
  const { fake, analyzer, userPrompts } = await setup(t)
  const r = await analyzer.analyzeBatch([
    conv('a', { role: 'system', content: 'SECRET-BOT-INSTRUCTIONS' }, say('My parcel never arrived'), { role: 'tool', content: 'TOOL-OUTPUT-123' }, reply('Sorry'))
  ])
  t.ok(r.results[0]!.ok)
  t.equal(fake.stats.calls, 1)
  const [prompt] = userPrompts()
  t.notMatch(prompt, /SECRET-BOT-INSTRUCTIONS|TOOL-OUTPUT|\[system\]|\[tool\]/)
  t.match(prompt, /\[user\] My parcel never arrived/)
})

t.test('prompt v2 trims by the customer share: agent boilerplate cannot crowd out the customer', async (t) => {
  const { analyzer, userPrompts } = await setup(t, {}, { MODEL_MAX_INPUT_TOKENS_PER_CONVERSATION: '200' })
  const boilerplate = 'Our legal footer. '.repeat(500)
  await analyzer.analyzeBatch([conv('a', say(`CUSTOMER-START ${'my card was charged twice '.repeat(12)} CUSTOMER-END`), reply(boilerplate))])
  const block = findConversationBlocks(userPrompts()[0]!)[0]!.text
  t.ok(block.length <= 200 * 4, `block within budget (${block.length} chars)`)
  t.match(block, /CUSTOMER-START/)
  t.match(block, /CUSTOMER-END/, 'the customer message is whole: it is under its share')
  t.ok(block.includes('Our legal footer') && block.includes('…'), 'the agent message is cut, not dropped')
})

t.test('SUMMARY_LANGUAGE is in the prompt and in its version, so the cache never mixes languages', async (t) => {
  const { analyzer, bodies } = await setup(t, {}, { SUMMARY_LANGUAGE: 'German' })
  await analyzer.analyzeBatch(numbered(1))
  t.equal(analyzer.promptVersion, 'v2@german')
  t.match((JSON.parse(bodies[0]!) as { messages: Array<{ content: string }> }).messages[0]!.content, /summary: in German/)
})

// ---------------------------------------------------------------------------------------
// 2. Structured output

t.test('MODEL_RESPONSE_FORMAT=json_schema sends a strict schema whose labels are the domain lists', async (t) => {
  const { analyzer, bodies } = await setup(t, {}, { MODEL_RESPONSE_FORMAT: 'json_schema' })
  const r = await analyzer.analyzeBatch(numbered(2))
  t.ok(r.results.every((x) => x.ok))
  type ItemSchema = { properties: Record<string, { enum?: string[] }>; required: string[]; additionalProperties: boolean }
  type Format = { type: string; json_schema: { strict: boolean; schema: { properties: { insights: { items: ItemSchema } } } } }
  const format = (JSON.parse(bodies[0]!) as { response_format: Format }).response_format
  t.equal(format.type, 'json_schema')
  t.equal(format.json_schema.strict, true)
  const item = format.json_schema.schema.properties.insights.items
  t.same(item.properties.intent!.enum, [...INTENTS])
  t.same(item.properties.sentiment!.enum, [...SENTIMENTS])
  t.same(item.properties.urgency!.enum, [...URGENCIES])
  t.same([...item.required].sort(), ['index', 'intent', 'language', 'sentiment', 'sentiment_score', 'summary', 'topics', 'urgency'])
  t.equal(item.additionalProperties, false)
  t.notOk(JSON.stringify(format).includes('maxLength'), 'only keywords every provider accepts')
})

t.test('MODEL_RESPONSE_FORMAT=json_object and none', async (t) => {
  const json = await setup(t, {}, { MODEL_RESPONSE_FORMAT: 'json_object' })
  await json.analyzer.analyzeBatch(numbered(1))
  t.same(JSON.parse(json.bodies[0]!).response_format, { type: 'json_object' })
  const none = await setup(t, {}, { MODEL_RESPONSE_FORMAT: 'none' })
  await none.analyzer.analyzeBatch(numbered(1))
  t.notOk('response_format' in JSON.parse(none.bodies[0]!))
})

t.test('unknown intents mapped to other and clamped scores are counted per model', async (t) => {
  // the fake answers intent "feedback" (not in the taxonomy) for text with no complaint or question
  const { analyzer, metrics, counter } = await setup(t)
  const r = await analyzer.analyzeBatch([conv('a', say('Thanks, the new release works great!'))])
  t.ok(r.results[0]!.ok && r.results[0]!.insight.intent === 'other')
  t.same(await counter(metrics.modelAnswerCorrections, 'kind'), { unknown_intent: 1 })
})

// ---------------------------------------------------------------------------------------
// 3. Token budgets and truncation

t.test('a batch is cut into calls by estimated input tokens, and max_tokens is sized to each call', async (t) => {
  const { fake, analyzer, bodies, userPrompts, config } = await setup(t, {}, { MODEL_MAX_INPUT_TOKENS_PER_CALL: '2000', MODEL_OUTPUT_TOKENS_PER_ITEM: '200' })
  const long = 'my invoice is wrong and nobody answers my emails '.repeat(30) // ~370 tokens
  const items = Array.from({ length: 8 }, (_, i) => conv(`l${i}`, say(`I am conversation l${i} and ${long}`)))
  const r = await analyzer.analyzeBatch(items)
  t.ok(r.results.every((x) => x.ok))
  t.ok(landedRight(r.results))
  t.ok(fake.stats.calls >= 2, `${fake.stats.calls} calls`)
  const system = PROMPTS.v2.system.length
  for (const [i, prompt] of userPrompts().entries()) {
    t.ok(Math.ceil((prompt.length + system) / 4) <= config.MODEL_MAX_INPUT_TOKENS_PER_CALL + 100, `call ${i} within the budget`)
    const n = findConversationBlocks(prompt).length
    t.equal(JSON.parse(bodies[i]!).max_tokens, 64 + n * 200, `call ${i}: max_tokens for ${n} conversations`)
  }
})

t.test('MODEL_MAX_TOKENS_PARAM=max_completion_tokens puts the cap in that field, for OpenAI reasoning models', async (t) => {
  const { analyzer, bodies } = await setup(t, {}, { MODEL_MAX_TOKENS_PARAM: 'max_completion_tokens' })
  await analyzer.analyzeBatch(numbered(2))
  const body = JSON.parse(bodies[0]!)
  t.equal(body.max_completion_tokens, 64 + 2 * 250)
  t.notOk('max_tokens' in body)
})

t.test('finish_reason length splits the call once on purpose, is counted, and nothing lands on the wrong conversation', async (t) => {
  // the model writes at most ~4 items' worth per answer (each is ~100 tokens in the fake)
  const { fake, analyzer, metrics, counter } = await setup(t, { maxOutputTokens: 450 })
  const r = await analyzer.analyzeBatch(numbered(12))
  t.ok(r.results.every((x) => x.ok), 'every conversation ends with an insight')
  t.ok(landedRight(r.results), 'each on its own conversation')
  t.ok(fake.stats.truncated >= 1)
  t.equal((await counter(metrics.modelTruncated, 'model'))['fake-1'], fake.stats.truncated, 'each truncation counted')
  t.ok(fake.stats.calls < 12, `halving, not one by one (${fake.stats.calls} calls)`)
})

t.test('a single conversation whose answer is cut off fails without retrying the same prompt', async (t) => {
  const { fake, analyzer } = await setup(t, { maxOutputTokens: 20 })
  const r = await analyzer.analyzeBatch(numbered(1))
  t.equal(fake.stats.calls, 1)
  t.match(r.results[0], { ok: false, reason: 'invalid_output', error: /cut off/ })
})

t.test('a prompt over the context window is asked again in halves; a conversation too long alone is a dead letter', async (t) => {
  // the chunking estimate lets the whole batch through as one call; the model counts otherwise.
  // The huge one is trimmed to 1,500 tokens (~6,000 characters): still over 5,000 alone.
  const { fake, analyzer, metrics, counter } = await setup(t, { contextLimitChars: 5_000 }, { MODEL_MAX_INPUT_TOKENS_PER_CALL: '100000' })
  const huge = conv('huge', say(`my order never came and ${'nobody answers my emails at all '.repeat(400)}`))
  const items = [...numbered(10), huge]
  const r = await analyzer.analyzeBatch(items)
  const byId = new Map(r.results.map((x) => [x.id, x]))
  t.ok(
    r.results.filter((x) => x.id !== 'huge').every((x) => x.ok),
    'every conversation that fits gets its insight'
  )
  t.ok(landedRight(r.results.filter((x) => x.ok)), 'each on its own conversation')
  t.match(byId.get('huge'), { ok: false, retryable: false, reason: 'rejected', error: /context window/ })
  const overflows = (await counter(metrics.modelContextOverflows, 'model'))['fake-1'] ?? 0
  t.ok(overflows >= 2, `the batch and the huge one's halves counted (${overflows})`)
  t.ok(fake.stats.calls < 11 + overflows, `halving, not one by one (${fake.stats.calls} calls)`)
})

// ---------------------------------------------------------------------------------------
// 4. No silent misassignment

t.test('index-less answers missing an item are never matched by position: every insight lands on its own conversation', async (t) => {
  const { analyzer, metrics, counter } = await setup(t, { omitIndex: true, partial: 1 })
  const r = await analyzer.analyzeBatch(numbered(6))
  t.ok(landedRight(r.results), 'no insight on a neighbour')
  t.ok((await counter(metrics.modelAnswerCorrections, 'kind')).positional_mismatch! >= 1)
  t.ok(r.results.every((x) => x.ok), 'the single re-asks (exact count of one) all succeed')
})

t.test('index-less answers with the exact count are used in order', async (t) => {
  const { fake, analyzer } = await setup(t, { omitIndex: true })
  const r = await analyzer.analyzeBatch(numbered(5))
  t.equal(fake.stats.calls, 1)
  t.ok(r.results.every((x) => x.ok) && landedRight(r.results))
})

// ---------------------------------------------------------------------------------------
// 5. PII redaction

const PII_TEXT = [
  'My email is jane.doe@example.com and my phone is +44 7700 900123.',
  'Card 4111 1111 1111 1111 was charged, IBAN GB82 WEST 1234 5698 7654 32, from 192.168.10.20.'
].join(' ')

t.test('with REDACT_PII on (the default for an external model) no email, phone, card, IBAN or IP reaches the provider', async (t) => {
  const { analyzer, bodies, metrics, counter, config } = await setup(t)
  t.equal(config.REDACT_PII, 'on')
  const items = [conv('p1', say(PII_TEXT), reply('I see jane.doe@example.com on file.')), conv('p2', say(`second: ${PII_TEXT}`))]
  const r = await analyzer.analyzeBatch(items)
  t.ok(r.results.every((x) => x.ok))
  t.ok(bodies.length >= 1)
  for (const body of bodies) {
    const prompt = (JSON.parse(body) as { messages: Array<{ content: string }> }).messages[1]!.content
    for (const raw of ['jane.doe@example.com', '7700 900123', '4111 1111 1111 1111', 'GB82 WEST', '192.168.10.20']) t.notOk(body.includes(raw), `${raw} not sent`)
    t.same(
      findPii(prompt, ['email', 'phone', 'card', 'iban', 'ip']).map((s) => prompt.slice(s.start, s.end)),
      [],
      'nothing the detector finds'
    )
    t.match(prompt, /<EMAIL_1>.*<PHONE_1>.*<CARD_1>.*<IBAN_1>.*<IP_1>/)
    t.match(prompt, /\[agent\] I see <EMAIL_1> on file/, 'the same address keeps its number across messages')
  }
  t.equal(items[0]!.messages[0]!.content, PII_TEXT, 'the caller keeps the original')
  const kinds = await counter(metrics.piiRedactions, 'kind')
  t.ok(kinds.email! >= 3 && kinds.card! >= 2)
})

t.test('REDACT_PII=off sends the text as it is', async (t) => {
  const { analyzer, bodies } = await setup(t, {}, { REDACT_PII: 'off' })
  await analyzer.analyzeBatch([conv('p1', say(PII_TEXT))])
  t.ok(bodies[0]!.includes('jane.doe@example.com'))
})

t.test('redaction is linear on hostile text at the contract limits (500 messages of 32,000 characters)', async (t) => {
  const { analyzer, bodies } = await setup(t, {}, { MODEL_MAX_INPUT_TOKENS_PER_CONVERSATION: '2000' })
  const hostile = '@'.repeat(16_000) + '1-'.repeat(8_000)
  const messages = Array.from({ length: 500 }, (_, i) => (i % 2 ? reply(hostile) : say(hostile)))
  const r = await analyzer.analyzeBatch([conv('h', ...messages)])
  t.equal(r.results.length, 1)
  t.equal(bodies.length >= 1, true)
})

// ---------------------------------------------------------------------------------------
// 8. Real answer shapes

for (const shape of ANSWER_SHAPES.filter((s) => s !== 'refusal')) {
  t.test(`answer shape "${shape}" is read into insights`, async (t) => {
    const { fake, analyzer } = await setup(t, { shape })
    const r = await analyzer.analyzeBatch(numbered(3))
    t.equal(fake.stats.calls, 1, 'one call: nothing re-asked')
    t.ok(r.results.every((x) => x.ok) && landedRight(r.results))
  })
}

t.test('a refusal is counted, fails the refused conversation alone and retryable, and is not asked again in the same words', async (t) => {
  const { fake, analyzer, metrics, counter } = await setup(t, { shape: 'refusal' })
  const r = await analyzer.analyzeBatch(numbered(1))
  t.match(r.results[0], { ok: false, retryable: true, reason: 'invalid_output', error: /refused/ })
  t.equal(fake.stats.calls, 1, 'temperature 0 refuses again: no retry')
  t.equal((await counter(metrics.modelRefusals, 'model'))['fake-1'], 1)
})

t.test('a refused batch is split: a refusal is about some text, not the endpoint', async (t) => {
  const { fake, analyzer } = await setup(t, { shape: 'refusal' })
  const r = await analyzer.analyzeBatch(numbered(2))
  t.ok(r.results.every((x) => !x.ok && x.retryable))
  t.equal(fake.stats.calls, 3, 'the batch, then each alone; no same-prompt retries')
})

for (const style of ERROR_STYLES) {
  t.test(`a ${style} error body is read into the rejection message`, async (t) => {
    const { analyzer } = await setup(t, { badRequestNext: 1, errorStyle: style })
    const err = await analyzer.analyzeBatch(numbered(1)).catch((e: unknown) => e)
    t.type(err, ModelCallError)
    t.match((err as ModelCallError).message, /refused the request \(400\): fake bad request/)
    t.equal((err as ModelCallError).kind, 'rejected')
  })
}

t.test('cached prompt tokens are billed at their own price, the rest of the input at the input price', async (t) => {
  // $10 / $40 per million, cached input $1: what OpenAI and xAI bill at a fraction of the input price
  const env = { MODEL_PRICE_INPUT_PER_MTOK: '10', MODEL_PRICE_OUTPUT_PER_MTOK: '40', MODEL_PRICE_CACHED_INPUT_PER_MTOK: '1' }
  const { analyzer, metrics, counter } = await setup(t, { cachedTokens: 1_000 }, env)
  const r = await analyzer.analyzeBatch(numbered(2))
  const tokens = await counter(metrics.modelTokens, 'type')
  const cached = tokens.cached_input!
  t.ok(cached > 0 && cached <= r.usage.input, `some input came from the cache (${cached} of ${r.usage.input})`)
  const expected = ((r.usage.input - cached) * 10 + cached * 1 + r.usage.output * 40) / 1e6
  t.ok(Math.abs(r.usage.cost_usd - expected) < 1e-12, `the batch costs ${r.usage.cost_usd}, as billed (${expected})`)
  const items = r.results.reduce((sum, x) => sum + (x.ok ? x.cost_usd : 0), 0)
  t.ok(Math.abs(items - r.usage.cost_usd) < 1e-9, 'the insights\' shares add up to it')
  const full = await setup(t, { cachedTokens: 1_000 }, { MODEL_PRICE_INPUT_PER_MTOK: '10', MODEL_PRICE_OUTPUT_PER_MTOK: '40' })
  const fr = await full.analyzer.analyzeBatch(numbered(2))
  t.ok(Math.abs(fr.usage.cost_usd - (fr.usage.input * 10 + fr.usage.output * 40) / 1e6) < 1e-12, 'without a cached price, cached tokens cost the input price')
})

t.test('usage with cached prompt tokens is counted as cached_input', async (t) => {
  const { analyzer, metrics, counter } = await setup(t, { cachedTokens: 1_000 })
  const r = await analyzer.analyzeBatch(numbered(2))
  const tokens = await counter(metrics.modelTokens, 'type')
  t.equal(tokens.input, r.usage.input)
  t.ok(tokens.cached_input! > 0 && tokens.cached_input! <= tokens.input!)
})
