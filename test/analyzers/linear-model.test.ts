import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { type LinearModel, loadLinearModel } from '../../src/analyzers/linear-model.ts'
import { featureTokens, textFeatures } from '../../src/analyzers/text-features.ts'
import { INTENTS, SENTIMENTS } from '../../src/domain.ts'

const MODELS = new URL('../../src/analyzers/models/', import.meta.url)

t.test('the shipped weights load, are small, and their classes come from the domain', async (t) => {
  const sentiment = loadLinearModel(MODELS, 'sentiment')
  const intent = loadLinearModel(MODELS, 'intent')
  t.same(sentiment.classes, ['negative', 'neutral', 'positive'])
  t.ok(sentiment.classes.every((c) => (SENTIMENTS as readonly string[]).includes(c)))
  t.ok(intent.classes.every((c) => (INTENTS as readonly string[]).includes(c)), `intent classes ${intent.classes.join(', ')} are all in the taxonomy`)
  let bytes = 0
  for (const name of ['sentiment', 'intent']) for (const ext of ['json', 'bin']) bytes += statSync(new URL(`${name}.${ext}`, MODELS)).size
  t.ok(bytes < 4 * 1024 * 1024, `weights are ${(bytes / 1024 / 1024).toFixed(1)} MB, under 4 MB`)
})

t.test('predictions are deterministic probabilities and read the obvious cases right', async (t) => {
  const sentiment = loadLinearModel(MODELS, 'sentiment')
  const intent = loadLinearModel(MODELS, 'intent')
  const text = 'I love this, it is fantastic!'
  const a = sentiment.predict(text)
  t.same([...sentiment.predict(text)], [...a], 'same text, same probabilities')
  t.same([...loadLinearModel(MODELS, 'sentiment').predict(text)], [...a], 'a second load predicts the same')
  t.ok(Math.abs(a.reduce((x, y) => x + y, 0) - 1) < 1e-9, 'probabilities sum to 1')
  const top = (m: LinearModel, s: string) => {
    const p = m.predict(s)
    return m.classes[p.indexOf(Math.max(...p))]
  }
  t.equal(top(sentiment, text), 'positive')
  t.equal(top(sentiment, 'This is terrible, the worst service ever, I hate it'), 'negative')
  t.equal(top(intent, 'I want a refund for my order'), 'refund_request')
  t.equal(top(intent, 'I forgot my password and cannot log in'), 'account_help')
  t.same([...sentiment.predict('')], [...sentiment.predict('')], 'empty text predicts the bias alone, the same each time')
})

t.test('features: words, word pairs and character 4-grams; negation marks the words after it', async (t) => {
  t.same(featureTokens("This isn't good. @bob see https://x.co 123"), ['this', 'isnt', 'not_good', '|', '<user>', 'see', '<url>', '<num>'])
  t.same(featureTokens('it does n\'t work'), ['it', 'doesnt', 'not_work'], 'treebank "n\'t" joined again')
  t.same(featureTokens('soooooo goooood'), ['soo', 'good'], 'elongations squeezed')
  const f = textFeatures('good film', 10)
  t.ok(f.every((x) => Number.isInteger(x) && x >= 0 && x < 1024), 'indices fit the hash width')
  t.equal(f.length, 2 + 1 + 3 + 3, 'two words, one pair, three 4-grams of each padded word (" goo", "good", "ood ")')
})

t.test('a model file that does not match its weights fails to load with the model named', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gleaner-model-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const meta = JSON.parse(readFileSync(new URL('sentiment.json', MODELS), 'utf8'))
  writeFileSync(join(dir, 'broken.json'), JSON.stringify({ ...meta, name: 'broken' }))
  writeFileSync(join(dir, 'broken.bin'), Buffer.alloc(10))
  t.throws(() => loadLinearModel(dir, 'broken'), /model broken: 10 weights, expected/)
  writeFileSync(join(dir, 'alien.json'), JSON.stringify({ ...meta, name: 'alien', format: 'other' }))
  writeFileSync(join(dir, 'alien.bin'), Buffer.alloc(10))
  t.throws(() => loadLinearModel(dir, 'alien'), /model alien: unknown format/)
  t.throws(() => loadLinearModel(dir, 'missing'), /missing\.json/)
})
