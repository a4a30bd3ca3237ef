// The console in a real browser (Debian's chromium driven by playwright-core) against a
// running Gleaner: a wrong key, key entry, the overview, filters, keyset paging, a
// conversation, an export download, the live tab receiving a new insight, a phone-sized
// screen, a key revoked mid-session, and no CSP violation anywhere. Screenshots of each page
// go to test-results/console/ for a reviewer.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sql } from 'drizzle-orm'
import { type BrowserContext, chromium, type Page } from 'playwright-core'
import t from 'tap'
import { LOCAL_MODEL } from '../../src/analyzers/local.ts'
import { INTENTS } from '../../src/domain.ts'
import { CSV_COLUMNS } from '../../src/routes/export.ts'
import { backendEnv, buildTestApp, listen, waitFor } from '../helper.ts'

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium'
const SHOTS = fileURLToPath(new URL('../../test-results/console/', import.meta.url))
const skip = existsSync(CHROMIUM)
  ? false
  : `no chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_BIN): the console's browser test cannot run`
/** Playwright waits; generous because the machine is shared and the first page load compiles. */
const UI_TIMEOUT_MS = 30_000

/** UTC midnight `n` days ago, as the overview starts its periods. */
function utcDaysAgo(n: number): string {
  const now = new Date()
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - n)).toISOString()
}

const TEXTS: { source: string; content: string }[] = [
  { source: 'web-chat', content: 'My invoice is wrong, I was charged twice this month and I want a refund now.' },
  { source: 'email', content: 'The app crashes every time I open the settings page, it is broken and useless.' },
  { source: 'web-chat', content: 'Thank you so much, the new dashboard is wonderful and works great. Love it!' },
  { source: 'helpdesk', content: 'How do I reset my password for my account? I cannot log in since yesterday.' },
  { source: 'email', content: 'URGENT: the whole service is down since this morning and our team cannot work!' },
  { source: 'mobile-app', content: 'My order has not shipped yet and it was supposed to arrive last week.' },
  { source: 'helpdesk', content: 'I want to cancel my subscription, it is too expensive for what we use.' },
  { source: 'mobile-app', content: 'Could you add dark mode to the app? It would help a lot at night.' },
  { source: 'web-chat', content: 'Is there a discount if we upgrade to the enterprise plan for 50 seats?' },
  { source: 'email', content: 'The export to CSV takes forever and then fails with an error 500.' },
  { source: 'web-chat', content: 'This is the worst service I have ever used. I am furious, nobody answers and I am still waiting.' },
  { source: 'helpdesk', content: 'Terrible experience, the agent was rude and my problem is still not solved. Very disappointed.' }
]

