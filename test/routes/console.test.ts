// The console's files over HTTP: served under their own CSP (scripts, styles and fetches from
// our origin only), the two vendored libraries limited to the files the page uses, nothing
// outside the console's folder, and the API's stricter policy untouched.
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { backendEnv, buildTestApp } from '../helper.ts'

const CONSOLE_DIR = fileURLToPath(new URL('../../src/console/', import.meta.url))

t.test('console routes', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false' })
  const get = (url: string) => app.inject({ url })

  t.test('/console redirects to /console/, which is the page', async (t) => {
    const r = await get('/console')
    t.equal(r.statusCode, 301)
    t.equal(r.headers.location, '/console/')
    const page = await get('/console/')
    t.equal(page.statusCode, 200)
    t.match(page.headers['content-type'], /^text\/html/)
    t.match(page.body, /<script type="module" src="app.js"><\/script>/)
  })

  t.test('every console file carries a CSP that allows only our origin and nothing inline', async (t) => {
    for (const path of ['/console/', '/console/app.js', '/console/console.css', '/console/views/live.js', '/console/vendor/uplot/uPlot.esm.js']) {
      const r = await get(path)
      t.equal(r.statusCode, 200, path)
      const csp = String(r.headers['content-security-policy'])
      for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "img-src 'self'", "frame-ancestors 'none'"]) {
        t.ok(csp.includes(d), `${path}: ${d}`)
      }
      t.notMatch(csp, /unsafe|https?:|\*/, `${path}: no unsafe-inline, no other origin`)
      t.equal(r.headers['x-content-type-options'], 'nosniff', `${path}: the other security headers stay`)
    }
  })

  t.test('the API keeps its own policy', async (t) => {
    const r = await get('/api/v1/insights')
    t.equal(r.statusCode, 200)
    t.equal(r.headers['content-security-policy'], "default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'")
  })

  t.test('the page has no inline script or style and loads nothing from another origin', async (t) => {
    const html = readFileSync(`${CONSOLE_DIR}index.html`, 'utf8')
    t.notMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'every script has a src')
    t.notMatch(html, /<style|\sstyle=|\son[a-z]+=/i, 'no style element, style attribute or inline handler')
    t.notMatch(html, /(?:src|href)="(?:https?:)?\/\//, 'no other origin')
    for (const f of readdirSync(CONSOLE_DIR, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js'))) {
      t.notMatch(readFileSync(`${CONSOLE_DIR}${f}`, 'utf8'), /\binnerHTML\b|\bouterHTML\b|insertAdjacentHTML|document\.write/, `${f} never parses text as HTML`)
    }
  })

  t.test('only the vendored files the page uses are served from the libraries', async (t) => {
    for (const ok of ['/console/vendor/uplot/uPlot.min.css', '/console/vendor/eventsource-parser/stream.js', '/console/vendor/eventsource-parser/index.js']) {
      t.equal((await get(ok)).statusCode, 200, ok)
    }
    for (const no of [
      '/console/vendor/uplot/uPlot.cjs.js',
      '/console/vendor/uplot/uPlot.d.ts',
      '/console/vendor/eventsource-parser/index.cjs',
      '/console/vendor/uplot/../package.json',
      '/console/vendor/uplot/%2e%2e/package.json'
    ]) {
      t.equal((await get(no)).statusCode, 404, no)
    }
  })

  t.test('nothing outside the console folder is reachable', async (t) => {
    for (const path of ['/console/../package.json', '/console/%2e%2e/package.json', '/console/..%2fsrc%2fconfig.ts', '/console/%2e%2e%2f%2e%2e%2fpackage.json']) {
      const r = await get(path)
      t.ok([400, 403, 404].includes(r.statusCode), `${path}: ${r.statusCode}`)
      t.match(r.json(), { error: { code: String, message: String } }, `${path}: the contract's error body`)
      t.notMatch(r.body, /"name": "gleaner"|ConfigSchema/, `${path}: no file from outside`)
    }
  })
})
