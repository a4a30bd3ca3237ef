// `npm start` runs src/ compiled by scripts/build.ts, not the TypeScript the rest of the
// suite runs through tsx: this builds it, starts it on a fresh PGlite folder, and checks
// what a build can break: our own imports (static and dynamic) rewritten to .js, and the
// files the code finds from import.meta.url (migrations, the analyzer's models, the
// console, package.json's version).
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { buildDist, sourceModules } from '../../scripts/build.ts'
import { VERSION } from '../../src/app.ts'
import { body, conversation, seedDataDir, tempDir, waitFor } from '../helper.ts'
import { startServer } from './server-process.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const OUT = `.build-test-${process.pid}`

t.test('the compiled server starts, ingests and analyses on PGlite', async (t) => {
  t.teardown(() => rmSync(join(ROOT, OUT), { recursive: true, force: true }))
  await buildDist(join(ROOT, OUT))

  const files = readdirSync(join(ROOT, OUT), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js') && !f.startsWith('console/'))
  t.same(files.sort(), sourceModules().map((f) => f.replace(/\.ts$/, '.js')).sort(), 'every module of src/ is built, and nothing else')
  const tsImports = files.filter((f) => /(?:from|import\()\s*['"]\.{1,2}\/[^'"]*\.ts['"]/.test(readFileSync(join(ROOT, OUT, f), 'utf8')))
  t.same(tsImports, [], 'no built module imports a .ts file')

  const dir = tempDir(t)
  await seedDataDir(dir)
  const s = await startServer(t, { DATA_DIR: dir }, { script: `${OUT}/server.js` })
  const health = await body(await fetch(`${s.base}/health`))
  t.equal(health.version, VERSION, 'the version is read from package.json')

  const posted = await fetch(`${s.base}/api/v1/conversations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(conversation()) })
  t.equal(posted.status, 202)
  const { id } = await body(posted)
  const insight = await waitFor(
    async () => {
      const c = await body(await fetch(`${s.base}/api/v1/conversations/${id}`))
      return c.insight
    },
    { what: 'the insight' }
  )
  t.match(insight.model, /^local/, 'analysed by the local analyzer, whose models were found and loaded')
  t.equal(insight.sentiment, 'negative', 'a double charge reads negative')

  const consolePage = await fetch(`${s.base}/console/`)
  t.equal(consolePage.status, 200, 'the console is served from the built folder')
  t.match(await consolePage.text(), /<html/i)
})
