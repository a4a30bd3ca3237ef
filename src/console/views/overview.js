// Overview: volume and sentiment per day, sentiment and urgency counts, the top topics
// against the period before, and the busiest sources, for a period and optionally one source.
import { getJson, withQuery } from '../api.js'
import { volumeChart } from '../charts.js'
import { bar, fmtInt, fmtScore, h, label, mount, select } from '../dom.js'

const PERIODS = [
  ['7', 'last 7 days'],
  ['30', 'last 30 days'],
  ['90', 'last 90 days']
]
const DAY_S = 86_400

/** UTC midnight `days - 1` days ago: the summary counts by UTC day, so periods start on one. */
function periodStart(days) {
  const now = new Date()
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - (days - 1)))
}

function change(count, previous) {
  if (previous === null || previous === undefined) return h('span', { class: 'muted' }, '—')
  if (previous === 0) return h('span', { class: 'change up' }, 'new')
  const pct = Math.round(((count - previous) / previous) * 100)
  const cls = pct > 0 ? 'up' : pct < 0 ? 'down' : 'flat'
  return h('span', { class: `change ${cls}`, title: `${fmtInt(previous)} in the previous period` }, `${pct > 0 ? '▲ +' : pct < 0 ? '▼ ' : ''}${pct}%`)
}

