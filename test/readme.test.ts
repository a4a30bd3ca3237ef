// The README documents every configuration variable, so operators never guess.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { ConfigSchema } from '../src/config.ts'

t.test('every config variable appears in the README', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  for (const name of Object.keys(ConfigSchema.properties)) t.ok(readme.includes(`\`${name}\``), name)
})
