// Insight list: every filter /api/v1/insights has, keyset pages (older / newer), a link per
// row to its conversation, and the same filters as a CSV or NDJSON download.
import { explain, getJson, getRaw, withQuery } from '../api.js'
import { alertBox, fmtInt, fmtTime, h, label, mount, select, sentimentBadge, topicChips, urgencyBadge } from '../dom.js'

const FILTERS = ['sentiment', 'urgency', 'intent', 'topic', 'source', 'since', 'until']
const PAGE_SIZES = ['25', '50', '100']
const DEFAULT_PAGE_SIZE = '25'

/**
 * Cursors of the pages before the one on screen, per filter set: "newer" steps back through
 * them. Kept in memory, not in the hash, so a shared link opens at the page it names.
 */
const trail = new Map()

/** ISO instant ⇄ the local "YYYY-MM-DDTHH:MM" a datetime-local input holds. */
const toLocalInput = (iso) => {
  if (!iso) return ''
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? '' : new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16)
}
const fromLocalInput = (value) => (value ? new Date(value).toISOString() : '')

export const conversationHref = (id) => `#/conversation/${encodeURIComponent(id)}`

/** The list as last shown, for the conversation page's way back. */
export let lastListHash = '#/insights'

export async function renderInsights({ main, taxonomy, params, signal }) {
  lastListHash = location.hash || '#/insights'
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) ?? '']))
  const limit = PAGE_SIZES.includes(params.get('limit')) ? params.get('limit') : DEFAULT_PAGE_SIZE
  const cursor = params.get('cursor') ?? ''
  const filterKey = JSON.stringify([filters, limit])
  const stack = trail.get(filterKey) ?? []
  trail.clear() // only the current filter set's trail is worth keeping
  trail.set(filterKey, stack)

  const [page, summary] = await Promise.all([
    getJson('/api/v1/insights', { ...filters, limit, cursor }, { signal }),
    getJson('/api/v1/insights/summary', filters, { signal })
  ])

  const hashFor = (over) => withQuery('#/insights', { ...filters, limit, ...over })
  const form = h(
    'form',
    { class: 'filters', id: 'filters' },
    field('Sentiment', select('sentiment', 'sentiment', taxonomy.sentiments.map((x) => [x.name, label(x.name), x.definition]), filters.sentiment)),
    field('Urgency', select('urgency', 'urgency', taxonomy.urgencies.map((x) => [x.name, label(x.name), x.definition]), filters.urgency)),
    field('Intent', select('intent', 'intent', taxonomy.intents.map((x) => [x.name, label(x.name), x.definition]), filters.intent)),
    field('Topic', h('input', { name: 'topic', value: filters.topic, list: 'topic-list', maxlength: 100, placeholder: 'any' })),
    h('datalist', { id: 'topic-list' }, taxonomy.common_topics.map((t) => h('option', { value: t }))),
    field('Source', h('input', { name: 'source', value: filters.source, maxlength: 64, placeholder: 'any' })),
    field('From', h('input', { name: 'since', type: 'datetime-local', value: toLocalInput(filters.since) })),
    field('Until', h('input', { name: 'until', type: 'datetime-local', value: toLocalInput(filters.until) })),
    field('Per page', select('limit', 'page size', PAGE_SIZES.map((n) => [n, n]), limit, null)),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit' }, 'Apply'), h('a', { class: 'button quiet', href: '#/insights' }, 'Clear'))
  )
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    const data = new FormData(form)
    const next = {}
    for (const k of FILTERS) next[k] = String(data.get(k) ?? '').trim()
    next.since = fromLocalInput(next.since)
    next.until = fromLocalInput(next.until)
    next.limit = String(data.get('limit'))
    location.hash = withQuery('#/insights', next)
  })

  const status = h('p', { class: 'muted', id: 'export-status', hidden: true })
  const download = (format) => async () => {
    status.hidden = false
    status.textContent = `Preparing the ${format.toUpperCase()} export…`
    try {
      const res = await getRaw('/api/v1/insights/export', { ...filters, format })
      const name = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1] ?? `gleaner-insights.${format}`
      const url = URL.createObjectURL(await res.blob())
      const a = h('a', { href: url, download: name, hidden: true })
      document.body.append(a)
      a.click()
      a.remove()
      setTimeout(() => URL.revokeObjectURL(url), 60_000)
      status.textContent = `Saved ${name}.`
    } catch (err) {
      status.textContent = explain(err)
    }
  }

  const rows = page.items.map((i) =>
    h(
      'tr',
      { class: 'insight-row', dataset: { id: i.conversation_id } },
      h('td', { class: 'when', 'data-label': 'when' }, h('a', { href: conversationHref(i.conversation_id) }, fmtTime(i.created_at))),
      h('td', { 'data-label': 'sentiment' }, sentimentBadge(i.sentiment)),
      h('td', { 'data-label': 'urgency' }, urgencyBadge(i.urgency)),
      h('td', { 'data-label': 'intent' }, label(i.intent)),
      h('td', { 'data-label': 'topics' }, topicChips(i.topics, (t) => hashFor({ topic: t, cursor: '' }))),
      h('td', { class: 'summary', 'data-label': 'summary' }, h('a', { href: conversationHref(i.conversation_id) }, i.summary)),
      h('td', { 'data-label': 'source' }, i.source)
    )
  )

  const newer = h('button', { type: 'button', id: 'newer', class: 'quiet', disabled: !cursor }, '← Newer')
  newer.addEventListener('click', () => {
    const prev = stack.pop()
    location.hash = hashFor({ cursor: prev ?? '' })
  })
  const older = h('button', { type: 'button', id: 'older', disabled: !page.next_cursor }, 'Older →')
  older.addEventListener('click', () => {
    stack.push(cursor)
    location.hash = hashFor({ cursor: page.next_cursor })
  })

  // on a phone the filters fold away, open when some are set; on a wider screen they always show
  const active = FILTERS.filter((k) => filters[k]).length
  const panel = h(
    'details',
    { class: 'filter-panel', open: active > 0 || matchMedia('(min-width: 701px)').matches },
    h('summary', null, active ? `Filters (${active} set)` : 'Filters'),
    form
  )

  mount(
    main,
    h('h1', { class: 'page-title' }, 'Insights'),
    panel,
    h(
      'div',
      { class: 'list-head' },
      h('p', { id: 'match-count' }, h('strong', null, fmtInt(summary.total)), summary.total === 1 ? ' insight matches' : ' insights match'),
      h(
        'div',
        { class: 'exports' },
        'Download ',
        h('button', { type: 'button', class: 'quiet', id: 'export-csv', onclick: download('csv') }, 'CSV'),
        h('button', { type: 'button', class: 'quiet', id: 'export-ndjson', onclick: download('ndjson') }, 'NDJSON')
      )
    ),
    status,
    page.items.length
      ? h(
          'table',
          { class: 'insights', id: 'insight-table' },
          h(
            'thead',
            null,
            h('tr', null, ['when', 'sentiment', 'urgency', 'intent', 'topics', 'summary', 'source'].map((c) => h('th', null, c)))
          ),
          h('tbody', null, rows)
        )
      : alertBox('No insights match these filters.'),
    h('nav', { class: 'pager', 'aria-label': 'pages' }, newer, h('span', { class: 'muted', id: 'page-number' }, cursor && !stack.length ? '' : `page ${stack.length + 1}`), older)
  )
  return undefined
}

function field(text, control) {
  return h('label', { class: 'field' }, h('span', null, text), control)
}