export async function renderOverview({ main, taxonomy, params, signal }) {
  const days = PERIODS.some(([v]) => v === params.get('days')) ? Number(params.get('days')) : 7
  const source = params.get('source') ?? ''
  const since = periodStart(days)
  const filters = { since: since.toISOString(), source }
  const s = await getJson('/api/v1/insights/summary', filters, { signal })
  // the source list stays complete when one source is selected
  const sources = source ? (await getJson('/api/v1/insights/summary', { since: filters.since }, { signal })).by_source : s.by_source

  const go = (over) => {
    const next = { days: String(days), source, ...over }
    location.hash = withQuery('#/overview', next)
  }
  const listLink = (over) => withQuery('#/insights', { since: filters.since, source, ...over })

  const toolbar = h(
    'form',
    { class: 'toolbar', onsubmit: (e) => e.preventDefault() },
    h('label', null, 'Period ', select('days', 'period', PERIODS, String(days), null)),
    h(
      'label',
      null,
      'Source ',
      select(
        'source',
        'source',
        sources.map((x) => [x.source, x.source]),
        source,
        'all sources'
      )
    ),
    h('a', { class: 'button quiet', href: listLink({}) }, 'See these insights →')
  )
  toolbar.addEventListener('change', (e) => go({ [e.target.name]: e.target.value }))

  const total = s.total
  const negative = s.by_sentiment.negative ?? 0
  const high = s.by_urgency.high ?? 0
  const weighted = s.by_day.reduce((a, d) => a + d.avg_sentiment * d.count, 0)
  const kpis = h(
    'section',
    { class: 'kpis' },
    kpi('Insights', fmtInt(total), `since ${since.toISOString().slice(0, 10)}`),
    kpi('Negative', total ? `${Math.round((negative / total) * 100)}%` : '—', `${fmtInt(negative)} conversations`, listLink({ sentiment: 'negative' })),
    kpi('High urgency', fmtInt(high), 'act today', listLink({ urgency: 'high' })),
    kpi('Average sentiment', total ? fmtScore(weighted / total) : '—', 'from −1 to +1')
  )

  const chartBox = h('div', { class: 'chart', id: 'volume-chart' })
  const sentimentMax = Math.max(...taxonomy.sentiments.map((x) => s.by_sentiment[x.name] ?? 0))
  const urgencyMax = Math.max(...taxonomy.urgencies.map((x) => s.by_urgency[x.name] ?? 0))
  const topicMax = Math.max(0, ...s.top_topics.map((x) => x.count))
  const sourceMax = Math.max(0, ...s.by_source.map((x) => x.count))

  mount(
    main,
    h('h1', { class: 'page-title' }, 'Overview'),
    toolbar,
    kpis,
    h('section', { class: 'card' }, h('h2', null, 'Volume and sentiment per day'), total ? chartBox : h('p', { class: 'muted' }, 'No insights in this period yet.')),
    h(
      'div',
      { class: 'grid2' },
      h(
        'section',
        { class: 'card' },
        h('h2', null, 'Sentiment'),
        h(
          'ul',
          { class: 'bars' },
          taxonomy.sentiments.map((x) =>
            h(
              'li',
              { title: x.definition },
              h('a', { href: listLink({ sentiment: x.name }) }, label(x.name)),
              bar(s.by_sentiment[x.name] ?? 0, sentimentMax, `sentiment-${x.name}`),
              h('span', { class: 'num' }, fmtInt(s.by_sentiment[x.name] ?? 0))
            )
          )
        )
      ),
      h(
        'section',
        { class: 'card' },
        h('h2', null, 'Urgency'),
        h(
          'ul',
          { class: 'bars' },
          [...taxonomy.urgencies].reverse().map((x) =>
            h(
              'li',
              { title: x.definition },
              h('a', { href: listLink({ urgency: x.name }) }, label(x.name)),
              bar(s.by_urgency[x.name] ?? 0, urgencyMax, `urgency-${x.name}`),
              h('span', { class: 'num' }, fmtInt(s.by_urgency[x.name] ?? 0))
            )
          )
        )
      )
    ),
    h(
      'div',
      { class: 'grid2' },
      h(
        'section',
        { class: 'card' },
        h('h2', null, 'Top topics ', h('small', { class: 'muted' }, `vs the ${days} days before`)),
        s.top_topics.length
          ? h(
              'table',
              { class: 'compact', id: 'top-topics' },
              h('thead', null, h('tr', null, h('th', null, 'topic'), h('th', { class: 'num' }, 'insights'), h('th', null, ''), h('th', { class: 'num' }, 'change'))),
              h(
                'tbody',
                null,
                s.top_topics.map((x) =>
                  h(
                    'tr',
                    null,
                    h('td', null, h('a', { href: listLink({ topic: x.topic }) }, x.topic)),
                    h('td', { class: 'num' }, fmtInt(x.count)),
                    h('td', { class: 'bar-cell' }, bar(x.count, topicMax, 'topic')),
                    h('td', { class: 'num' }, change(x.count, x.previous_count))
                  )
                )
              )
            )
          : h('p', { class: 'muted' }, 'No topics yet.')
      ),
      h(
        'section',
        { class: 'card' },
        h('h2', null, 'By source'),
        s.by_source.length
          ? h(
              'table',
              { class: 'compact', id: 'by-source' },
              h('thead', null, h('tr', null, h('th', null, 'source'), h('th', { class: 'num' }, 'insights'), h('th', null, ''), h('th', { class: 'num' }, 'avg sentiment'))),
              h(
                'tbody',
                null,
                s.by_source.map((x) =>
                  h(
                    'tr',
                    null,
                    h('td', null, h('a', { href: withQuery('#/overview', { days: String(days), source: x.source }) }, x.source)),
                    h('td', { class: 'num' }, fmtInt(x.count)),
                    h('td', { class: 'bar-cell' }, bar(x.count, sourceMax, 'source')),
                    h('td', { class: `num ${x.avg_sentiment < -0.05 ? 'neg' : x.avg_sentiment > 0.05 ? 'pos' : ''}` }, fmtScore(x.avg_sentiment))
                  )
                )
              )
            )
          : h('p', { class: 'muted' }, 'No sources yet.')
      )
    )
  )

  if (!total) return undefined
  // one bar per UTC day of the period, empty days included
  const byDay = new Map(s.by_day.map((d) => [d.day, d]))
  const xs = []
  const counts = []
  const avgs = []
  for (let t = since.getTime() / 1000; t <= Date.now() / 1000; t += DAY_S) {
    const d = byDay.get(new Date(t * 1000).toISOString().slice(0, 10))
    xs.push(t)
    counts.push(d ? d.count : null)
    avgs.push(d ? d.avg_sentiment : null)
  }
  return volumeChart(chartBox, xs, counts, avgs)
}

function kpi(title, value, note, href) {
  const body = [h('span', { class: 'kpi-title' }, title), h('span', { class: 'kpi-value' }, value), h('span', { class: 'kpi-note' }, note)]
  return href ? h('a', { class: 'kpi', href }, body) : h('div', { class: 'kpi' }, body)
}
