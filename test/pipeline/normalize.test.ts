import t from 'tap'
import type { Message } from '../../src/domain.ts'
import { cacheKey, normalizeText, sha256, storableJson, storableText, textHash } from '../../src/pipeline/normalize.ts'

const transcript: Message[] = [
  { role: 'user', content: 'My invoice is WRONG.' },
  { role: 'assistant', content: 'Let me check that for you.' }
]

t.test('normalizeText ignores case, spacing and surrounding whitespace', async (t) => {
  const noisy: Message[] = [
    { role: 'user', content: '  my   INVOICE is\n\twrong.  ' },
    { role: 'assistant', content: 'let me check that\r\nfor you.' }
  ]
  t.equal(normalizeText(noisy), normalizeText(transcript))
  t.equal(normalizeText(transcript), 'u:my invoice is wrong.\na:let me check that for you.')
})

t.test('normalizeText ignores timestamps, system and tool messages, and empty messages', async (t) => {
  const extra: Message[] = [
    { role: 'system', content: 'You are a support bot.' },
    { role: 'user', content: 'My invoice is WRONG.', at: '2026-01-01T00:00:00Z' },
    { role: 'tool', content: '{"lookup": "invoice"}' },
    { role: 'user', content: '   ' },
    { role: 'assistant', content: 'Let me check that for you.', at: '2026-01-02T00:00:00Z' }
  ]
  t.equal(normalizeText(extra), normalizeText(transcript))
})

t.test('normalizeText keeps who said what: user and the other side are told apart', async (t) => {
  const swapped: Message[] = [
    { role: 'assistant', content: 'My invoice is WRONG.' },
    { role: 'user', content: 'Let me check that for you.' }
  ]
  t.not(normalizeText(swapped), normalizeText(transcript))
  const agent: Message[] = [transcript[0]!, { role: 'agent', content: 'Let me check that for you.' }]
  t.equal(normalizeText(agent), normalizeText(transcript), 'agent and assistant are both the other side')
})

t.test('normalizeText folds compatibility forms (NFKC)', async (t) => {
  t.equal(normalizeText([{ role: 'user', content: 'ｆｕｌｌｗｉｄｔｈ ﬁle' }]), 'u:fullwidth file')
})

t.test('textHash is a stable sha256 of the normalized text', async (t) => {
  const h = textHash(transcript)
  t.match(h, /^[0-9a-f]{64}$/)
  t.equal(textHash(structuredClone(transcript)), h, 'same input, same hash')
  t.equal(h, sha256('u:my invoice is wrong.\na:let me check that for you.'))
  t.equal(sha256('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'known sha256 vector')
  t.not(textHash([{ role: 'user', content: 'My invoice is right.' }]), h)
})

t.test('cacheKey differs by text, model and prompt version', async (t) => {
  const h = textHash(transcript)
  const k = cacheKey(h, 'gpt-4o-mini', 'v1')
  t.match(k, /^[0-9a-f]{64}$/)
  t.equal(cacheKey(h, 'gpt-4o-mini', 'v1'), k, 'stable')
  t.not(cacheKey(h, 'grok-4', 'v1'), k, 'another model')
  t.not(cacheKey(h, 'gpt-4o-mini', 'v2'), k, 'another prompt version')
  t.not(cacheKey(sha256('other'), 'gpt-4o-mini', 'v1'), k, 'another text')
  t.not(cacheKey(h, 'a', 'bc'), cacheKey(h, 'ab', 'c'), 'the parts are separated, not just concatenated')
})

t.test('storableText removes NUL characters', async (t) => {
  t.equal(storableText('a\u0000b\u0000'), 'ab')
  t.equal(storableText('plain text'), 'plain text')
})

t.test('storableText replaces lone surrogates with U+FFFD and keeps valid pairs', async (t) => {
  t.equal(storableText('x\uD800y'), 'x\uFFFDy', 'lone high surrogate')
  t.equal(storableText('x\uDC00'), 'x\uFFFD', 'lone low surrogate')
  t.equal(storableText('😀 ok'), '😀 ok', 'a valid pair is untouched')
  t.equal(storableText('\u0000\uD83D'), '\uFFFD', 'both at once')
})

t.test('storableJson cleans keys and nested values and leaves other types alone', async (t) => {
  const input = {
    'k\u0000ey': 'v\uD800',
    nested: { deep: ['a\u0000', { '\uDC00': 1 }], n: 2.5, b: true, z: null },
    list: [1, 'x\u0000y']
  }
  t.same(storableJson(input), {
    key: 'v\uFFFD',
    nested: { deep: ['a', { '\uFFFD': 1 }], n: 2.5, b: true, z: null },
    list: [1, 'xy']
  })
  t.equal(storableJson(null), null)
  t.equal(storableJson(7), 7)
  t.equal(storableJson('\u0000'), '')
})

t.test('storableJson returns a copy and does not change its input', async (t) => {
  const input = { a: ['b\u0000'] }
  const out = storableJson(input) as { a: string[] }
  t.same(input, { a: ['b\u0000'] })
  t.not(out.a, input.a)
})

t.test('storableJson hands back storable metadata itself, and repairs a value found deep or in a key only', async (t) => {
  const clean = { plan: 'pro', tags: ['a', { b: 'c' }], n: 1 }
  t.equal(storableJson(clean), clean, 'nothing to repair: no copy')
  t.same(storableJson({ a: { b: [{ c: 'x\u0000' }] } }), { a: { b: [{ c: 'x' }] } }, 'a NUL four levels down')
  t.same(storableJson({ ok: 1, 'bad\uD800': 2 }), { ok: 1, 'bad\uFFFD': 2 }, 'only a key needs it')
})
