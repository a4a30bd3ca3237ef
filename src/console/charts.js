// Charts with uPlot (served from our origin, see src/routes/console.ts). uPlot sizes in
// pixels, so each chart follows its container's width.
import uPlot from './vendor/uplot/uPlot.esm.js'

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim()
const CHART_HEIGHT = 260
const DAY_S = 86_400
const dayLabel = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' })

/**
 * Volume per day as bars and the average sentiment score as a line on its own axis (-1..1).
 * `days` are UTC midnights in seconds; a day without insights has no bar and no point.
 */
export function volumeChart(container, days, counts, avgScores) {
  const ink = css('--muted')
  const grid = css('--grid')
  const axis = (side, scale, fmt) => ({
    scale,
    side,
    stroke: ink,
    grid: { show: side === 3, stroke: grid, width: 1 },
    ticks: { show: false },
    values: fmt ? (_u, vals) => vals.map(fmt) : undefined,
    size: 48
  })
  const chart = new uPlot(
    {
      width: Math.max(280, container.clientWidth),
      height: CHART_HEIGHT,
      padding: [12, 8, 0, 0],
      legend: { show: true },
      cursor: { drag: { x: false, y: false }, points: { size: 7 } },
      scales: {
        x: { time: true, range: (_u, min, max) => [min - 43_200, max + 43_200] },
        n: { range: (_u, _min, max) => [0, Math.max(4, Math.ceil(max * 1.15))] },
        s: { range: [-1, 1] }
      },
      axes: [
        {
          stroke: ink,
          grid: { show: false },
          ticks: { show: false },
          space: 56,
          // whole days only: the data are UTC days
          incrs: [DAY_S, 2 * DAY_S, 7 * DAY_S, 14 * DAY_S, 28 * DAY_S],
          values: (_u, splits) => splits.map((s) => dayLabel.format(new Date(s * 1000)))
        },
        axis(3, 'n', (v) => (Number.isInteger(v) ? v.toLocaleString() : '')),
        axis(1, 's', (v) => (v > 0 ? `+${v.toFixed(1)}` : v.toFixed(1)))
      ],
      series: [
        { label: 'day', value: (_u, v) => (v == null ? '' : dayLabel.format(new Date(v * 1000))) },
        {
          label: 'insights',
          scale: 'n',
          fill: css('--accent-soft'),
          stroke: css('--accent'),
          width: 1,
          paths: uPlot.paths.bars({ size: [0.7, 48] }),
          points: { show: false }
        },
        {
          label: 'avg sentiment',
          scale: 's',
          stroke: css('--warm'),
          width: 2,
          spanGaps: true,
          points: { show: true, size: 6, fill: css('--warm') },
          value: (_u, v) => (v == null ? '—' : (v > 0 ? '+' : '') + v.toFixed(2))
        }
      ]
    },
    [days, counts, avgScores],
    container
  )
  const resize = new ResizeObserver(() => chart.setSize({ width: Math.max(280, container.clientWidth), height: CHART_HEIGHT }))
  resize.observe(container)
  return () => {
    resize.disconnect()
    chart.destroy()
  }
}
