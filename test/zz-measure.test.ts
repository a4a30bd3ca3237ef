import t from 'tap'
import { backendEnv, buildTestApp } from './helper.ts'
for (let i = 0; i < 3; i++) {
  t.test('x' + i, async (t) => {
    const t0 = performance.now()
    const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')) })
    const t1 = performance.now()
    await app.close()
    console.log('build', Math.round(t1 - t0), 'close', Math.round(performance.now() - t1))
  })
}
