// Secrets are redacted by configuration: authorization headers, keys, configured PII paths.
import { Writable } from 'node:stream'
import t from 'tap'
import { loadConfig } from '../src/config.ts'
import { createLogger } from '../src/logger.ts'

t.test('authorization, keys and configured fields never reach the output', async (t) => {
  let out = ''
  const sink = new Writable({
    write(chunk, _e, cb) {
      out += chunk.toString()
      cb()
    }
  })
  const log = createLogger(loadConfig({ LOG_LEVEL: 'info', LOG_REDACT_FIELDS: 'customer.email,*.phone' }), sink)
  log.info({ req: { headers: { authorization: 'Bearer gln_secret_1', cookie: 'sid=secret_2' } } }, 'request')
  log.info({ MODEL_API_KEY: 'sk-secret_3', api_key: 'secret_4', nested: { apiKey: 'secret_5', phone: '+1 555 0100' } }, 'config')
  log.info({ customer: { email: 'ann@example.com', plan: 'pro' } }, 'customer')
  for (const secret of ['gln_secret_1', 'secret_2', 'sk-secret_3', 'secret_4', 'secret_5', '+1 555 0100', 'ann@example.com']) {
    t.notOk(out.includes(secret), `${secret} redacted`)
  }
  t.match(out, /\[redacted\]/)
  t.match(out, /"plan":"pro"/, 'other fields stay')
})
