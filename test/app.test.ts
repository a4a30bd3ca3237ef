// buildApp's start-up: slower than avvio's 10 s default is fine (PLUGIN_TIMEOUT_MS=0), a
// configured timeout is honoured, and the log says what start-up is waiting for. The slow
// step is a database open held on a gate the test releases: no test sleeps.
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { openDatabase } from '../src/db/client.ts'
import { testConfig, waitFor } from './helper.ts'

function gate() {
  let open: () => void = () => {}
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { opened, open }
}

function captureLogger() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk))
      done()
    }
  })
  return { logger: pino({ level: 'info' }, stream), lines }
}

t.test('the plugin timeout is off by default: no start-up step is cut short', async (t) => {
  t.equal(loadConfig({}).PLUGIN_TIMEOUT_MS, 0)
})

t.test('a start slower than a plugin timeout succeeds with PLUGIN_TIMEOUT_MS=0, and the log says what it waits for', async (t) => {
  const held = gate()
  // the same slow step under a 50 ms timeout: its failure is the proof that the step
  // outlasted a timeout, without the test itself waiting on a clock
  const timed = buildApp(testConfig({ DATA_DIR: 'memory://', WORKER_ENABLED: 'false', PLUGIN_TIMEOUT_MS: '50' }), {
    logger: pino({ level: 'silent' }),
    openDatabase: async () => {
      await held.opened
      throw new Error('abandoned: this app already failed to start')
    }
  })
  const { logger, lines } = captureLogger()
  const untimed = buildApp(testConfig({ DATA_DIR: 'memory://', WORKER_ENABLED: 'false', PLUGIN_TIMEOUT_MS: '0', LOG_LEVEL: 'info' }), {
    logger,
    openDatabase: async (config, log) => {
      await held.opened
      return openDatabase(config, log)
    }
  })
  await t.rejects(timed, { code: /PLUGIN(_EXEC)?_TIMEOUT/ }, 'a 50 ms plugin timeout fails the start')
  await waitFor(() => lines.join('').includes('"msg":"start-up: opening the database"'), { what: 'the step named in the log' })
  t.pass('while it waits, the log names the step')
  held.open()
  const app = await untimed
  t.teardown(() => app.close())
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200, 'the untimed app started and is ready')
  const log = lines.join('')
  t.match(log, /start-up: applying migrations/)
  t.match(log, /start-up: done applying migrations/)
  t.match(log, /"msg":"database ready"/)
})

t.test('a start-up step still running says so', async (t) => {
  const { logger, lines } = captureLogger()
  const { startupStep } = await import('../src/startup-progress.ts')
  const held = gate()
  const step = startupStep(logger, 'waiting for the test', () => held.opened, 20)
  await waitFor(() => lines.some((l) => l.includes('start-up: still waiting for the test')), { what: 'a progress line' })
  held.open()
  await step
  t.match(lines.join(''), /"waited_s":\d+/)
  t.match(lines.at(-1), /start-up: done waiting for the test/)
})
