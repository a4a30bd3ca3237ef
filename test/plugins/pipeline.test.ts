// Close order (avvio runs onClose hooks last-registered-first): the pipeline stops, and
// hands its claims back, before the database closes. If the order ever flips, the release
// fails and claims wait for their lease: this test catches that.
import t from 'tap'
import { startFakeModelServer } from '../../loadtest/fake-model-server.ts'
import { backendEnv, backends, buildTestApp, conversation, tempDir, waitFor } from '../helper.ts'

for (const backend of backends()) {
  t.test(`${backend}: closing releases in-flight claims before the database closes`, async (t) => {
    const fake = await startFakeModelServer({ hang: true })
    t.teardown(() => fake.close())
    const env = {
      ...(await backendEnv(t, backend, { dataDir: tempDir(t) })),
      MODEL_PROVIDER: 'openai-compatible',
      MODEL_BASE_URL: fake.url,
      MODEL_NAME: 'fake-1',
      MODEL_TIMEOUT_MS: '60000',
      SHUTDOWN_TIMEOUT_MS: '300'
    }
    const app = await buildTestApp(t, env)
    const res = await app.inject({ method: 'POST', url: '/api/v1/conversations/batch', payload: { conversations: [conversation(), conversation()] } })
    const ids: string[] = res.json().results.map((r: { id: string }) => r.id)
    await waitFor(async () => (await app.repos.conversations.getById(ids[0]!))?.status === 'processing', { what: 'claimed' })
    await app.close()

    // a new app on the same database sees the claims handed back, attempts not used up
    const again = await buildTestApp(t, { ...env, WORKER_ENABLED: 'false' })
    for (const id of ids) {
      const row = await again.repos.conversations.getById(id)
      t.equal(row?.status, 'pending', 'back to pending at once, not after the lease')
      t.equal((await again.repos.conversations.queueEntry(id))?.leaseOwner, null)
      t.equal(row?.attempts, 0, 'a shutdown does not use up an attempt')
    }
  })
}
