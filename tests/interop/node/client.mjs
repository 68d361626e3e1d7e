// Node.js interop check for threads.v1: @grpc/grpc-js with stubs that @grpc/proto-loader
// builds at run time from protos/threads/v1/threads.proto, against a live server: Create,
// Append, Copy, GetHistory, Watch (a server stream), Search, Count and their errors.
//
//   THREADS_TARGET=127.0.0.1:50051 node client.mjs      (plaintext; run.sh does npm ci first)
//
// Prints one line per check and exits 1 on the first failed one. Error details are decoded
// as a real google.rpc.Status (protobufjs + google/rpc/*.proto from google-proto-files).
//
// proto-loader options, chosen on purpose:
//   keepCase: false  (the default) fields in lowerCamelCase: threadId, historyLength,
//                    stringValue. keepCase: true would give snake_case for our messages
//                    but not for google.protobuf.Struct/Value, which protobufjs bundles
//                    with camelCase names whatever keepCase says (protobufjs issue #1397):
//                    snake_case Value fields would then be dropped silently on the wire.
//   longs: String    int64 (historyLength, index, expectedLength, count) as decimal strings, exact;
//                    requests may pass them as strings too
//   enums: String    enum values by name ('IF_EXISTS_RAISE', 'SORT_BY_CREATED_AT')
//   defaults: true   unset scalars come back as '' / '0' (e.g. copiedFrom of an original)
//   oneofs: true     a google.protobuf.Value says which field is set in `kind`
// A google.protobuf.Struct stays the raw message ({fields: {k: {stringValue: 'x'}}});
// toStruct/fromStruct below convert plain JSON-like objects to and from it.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { inspect } from 'node:util';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import googleProtoFiles from 'google-proto-files';
import protobuf from 'protobufjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..', '..');
const PROTO_DIR = path.join(ROOT, 'protos');
const DEADLINE_MS = 10_000;
const DOMAIN = 'threads.v1';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// ---------------------------------------------------------------- stubs and error details

const packageDefinition = protoLoader.loadSync('threads/v1/threads.proto', {
  includeDirs: [PROTO_DIR],
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { ThreadService } = grpc.loadPackageDefinition(packageDefinition).threads.v1;

// google/rpc/status.proto imports google/protobuf/any.proto, which protobufjs has built in
// (bundled, so its fields are type_url and value whatever keepCase says).
const rpcRoot = new protobuf.Root().loadSync([
  googleProtoFiles.getProtoPath('rpc', 'status.proto'),
  googleProtoFiles.getProtoPath('rpc', 'error_details.proto'),
]);
const Status = rpcRoot.lookupType('google.rpc.Status');

/** Decodes the google.rpc.Status in a gRPC error's grpc-status-details-bin trailer. */
function statusDetails(err) {
  const values = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  assert.equal(values.length, 1, `expected one grpc-status-details-bin trailer, got ${values.length}`);
  const status = Status.decode(values[0]);
  const details = status.details.map((any) => {
    // type_url is "type.googleapis.com/<full message name>"; look that name up and decode.
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const type = rpcRoot.lookupType(typeName);
    return { typeName, message: type.toObject(type.decode(any.value)) };
  });
  return { code: status.code, message: status.message, details };
}

// ---------------------------------------------------------------- Struct <-> plain objects

function toValue(v) {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  switch (typeof v) {
    case 'string': return { stringValue: v };
    case 'number': return { numberValue: v };
    case 'boolean': return { boolValue: v };
    case 'object': return { structValue: toStruct(v) };
    default: throw new TypeError(`cannot put a ${typeof v} in a Struct`);
  }
}

function toStruct(obj) {
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, toValue(v)])) };
}

function fromValue(value) {
  switch (value.kind) {
    case 'nullValue': return null;
    case 'listValue': return value.listValue.values.map(fromValue);
    case 'structValue': return fromStruct(value.structValue);
    case 'stringValue': case 'numberValue': case 'boolValue': return value[value.kind];
    default: throw new TypeError(`google.protobuf.Value with no kind set: ${JSON.stringify(value)}`);
  }
}

function fromStruct(struct) {
  if (!struct) return {};
  return Object.fromEntries(Object.entries(struct.fields).map(([k, v]) => [k, fromValue(v)]));
}

// ---------------------------------------------------------------- calls and checks

const target = process.env.THREADS_TARGET;
if (!target) {
  console.error('client.mjs: set THREADS_TARGET=host:port (plaintext)');
  process.exit(2);
}
const client = new ThreadService(target, grpc.credentials.createInsecure());

