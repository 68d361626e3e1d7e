// LangGraph's own JS SDK (@langchain/langgraph-sdk, unmodified, pinned in package-lock.json)
// against the threads HTTP/JSON front door at $THREADS_HTTP_URL. Runs the copy call as
// LangGraph documents it, plus create/get/update/delete and search/count, and checks the
// replies and the SDK's errors. Exits non-zero on the first failure.
//
// apiKey: null, so the SDK never reads LANGGRAPH_API_KEY (or any key) from the environment.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Client } from '@langchain/langgraph-sdk';

const apiUrl = process.env.THREADS_HTTP_URL;
if (!apiUrl) throw new Error('set THREADS_HTTP_URL=http://host:port of a threads server');
const client = new Client({ apiUrl, apiKey: null });

const THREAD_KEYS = ['copied_from', 'created_at', 'history_length', 'metadata', 'owner', 'thread_id', 'updated_at'];

async function step(name, body) {
  await body();
  console.log(`langgraph-js: ${name} ok`);
}

async function expectStatus(status, call) {
  try {
    await call();
  } catch (error) {
    assert.equal(error.status, status, String(error));
    return JSON.parse(error.text);
  }
  assert.fail(`expected HTTP ${status}`);
}

const thread = await client.threads.create({ metadata: { user: 'ada' } });

await step('create', async () => {
  assert.deepEqual(Object.keys(thread).sort(), THREAD_KEYS);
  assert.deepEqual(thread.metadata, { user: 'ada' });
  for (const langGraphOnly of ['status', 'values', 'interrupts']) assert.ok(!(langGraphOnly in thread));
  const id = randomUUID();
  const withTtl = await client.threads.create({ threadId: id, ifExists: 'raise', ttl: 30 });
  assert.equal(withTtl.thread_id, id);
  assert.ok(withTtl.expire_time, 'ttl (minutes) gives an expire_time');
  const same = await client.threads.create({ threadId: id, ifExists: 'do_nothing' });
  assert.deepEqual(same, withTtl);
  const taken = await expectStatus(409, () => client.threads.create({ threadId: id, ifExists: 'raise' }));
  assert.equal(taken.details[0].reason, 'THREAD_ALREADY_EXISTS');
  assert.equal(taken.detail, taken.message);
});

await step('copy (as LangGraph documents it)', async () => {
  const THREAD_ID = thread.thread_id;
  const copiedThread = await client.threads.copy(THREAD_ID);
  assert.equal(copiedThread.copied_from, THREAD_ID);
  assert.notEqual(copiedThread.thread_id, THREAD_ID);
  assert.deepEqual(copiedThread.metadata, { user: 'ada' });
});

await step('get, update', async () => {
  const got = await client.threads.get(thread.thread_id);
  assert.deepEqual(got, thread);
  const updated = await client.threads.update(thread.thread_id, { metadata: { n: 1 } });
  assert.deepEqual(updated.metadata, { user: 'ada', n: 1 });
});

await step('delete, then get is 404 with the ErrorInfo', async () => {
  assert.equal(await client.threads.delete(thread.thread_id), undefined);
  const missing = await expectStatus(404, () => client.threads.get(thread.thread_id));
  assert.equal(missing.code, 5);
  assert.equal(missing.details[0].reason, 'THREAD_NOT_FOUND');
});

await step('search, count', async () => {
  const tag = randomUUID();
  const made = [];
  for (let i = 0; i < 3; i++) {
    made.push((await client.threads.create({ metadata: { tag, i } })).thread_id);
  }
  const first = await client.threads.search({ metadata: { tag }, limit: 2, offset: 0, sortBy: 'created_at', sortOrder: 'asc' });
  assert.deepEqual(first.map((t) => t.thread_id), made.slice(0, 2));
  const rest = await client.threads.search({ metadata: { tag }, limit: 2, offset: 2, sortBy: 'created_at', sortOrder: 'asc' });
  assert.deepEqual(rest.map((t) => t.thread_id), made.slice(2));
  assert.equal(await client.threads.count({ metadata: { tag } }), 3);
  const refused = await expectStatus(400, () => client.threads.search({ status: 'idle' }));
  assert.equal(refused.details[0].metadata.field, 'status');
});
console.log('langgraph-js: all checks passed');
