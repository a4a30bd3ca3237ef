import { defineConfig } from 'drizzle-kit'

// `npm run db:generate` needs no database: it diffs src/db/schema.ts against migrations/.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './migrations'
})