/** One unary call with its own deadline; resolves to the response, rejects with the grpc error. */
function rpc(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + DEADLINE_MS }, (err, response) => {
      if (err) reject(err);
      else resolve(response);
    });
  });
}

let passed = 0;

/** One readable line (or a few) about why a check failed. */
function describe(err) {
  if (err instanceof assert.AssertionError) {
    const where = err.stack.split('\n').find((line) => line.includes('client.mjs:'))?.trim() ?? '';
    // Node 20's strict assert adds the values (or a diff) after a custom message; where it
    // does not, add them here.
    const message = err.message.trim();
    const values = message.includes('\n') ? '' : `: got ${inspect(err.actual)}, want ${inspect(err.expected)}`;
    return `${message}${values}`.replaceAll('\n', '\n     ') + `\n     ${where}`;
  }
  if (typeof err.code === 'number' && typeof err.details === 'string') {
    return `unexpected gRPC error ${grpc.status[err.code]}: ${err.details}`;
  }
  return err.stack ?? String(err);
}

/** Runs one named check; on failure prints it and throws so that main stops right there. */
async function check(name, fn) {
  try {
    const note = await fn();
    passed += 1;
    console.log(`ok   ${name}${note ? ` (${note})` : ''}`);
  } catch (err) {
    console.error(`FAIL ${name}\n     ${describe(err)}`);
    throw Object.assign(new Error(`check failed: ${name}`), { reported: true });
  }
}

/**
 * Expects `promise` to fail with gRPC `code` and one ErrorInfo (domain threads.v1) with
 * `reason`, whose metadata includes `metadata` (string values, as ErrorInfo has them).
 */