t.test('the console in a real browser', { skip }, async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), AUTH: 'on', KEY_CACHE_TTL_MS: '0', STREAM_HEARTBEAT_MS: '1000' })
  const base = await listen(app)
  const { key: readKey, record: readRecord } = await app.repos.apiKeys.create({ name: 'analyst', scopes: ['read'], tier: 'pro' })
  const { key: ingestKey } = await app.repos.apiKeys.create({ name: 'producer', scopes: ['ingest'], tier: 'pro' })
  const api = (path: string, key: string, body?: unknown) =>
    fetch(`${base}${path}`, {
      method: body ? 'POST' : 'GET',
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined
    })

  // analysed conversations spread over the last 40 days, so a month's overview has a shape
  // and a period before it to compare topics with
  const N = 240
  const conversations = Array.from({ length: N }, (_, i) => {
    const x = TEXTS[(i * 7) % TEXTS.length]!
    return {
      source: x.source,
      external_id: `console-${i}`,
      messages: [
        { role: 'system', content: 'You are the support assistant of Acme.' },
        { role: 'user', content: `${x.content} (ticket ${1000 + i})` },
        { role: 'assistant', content: 'Sorry to hear that, let me check this for you.' },
        { role: 'user', content: i % 3 ? 'Please get back to me today.' : 'Thanks, please hurry.' }
      ]
    }
  })
  const batch = await api('/api/v1/conversations/batch', ingestKey, { conversations })
  t.equal(batch.status, 207)
  const ids = ((await batch.json()) as { results: { id: string }[] }).results.map((r) => r.id)
  await waitFor(async () => (await app.repos.insights.getMany(ids)).length === N, { what: `${N} insights` })
  await app.database.query(
    sql`UPDATE insights SET created_at = created_at - ((abs(hashtext(conversation_id::text)) % 40) * interval '1 day') - ((abs(hashtext(source)) % 7) * interval '1 hour')`
  )

  mkdirSync(SHOTS, { recursive: true })
  const profile = mkdtempSync(join(tmpdir(), 'gleaner-chromium-'))
  t.teardown(() => rmSync(profile, { recursive: true, force: true }))
  const context: BrowserContext = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
    timeout: UI_TIMEOUT_MS
  })
  t.teardown(() => context.close())
  context.setDefaultTimeout(UI_TIMEOUT_MS)

  // every page of the console must run without a script error or a CSP violation
  const problems: string[] = []
  const watch = (page: Page) => {
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) problems.push(`console: ${m.text()}`)
    })
    return page
  }
  const page = watch(await context.newPage())
  const shot = (name: string, p: Page = page, fullPage = true) => p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage })
  // browser-side code as strings: the tests' TypeScript has no DOM library
  const hash = () => page.evaluate<string>('location.hash')
  const storedKey = (p: Page = page) => p.evaluate<string | null>("sessionStorage.getItem('gleaner.apiKey')")

  await t.test('the page is served under the console\'s CSP', async (t) => {
    const res = await page.goto(`${base}/console`)
    t.equal(new URL(page.url()).pathname, '/console/', '/console redirects to /console/')
    t.match(res?.headers()['content-security-policy'], /script-src 'self'/)
    await page.waitForSelector('#signin:not([hidden])')
  })

  await t.test('a wrong key shows a clear message and is not kept', async (t) => {
    await page.fill('#key', 'gln_this-is-not-a-real-key-0000000000000000')
    await page.click('#signin-form button')
    const error = page.locator('#signin-error')
    await error.waitFor({ state: 'visible' })
    t.match(await error.textContent(), /not accepted/)
    t.equal(await storedKey(), null)
    t.ok(await page.locator('#nav').isHidden(), 'no navigation without a key')
    await shot('signin-wrong-key')
  })

  await t.test('a valid key opens the overview; the key stays in session storage, out of URLs', async (t) => {
    await page.fill('#key', readKey)
    await page.click('#signin-form button')
    await page.waitForSelector('#volume-chart canvas')
    t.equal(await storedKey(), readKey)
    t.notOk(page.url().includes(readKey), 'not in the URL')
    // the fixture spans 40 days: the default week shows part of it, a month more
    const total = async (days: number) =>
      String(((await (await api(`/api/v1/insights/summary?since=${utcDaysAgo(days - 1)}`, readKey)).json()) as { total: number }).total)
    t.equal(await page.locator('.kpi-value').first().textContent(), await total(7), 'the last 7 days by default')
    await page.selectOption('select[name=days]', '30')
    await page.waitForFunction("location.hash.includes('days=30')")
    const month = await total(30)
    await waitFor(async () => (await page.locator('.kpi-value').first().textContent()) === month, { what: 'the month\'s total' })
    await page.waitForSelector('#volume-chart canvas')
    t.ok(await page.locator('#top-topics tbody tr').count(), 'top topics listed')
    t.ok(await page.locator('#top-topics .change').count(), 'with their change against the previous period')
    t.equal(await page.locator('#by-source tbody tr').count(), new Set(TEXTS.map((x) => x.source)).size, 'every source')
    await shot('overview')
  })

  await t.test('the overview filtered by one source', async (t) => {
    await page.selectOption('select[name=source]', 'email')
    await page.waitForFunction("location.hash.includes('source=email')")
    await page.waitForSelector('#volume-chart canvas')
    const emails = (await (await api(`/api/v1/insights/summary?source=email&since=${utcDaysAgo(29)}`, readKey)).json()) as { total: number }
    await waitFor(async () => (await page.locator('.kpi-value').first().textContent()) === String(emails.total), { what: 'email total' })
    t.pass(`${emails.total} insights from email`)
  })

  const rowIds = () => page.locator('#insight-table tr.insight-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id')))

  await t.test('the insight list: intents come from the server, filters narrow the list', async (t) => {
    await page.click('#nav a[data-tab=insights]')
    await page.waitForSelector('#insight-table')
    t.same(
      await page.locator('select[name=intent] option').evaluateAll((os) => os.map((o) => o.getAttribute('value')).filter(Boolean)),
      INTENTS,
      'the intent filter offers the taxonomy'
    )
    t.equal(await page.locator('#match-count strong').textContent(), String(N))
    t.equal((await rowIds()).length, 25, 'a page of 25')
    // two filters at once, taken from an insight of the fixture: the labels are the analyzer's to choose
    const some = (await (await api('/api/v1/insights?limit=1', readKey)).json()) as { items: { sentiment: string; urgency: string }[] }
    const { sentiment, urgency } = some.items[0]!
    await page.selectOption('select[name=sentiment]', sentiment)
    await page.selectOption('select[name=urgency]', urgency)
    await page.click('#filters button[type=submit]')
    await page.waitForFunction(`location.hash.includes('sentiment=${sentiment}') && location.hash.includes('urgency=${urgency}')`)
    const expected = (await (await api(`/api/v1/insights?sentiment=${sentiment}&urgency=${urgency}&limit=25`, readKey)).json()) as {
      items: { conversation_id: string }[]
    }
    t.ok(expected.items.length < N, 'the filters leave some insights out')
    await waitFor(async () => JSON.stringify(await rowIds()) === JSON.stringify(expected.items.map((i) => i.conversation_id)), {
      what: 'the filtered rows'
    })
    t.equal(await page.locator('#match-count strong').textContent(), String((await (await api(`/api/v1/insights/summary?sentiment=${sentiment}&urgency=${urgency}`, readKey)).json() as { total: number }).total))
    const badges = await page.locator('#insight-table .badge').allTextContents()
    t.ok(badges.length > 0 && badges.every((b) => b === sentiment || b === urgency), `only ${sentiment}, ${urgency}-urgency rows`)
    await shot('insights-filtered')
  })

  await t.test('keyset paging: older shows the next page, newer comes back', async (t) => {
    // the API's first 50 are the truth; the page is waited on until it shows them, because a
    // hash-only navigation keeps the previous view's table in the DOM until the new rows render
    const all = (await (await api('/api/v1/insights?limit=50', readKey)).json()) as { items: { conversation_id: string }[] }
    const ids = all.items.map((i) => i.conversation_id)
    const showing = async (want: string[], pageLabel: string) =>
      (await page.locator('#page-number').textContent()) === pageLabel && JSON.stringify(await rowIds()) === JSON.stringify(want)
    await page.goto(`${base}/console/#/insights`)
    await page.waitForSelector('#insight-table')
    await waitFor(() => showing(ids.slice(0, 25), 'page 1'), { what: 'the first 25 of the API on page 1' })
    const first = await rowIds()
    await shot('insights')
    await page.click('#older')
    await page.waitForFunction("location.hash.includes('cursor=')")
    await waitFor(() => showing(ids.slice(25, 50), 'page 2'), { what: 'the API\'s next 25 on page 2' })
    const second = await rowIds()
    t.equal(second.length, 25)
    t.equal(second.filter((id) => first.includes(id)).length, 0, 'no row twice')
    t.same([...first, ...second], ids, 'the same order as the API\'s first 50')
    await page.click('#newer')
    await waitFor(() => showing(first as string[], 'page 1'), { what: 'page 1 again' })
    t.same(await rowIds(), first, 'back on the first page')
  })

  await t.test('an export downloads the list\'s filters as CSV', async (t) => {
    await page.goto(`${base}/console/#/insights?urgency=high`)
    await page.waitForSelector('#insight-table')
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')])
    t.match(download.suggestedFilename(), /^gleaner-insights-.+\.csv$/)
    const text = readFileSync((await download.path())!, 'utf8')
    const lines = text.split('\r\n').filter(Boolean)
    t.equal(lines[0], CSV_COLUMNS.join(','), 'the header row')
    const high = (await (await api('/api/v1/insights/summary?urgency=high', readKey)).json()) as { total: number }
    t.equal(lines.length - 1, high.total, 'one record per matching insight')
  })

  await t.test('a conversation page shows the messages by role and the insight with model, prompt version and cost', async (t) => {
    await page.goto(`${base}/console/#/insights`)
    await page.waitForSelector('#insight-table')
    const id = (await rowIds())[0]!
    await page.click(`tr[data-id="${id}"] td.summary a`)
    await page.waitForSelector('#insight .insight-summary')
    t.equal(await hash(), `#/conversation/${id}`)
    t.same(await page.locator('#messages .msg .role').evaluateAll((els) => els.map((e) => e.firstChild?.textContent)), [
      'system',
      'user',
      'assistant',
      'user'
    ])
    const facts = await page.locator('#insight dl').textContent()
    t.match(facts, LOCAL_MODEL, 'the model')
    t.match(facts, /prompt version\s*v\d/, 'the prompt version')
    t.match(facts, /cost\s*\$0/, 'the cost')
    await shot('conversation')
  })

  await t.test('the live tab shows a new insight as it is stored', async (t) => {
    await page.click('#nav a[data-tab=live]')
    await page.waitForSelector('#live-state[data-state=live]')
    await waitFor(() => app.pipeline.insights.clients === 1, { what: 'the stream subscribed' })
    const res = await api('/api/v1/conversations', ingestKey, {
      source: 'web-chat',
      external_id: 'console-live',
      messages: [{ role: 'user', content: 'The checkout page throws an error and I cannot pay for my order, please help!' }]
    })
    t.equal(res.status, 202)
    const { id } = (await res.json()) as { id: string }
    await page.waitForSelector(`#live-list li[data-id="${id}"]`)
    t.equal(await page.locator('#live-count').textContent(), '1 received')
    await shot('live')
    await page.click('#nav a[data-tab=overview]')
    await waitFor(() => app.pipeline.insights.clients === 0, { what: 'leaving the tab closes the stream' })
  })

  await t.test('on a phone-sized screen nothing overflows sideways', async (t) => {
    const phone = watch(await context.newPage())
    await phone.setViewportSize({ width: 390, height: 844 })
    // session storage belongs to a tab: a new tab asks for the key again
    await phone.goto(`${base}/console/`)
    await phone.fill('#key', readKey)
    await phone.click('#signin-form button')
    await phone.waitForSelector('#nav:not([hidden])')
    for (const [name, path, ready] of [
      ['overview-phone', '#/overview', '#volume-chart canvas'],
      ['insights-phone', '#/insights', '#insight-table'],
      ['conversation-phone', `#/conversation/${ids[0]}`, '#insight']
    ] as const) {
      await phone.goto(`${base}/console/${path}`)
      await phone.waitForSelector(ready)
      const overflow = await phone.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth')
      t.ok(overflow <= 0, `${name}: no horizontal scroll (${overflow}px)`)
      // the list is long: the first screen is what a phone shows
      await shot(name, phone, name !== 'insights-phone')
    }
    await phone.close()
  })

  await t.test('a key revoked mid-session sends the analyst back to the key form with a message', async (t) => {
    await app.repos.apiKeys.revoke(readRecord.id)
    await page.click('#nav a[data-tab=insights]')
    const error = page.locator('#signin-error')
    await error.waitFor({ state: 'visible' })
    t.match(await error.textContent(), /no longer accepted/)
    t.equal(await storedKey(), null, 'the dead key is forgotten')
  })

  t.same(problems, [], 'no script error or CSP violation on any page')
})