async function expectError(promise, code, reason, metadata = {}) {
  let err;
  try {
    const response = await promise;
    assert.fail(`expected ${grpc.status[code]}/${reason}, got a response: ${JSON.stringify(response)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.equal(grpc.status[err.code], grpc.status[code], `status code (message: ${err.details})`);
  const status = statusDetails(err);
  assert.equal(status.code, code, 'google.rpc.Status.code matches the gRPC status');
  const infos = status.details.filter((d) => d.typeName === 'google.rpc.ErrorInfo');
  assert.equal(infos.length, 1, `one ErrorInfo in ${JSON.stringify(status.details)}`);
  const info = infos[0].message;
  assert.equal(info.domain, DOMAIN, 'ErrorInfo.domain');
  assert.equal(info.reason, reason, 'ErrorInfo.reason');
  for (const [key, value] of Object.entries(metadata)) {
    assert.equal(info.metadata?.[key], value, `ErrorInfo.metadata[${JSON.stringify(key)}]`);
  }
  return `${grpc.status[err.code]} ${info.domain}/${info.reason} ${JSON.stringify(info.metadata ?? {})}`;
}

/** Reads a whole history with GetHistory, `pageSize` at a time, following nextPageToken. */
async function readHistory(threadId, pageSize) {
  const entries = [];
  const sizes = [];
  let token = '';
  do {
    const page = await rpc('GetHistory', { threadId, pageSize, pageToken: token });
    assert.ok(page.entries.length <= pageSize, `page of ${page.entries.length} > pageSize ${pageSize}`);
    if (page.nextPageToken) assert.equal(page.entries.length, pageSize, 'only the last page may be short');
    entries.push(...page.entries);
    sizes.push(page.entries.length);
    assert.ok(sizes.length <= 1000, 'GetHistory keeps returning a nextPageToken');
    token = page.nextPageToken;
  } while (token);
  return { entries, pages: sizes.join('+') };
}

/** Runs a Search `pageSize` threads at a time, following nextPageToken; checks page sizes. */
async function searchAll(request, pageSize) {
  const threads = [];
  const sizes = [];
  let token = '';
  do {
    const page = await rpc('Search', { ...request, pageSize, pageToken: token });
    assert.ok(page.threads.length <= pageSize, `page of ${page.threads.length} > pageSize ${pageSize}`);
    threads.push(...page.threads);
    sizes.push(page.threads.length);
    assert.ok(sizes.length <= 100, 'Search keeps returning a nextPageToken');
    token = page.nextPageToken;
  } while (token);
  return { threads, pages: sizes.join('+') };
}

const ids = (threads) => threads.map((t) => t.threadId);

/**
 * Watches `threadId` from `startIndex` (a server-streaming call) until the entries below
 * `length` have come; runs `onOpen` once the first message is in (the stream is live).
 */
function watchUntil(threadId, startIndex, length, onOpen) {
  return new Promise((resolve, reject) => {
    const call = client.Watch({ threadId, startIndex: String(startIndex) }, { deadline: Date.now() + DEADLINE_MS });
    const entries = [];
    const messages = [];
    call.on('data', (message) => {
      messages.push(message);
      entries.push(...message.entries);
      if (messages.length === 1) {
        Promise.resolve(onOpen()).catch((err) => { call.cancel(); reject(err); });
      }
      if (startIndex + entries.length >= length) {
        resolve({ entries, messages });
        call.cancel();
      }
    });
    call.on('error', (err) => { if (err.code !== grpc.status.CANCELLED) reject(err); });
  });
}

/** A Watch expected to fail before its first message: rejects with the gRPC error. */
function watchError(request) {
  return new Promise((resolve, reject) => {
    const call = client.Watch(request, { deadline: Date.now() + DEADLINE_MS });
    call.on('data', (message) => { call.cancel(); resolve(message); });
    call.on('error', reject);
  });
}

/** Checks that `entries` are `source[0..n)`: same index, same data, same createdAt, in order. */
function assertPrefix(entries, source, n) {
  assert.equal(entries.length, n, 'number of entries');
  entries.forEach((entry, i) => {
    assert.equal(entry.index, String(i), `entry ${i}: index`);
    assert.deepEqual(fromStruct(entry.data), fromStruct(source[i].data), `entry ${i}: data`);
    assert.deepEqual(entry.createdAt, source[i].createdAt, `entry ${i}: createdAt`);
  });
}

// ---------------------------------------------------------------- the checks

const entryData = (i) => ({
  text: `message ${i}`,
  role: i % 2 === 0 ? 'user' : 'assistant',
  n: i,
  ratio: i / 4,
  final: i === 11,
  tags: ['interop', 'node', i],
  meta: { lang: 'js', nothing: null },
});
const FIRST = Array.from({ length: 7 }, (_, i) => entryData(i));
const MORE = Array.from({ length: 5 }, (_, i) => entryData(7 + i));
const ALL = [...FIRST, ...MORE];
const METADATA = { title: 'node interop', owner: 'tests/interop/node', priority: 3, draft: false };
const SEARCHED = 5; // threads created for Search and Count (plus one copy)
const SEARCH_PAGE = 2; // Search page size, small enough to need several pages

const created = []; // every thread this run made, deleted at the end

async function main() {
  console.log(`threads.v1 at ${target} (plaintext), proto ${path.relative(process.cwd(), path.join(PROTO_DIR, 'threads/v1/threads.proto'))}`);
  let source;
  await check('Create with metadata and 7 entries', async () => {
    const { thread } = await rpc('Create', { metadata: toStruct(METADATA), history: FIRST.map((d) => ({ data: toStruct(d) })) });
    created.push(thread.threadId);
    assert.match(thread.threadId, UUID_RE, 'server-made threadId');
    assert.equal(thread.historyLength, '7');
    assert.equal(thread.copiedFrom, '');
    assert.deepEqual(fromStruct(thread.metadata), METADATA);
    source = thread;
    return thread.threadId;
  });

  await check('Append 5 entries with expectedLength 7 -> historyLength 12', async () => {
    const response = await rpc('Append', {
      threadId: source.threadId,
      entries: MORE.map((d) => ({ data: toStruct(d) })),
      expectedLength: '7',
    });
    assert.equal(response.historyLength, '12');
  });

  await check('Append with a stale expectedLength -> ABORTED HISTORY_LENGTH_MISMATCH', () =>
    expectError(
      rpc('Append', { threadId: source.threadId, entries: [{ data: toStruct({ text: 'late' }) }], expectedLength: '7' }),
      grpc.status.ABORTED,
      'HISTORY_LENGTH_MISMATCH',
      { expected_length: '7', history_length: '12' },
    ));

  await check('Get the source -> historyLength 12, metadata kept', async () => {
    const { thread } = await rpc('Get', { threadId: source.threadId });
    assert.equal(thread.threadId, source.threadId);
    assert.equal(thread.historyLength, '12');
    assert.deepEqual(fromStruct(thread.metadata), METADATA);
  });

  let sourceHistory;
  await check('GetHistory of the source, pageSize 3 -> the 12 entries sent, index 0..11', async () => {
    const { entries, pages } = await readHistory(source.threadId, 3);
    assert.equal(entries.length, 12);
    entries.forEach((entry, i) => {
      assert.equal(entry.index, String(i), `entry ${i}: index`);
      assert.deepEqual(fromStruct(entry.data), ALL[i], `entry ${i}: data`);
      assert.ok(entry.createdAt && entry.createdAt.seconds !== '0', `entry ${i}: createdAt set`);
    });
    sourceHistory = entries;
    return `pages ${pages}`;
  });

  const requestId = randomUUID();
  let whole;
  await check('Copy whole with requestId -> new id, copiedFrom, historyLength 12', async () => {
    const { thread } = await rpc('Copy', { threadId: source.threadId, requestId, metadata: toStruct({ copy: 'whole' }) });
    created.push(thread.threadId);
    assert.match(thread.threadId, UUID_RE);
    assert.notEqual(thread.threadId, source.threadId);
    assert.equal(thread.copiedFrom, source.threadId);
    assert.equal(thread.historyLength, '12');
    assert.deepEqual(fromStruct(thread.metadata), { ...METADATA, copy: 'whole' });
    whole = thread;
    return thread.threadId;
  });

  await check('Copy retried with the same requestId -> the same copy', async () => {
    const { thread } = await rpc('Copy', { threadId: source.threadId, requestId, metadata: toStruct({ copy: 'whole' }) });
    assert.equal(thread.threadId, whole.threadId);
    assert.equal(thread.copiedFrom, source.threadId);
    assert.equal(thread.historyLength, '12');
  });

  let fork;
  await check('Copy with historyLength 5 (fork) -> historyLength 5', async () => {
    const { thread } = await rpc('Copy', { threadId: source.threadId, requestId: randomUUID(), historyLength: '5' });
    created.push(thread.threadId);
    assert.notEqual(thread.threadId, source.threadId);
    assert.notEqual(thread.threadId, whole.threadId);
    assert.equal(thread.copiedFrom, source.threadId);
    assert.equal(thread.historyLength, '5');
    assert.deepEqual(fromStruct(thread.metadata), METADATA);
    fork = thread;
    return thread.threadId;
  });

  await check('GetHistory of the whole copy, pageSize 3 -> the source\'s 12 entries', async () => {
    const { entries, pages } = await readHistory(whole.threadId, 3);
    assertPrefix(entries, sourceHistory, 12);
    return `pages ${pages}`;
  });

  await check('GetHistory of the fork, pageSize 3 -> the source\'s first 5 entries', async () => {
    const { entries, pages } = await readHistory(fork.threadId, 3);
    assertPrefix(entries, sourceHistory, 5);
    return `pages ${pages}`;
  });

  await check('Get a missing thread -> NOT_FOUND THREAD_NOT_FOUND', () => {
    const missing = randomUUID();
    return expectError(rpc('Get', { threadId: missing }), grpc.status.NOT_FOUND, 'THREAD_NOT_FOUND', { thread_id: missing });
  });

  await check('Get "not-a-uuid" -> INVALID_ARGUMENT INVALID_THREAD_ID', () =>
    expectError(rpc('Get', { threadId: 'not-a-uuid' }), grpc.status.INVALID_ARGUMENT, 'INVALID_THREAD_ID'));

  // Watch: a stream of the thread's entries from an index on, then each new one.
  await check('Watch from index 0, Append 3 entries -> the 2 entries, then those 3, index 0..4', async () => {
    const history = [0, 1].map((i) => ({ data: toStruct({ watch: i }) }));
    const { thread } = await rpc('Create', { history });
    created.push(thread.threadId);
    const appended = [2, 3, 4].map((i) => ({ data: toStruct({ watch: i, by: 'node' }) }));
    const { entries, messages } = await watchUntil(thread.threadId, 0, 5, async () => {
      const { historyLength } = await rpc('Append', { threadId: thread.threadId, entries: appended });
      assert.equal(historyLength, '5');
    });
    assert.deepEqual(entries.map((e) => e.index), ['0', '1', '2', '3', '4']);
    assert.deepEqual(entries.map((e) => fromStruct(e.data)), [
      { watch: 0 }, { watch: 1 }, { watch: 2, by: 'node' }, { watch: 3, by: 'node' }, { watch: 4, by: 'node' },
    ]);
    assert.equal(messages.at(-1).historyLength, '5');
    assert.deepEqual(entries, (await readHistory(thread.threadId, 10)).entries, 'as GetHistory returns them');
    return `${messages.length} messages`;
  });

  await check('Watch a missing thread -> NOT_FOUND THREAD_NOT_FOUND', () =>
    expectError(watchError({ threadId: randomUUID() }), grpc.status.NOT_FOUND, 'THREAD_NOT_FOUND'));

  // Search and Count: threads tagged with a run-unique id, distinct metadata, one copy.
  const runId = randomUUID();
  const tag = toStruct({ interop: runId });
  const tagged = []; // in creation order
  await check(`Create ${SEARCHED} threads tagged {interop: ${runId}, lang: 'node', n}`, async () => {
    for (let n = 0; n < SEARCHED; n += 1) {
      const { thread } = await rpc('Create', { metadata: toStruct({ interop: runId, lang: 'node', n }) });
      created.push(thread.threadId);
      tagged.push(thread);
    }
  });

  let tagSource;
  await check('Copy tagged thread 0 with {copy: true} -> the source\'s metadata merged', async () => {
    tagSource = tagged[0];
    const { thread } = await rpc('Copy', { threadId: tagSource.threadId, requestId: randomUUID(), metadata: toStruct({ copy: true }) });
    created.push(thread.threadId);
    assert.equal(thread.copiedFrom, tagSource.threadId);
    assert.deepEqual(fromStruct(thread.metadata), { interop: runId, lang: 'node', n: 0, copy: true });
    tagged.push(thread);
    return thread.threadId;
  });

  await check(`Count by the run's tag -> ${SEARCHED + 1}`, async () => {
    const { count } = await rpc('Count', { metadata: tag });
    assert.equal(count, String(SEARCHED + 1));
  });

  await check(`Search by the run's tag, CREATED_AT ASC, pageSize ${SEARCH_PAGE} -> the ${SEARCHED + 1} threads in creation order`, async () => {
    const { threads, pages } = await searchAll({ metadata: tag, sortBy: 'SORT_BY_CREATED_AT', sortOrder: 'SORT_ORDER_ASC' }, SEARCH_PAGE);
    assert.deepEqual(ids(threads), ids(tagged));
    threads.forEach((thread, i) => assert.deepEqual(thread, tagged[i], `thread ${i}: as Create/Copy returned it`));
    return `pages ${pages}`;
  });

  await check('Search by the run\'s tag and n 3 -> thread 3 only', async () => {
    const { threads } = await rpc('Search', { metadata: toStruct({ interop: runId, n: 3 }) });
    assert.deepEqual(ids(threads), [tagged[3].threadId]);
  });

  await check('Search copiedFrom tagged thread 0 -> the copy only; Count -> 1', async () => {
    const { threads } = await rpc('Search', { copiedFrom: tagSource.threadId });
    assert.deepEqual(ids(threads), [tagged[SEARCHED].threadId]);
    const { count } = await rpc('Count', { copiedFrom: tagSource.threadId });
    assert.equal(count, '1');
  });

  await check('Search threadIds of threads 1 and 3 -> those two, newest first (the default order)', async () => {
    const { threads } = await rpc('Search', { threadIds: [tagged[1].threadId, tagged[3].threadId] });
    assert.deepEqual(ids(threads), [tagged[3].threadId, tagged[1].threadId]);
  });

  await check('Count threadIds of threads 1, 3 and a missing one -> 2', async () => {
    const { count } = await rpc('Count', { threadIds: [tagged[1].threadId, tagged[3].threadId, randomUUID()] });
    assert.equal(count, '2');
  });

  await check('Search with pageSize -1 -> INVALID_ARGUMENT INVALID_PAGE_SIZE', () =>
    expectError(rpc('Search', { metadata: tag, pageSize: -1 }), grpc.status.INVALID_ARGUMENT, 'INVALID_PAGE_SIZE'));

  await check(`Delete the ${created.length} threads made here -> each then NOT_FOUND`, async () => {
    while (created.length) {
      const id = created.pop();
      await rpc('Delete', { threadId: id });
      await expectError(rpc('Get', { threadId: id }), grpc.status.NOT_FOUND, 'THREAD_NOT_FOUND');
    }
  });

  await check('After the deletes: Count by the run\'s tag and by copiedFrom -> 0, Search -> none', async () => {
    assert.equal((await rpc('Count', { metadata: tag })).count, '0', 'Count by tag');
    assert.equal((await rpc('Count', { copiedFrom: tagSource.threadId })).count, '0', 'Count copiedFrom');
    assert.deepEqual(ids((await rpc('Search', { metadata: tag })).threads), [], 'Search by tag');
  });
}

try {
  await main();
  console.log(`node interop: all ${passed} checks ok`);
} catch (err) {
  if (!err.reported) console.error(`FAIL (outside a check)\n     ${describe(err)}`);
  // Best effort: remove what this run made, then report the failure.
  for (const id of created) await rpc('Delete', { threadId: id }).catch(() => {});
  console.error(`node interop: FAILED after ${passed} passed checks`);
  process.exitCode = 1;
} finally {
  client.close();
}
