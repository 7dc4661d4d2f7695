#!/usr/bin/env node
// BullMQ benchmark runner. Prints exactly one JSON line on stdout per
// invocation (the result); everything else goes to stderr.
//
//   node runner.mjs drain  --jobs 100000 --concurrency 50 --queue bench
//   node runner.mjs steady --rate 1000 --seconds 20 --warmup 5 --concurrency 50 --queue bench
//   node runner.mjs pickup --samples 20 --queue bench
//   node runner.mjs crash  --jobs 1000 --job-ms 2000 --kill-after-ms 1000 --concurrency 1000 --queue bench
//
// Hidden subcommands used as forked children: steady-worker, crash-worker.
//
// Redis: REDIS_HOST / REDIS_PORT environment variables (default 127.0.0.1:6379).

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';

const SCRIPT = fileURLToPath(import.meta.url);
const REDIS_HOST = process.env.REDIS_HOST || '127.0.0.1';
const REDIS_PORT = Number(process.env.REDIS_PORT || 6379);

// Common clock, in milliseconds with sub-ms precision. process.hrtime is
// CLOCK_MONOTONIC on Linux: system-wide, so values taken in different
// processes on the same machine are directly comparable, and it is not
// affected by wall-clock (Date) adjustments.
const clock = () => Number(process.hrtime.bigint()) / 1e6;

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

const log = (...a) => process.stderr.write(`[bullmq-bench] ${a.join(' ')}\n`);

const connection = () => ({ host: REDIS_HOST, port: REDIS_PORT, maxRetriesPerRequest: null });

// ~100-byte payload: JSON of {"p":"xxx..."} is 7 + padding length bytes.
const PAD = 'x'.repeat(93);

// Cheapest safe retention: completed jobs are deleted at once, failed jobs are
// kept (bounded) so that failures remain inspectable.
const JOB_OPTS = { removeOnComplete: true, removeOnFail: { count: 1000 } };

const round = (x, d = 3) => (x == null || !Number.isFinite(x) ? x : Math.round(x * 10 ** d) / 10 ** d);

// Nearest-rank percentile over an ascending sorted array.
function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// ---------------------------------------------------------------- arguments

const DEFAULTS = {
  drain: { jobs: 100000, concurrency: 50, queue: 'bench', 'timeout-s': 900 },
  steady: { rate: 1000, seconds: 20, warmup: 5, concurrency: 50, queue: 'bench', 'grace-s': 5 },
  pickup: { samples: 20, queue: 'bench' },
  crash: {
    jobs: 1000,
    'job-ms': 2000,
    'kill-after-ms': 1000,
    concurrency: 1000,
    queue: 'bench',
    'deadline-s': 180,
    'max-stalled-count': 10,
  },
  'steady-worker': { concurrency: 50, queue: 'bench' },
  'crash-worker': { concurrency: 1000, queue: 'bench', 'job-ms': 2000, 'max-stalled-count': 10 },
};

function parseArgs(argv) {
  const cmd = argv[0];
  if (!cmd || !(cmd in DEFAULTS)) {
    throw new Error(`usage: node runner.mjs <drain|steady|pickup|crash> [--name value ...] (got ${JSON.stringify(cmd)})`);
  }
  const opts = { ...DEFAULTS[cmd] };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}`);
    let key = a.slice(2);
    let val;
    const eq = key.indexOf('=');
    if (eq >= 0) {
      val = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else {
      if (i + 1 >= argv.length) throw new Error(`missing value for --${key}`);
      val = argv[++i];
    }
    if (!(key in opts)) throw new Error(`unknown option --${key} for ${cmd}`);
    if (typeof DEFAULTS[cmd][key] === 'number') {
      const n = Number(val);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${key} must be a non-negative number`);
      opts[key] = n;
    } else {
      opts[key] = val;
    }
  }
  return { cmd, opts };
}

// ---------------------------------------------------------------- helpers

async function freshQueue(name) {
  const queue = new Queue(name, { connection: connection() });
  await queue.waitUntilReady();
  await queue.obliterate({ force: true });
  return queue;
}

async function addChunked(queue, n, makeJob, chunk = 1000) {
  for (let i = 0; i < n; i += chunk) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + chunk); j++) batch.push(makeJob(j));
    await queue.addBulk(batch);
  }
}

function forkChild(sub, args) {
  const flat = [];
  for (const [k, v] of Object.entries(args)) flat.push(`--${k}`, String(v));
  // The child's stdout is sent to our stderr so that stdout carries only the result line.
  return fork(SCRIPT, [sub, ...flat], { stdio: ['ignore', 2, 2, 'ipc'] });
}

function waitMessage(child, type, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const onMsg = (m) => {
      if (m && m.type === type) {
        cleanup();
        resolve(m);
      }
    };
    const onExit = (code, sig) => {
      cleanup();
      reject(new Error(`child exited (code ${code}, signal ${sig}) while waiting for '${type}'`));
    };
    const t = setTimeout(() => {
      cleanup();
      reject(new Error(`timeout waiting for '${type}' from child`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(t);
      child.off('message', onMsg);
      child.off('exit', onExit);
    };
    child.on('message', onMsg);
    child.on('exit', onExit);
  });
}

function waitExit(child, timeoutMs = 10000) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      log(`child ${child.pid} did not exit in time, sending SIGKILL`);
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

// Children exit when the parent goes away.
function exitWithParent(cleanup) {
  process.on('disconnect', async () => {
    try {
      await cleanup();
    } finally {
      process.exit(0);
    }
  });
}

// ---------------------------------------------------------------- drain

async function drain(o) {
  const N = o.jobs;
  const C = o.concurrency;
  const queue = await freshQueue(o.queue);

  const e0 = clock();
  await addChunked(queue, N, (i) => ({ name: 'noop', data: { p: PAD }, opts: JOB_OPTS }));
  const enqueueSec = (clock() - e0) / 1000;
  log(`drain: enqueued ${N} in ${enqueueSec.toFixed(3)} s`);

  let completed = 0;
  let errors = 0;
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const check = () => {
    if (completed + errors >= N) resolveDone();
  };
  const worker = new Worker(o.queue, async () => {}, {
    connection: connection(),
    concurrency: C,
    autorun: false,
  });
  worker.on('completed', () => {
    completed++;
    check();
  });
  worker.on('failed', (job, err) => {
    errors++;
    if (errors <= 5) log(`job failed: ${err && err.message}`);
    check();
  });
  worker.on('error', (err) => {
    errors++;
    log(`worker error: ${err && err.message}`);
  });
  await worker.waitUntilReady();

  const t0 = clock();
  const running = worker.run().catch((err) => log(`worker.run: ${err.message}`));
  let timer;
  const timeout = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`drain timed out after ${o['timeout-s']} s (${completed}/${N})`)), o['timeout-s'] * 1000);
  });
  try {
    await Promise.race([done, timeout]);
  } finally {
    clearTimeout(timer);
  }
  const sec = (clock() - t0) / 1000;

  await worker.close();
  await running;
  await queue.obliterate({ force: true });
  await queue.close();

  emit({
    engine: 'bullmq',
    workload: 'drain',
    jobs: N,
    concurrency: C,
    enqueue_seconds: round(enqueueSec, 4),
    enqueue_per_s: round(N / enqueueSec, 1),
    seconds: round(sec, 4),
    jobs_per_s: round(N / sec, 1),
    errors,
  });
}

// ---------------------------------------------------------------- steady

async function steady(o) {
  const rate = o.rate;
  if (!(rate > 0)) throw new Error('--rate must be > 0');
  const warmN = Math.round(rate * o.warmup);
  const total = warmN + Math.round(rate * o.seconds);
  const sent = total - warmN; // measured jobs
  const gap = 1000 / rate;
  const maxBatch = 500;

  const queue = await freshQueue(o.queue);
  const child = forkChild('steady-worker', { queue: o.queue, concurrency: o.concurrency });
  let childDone = 0;
  child.on('message', (m) => {
    if (m && m.type === 'progress') childDone = m.done;
  });
  try {
    await waitMessage(child, 'ready');

    // Open-loop producer: job i is due at t0 + i/rate. When behind, it sends
    // everything already due in one addBulk; it never waits for completions.
    const t0 = clock() + 200;
    let i = 0;
    let maxLag = 0;
    let batches = 0;
    while (i < total) {
      const now = clock();
      const due = Math.min(total, Math.floor((now - t0) / gap) + 1);
      if (due <= i) {
        await sleep(Math.floor(t0 + i * gap - now));
        continue;
      }
      const end = Math.min(due, i + maxBatch);
      const lag = now - (t0 + i * gap);
      if (lag > maxLag) maxLag = lag;
      if (end - i === 1) {
        await queue.add('s', { t: t0 + i * gap, i, m: i >= warmN ? 1 : 0, p: PAD }, JOB_OPTS);
      } else {
        const batch = [];
        for (let j = i; j < end; j++) {
          batch.push({ name: 's', data: { t: t0 + j * gap, i: j, m: j >= warmN ? 1 : 0, p: PAD }, opts: JOB_OPTS });
        }
        await queue.addBulk(batch);
      }
      batches++;
      i = end;
    }
    const producedAt = clock();
    const backlogEnd = await queue.getWaitingCount();
    log(
      `steady: produced ${total} jobs (${warmN} warmup) in ${((producedAt - t0) / 1000).toFixed(3)} s, ` +
        `${batches} sends, max producer lag ${maxLag.toFixed(2)} ms, backlog at end ${backlogEnd}`,
    );

    // Grace period for the worker to catch up.
    const graceEnd = producedAt + o['grace-s'] * 1000;
    while (childDone < sent && clock() < graceEnd) await sleep(50);

    child.send({ type: 'stop' });
    const res = await waitMessage(child, 'result', 60000);
    await waitExit(child);

    const lat = Float64Array.from(res.latencies).sort();
    const done = res.done;
    const saturated = backlogEnd > rate * 1 || done < sent;
    if (res.errors) log(`steady: ${res.errors} worker errors/failed jobs`);

    await queue.obliterate({ force: true });
    await queue.close();

    emit({
      engine: 'bullmq',
      workload: 'steady',
      rate,
      seconds: o.seconds,
      p50_ms: round(pct(lat, 50)),
      p95_ms: round(pct(lat, 95)),
      p99_ms: round(pct(lat, 99)),
      max_ms: round(lat.length ? lat[lat.length - 1] : null),
      sent,
      done,
      saturated,
    });
  } catch (err) {
    child.kill('SIGKILL');
    await queue.close().catch(() => {});
    throw err;
  }
}

async function steadyWorker(o) {
  const latencies = [];
  let done = 0;
  let errors = 0;
  const worker = new Worker(
    o.queue,
    async (job) => {
      // No-op job; latency is recorded at completion of the processor.
      if (job.data.m) latencies.push(clock() - job.data.t);
    },
    { connection: connection(), concurrency: o.concurrency },
  );
  worker.on('completed', (job) => {
    if (job.data.m) done++;
  });
  worker.on('failed', () => errors++);
  worker.on('error', (err) => {
    errors++;
    log(`steady-worker error: ${err && err.message}`);
  });
  await worker.waitUntilReady();
  const progress = setInterval(() => process.send({ type: 'progress', done }), 50);
  exitWithParent(() => worker.close());
  process.on('message', async (m) => {
    if (m && m.type === 'stop') {
      clearInterval(progress);
      await worker.close();
      process.send({ type: 'result', latencies, done, errors }, () => process.disconnect());
    }
  });
  process.send({ type: 'ready' });
}

// ---------------------------------------------------------------- pickup

async function pickup(o) {
  const n = o.samples;
  const queue = await freshQueue(o.queue);
  let resolveSample = null;
  const worker = new Worker(
    o.queue,
    async (job) => {
      const started = clock();
      if (resolveSample) resolveSample(started - job.data.sent);
    },
    { connection: connection(), concurrency: 1 },
  );
  worker.on('error', (err) => log(`worker error: ${err && err.message}`));
  await worker.waitUntilReady();
  await sleep(1000); // let the worker go idle (blocked waiting for jobs)

  const samples = [];
  try {
    for (let s = 0; s < n; s++) {
      await sleep(200 + Math.random() * 1000);
      const got = new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('pickup sample timed out after 10 s')), 10000);
        resolveSample = (v) => {
          clearTimeout(t);
          resolve(v);
        };
      });
      const sentAt = clock();
      await queue.add('pickup', { sent: sentAt, p: PAD }, JOB_OPTS);
      samples.push(await got);
      resolveSample = null;
    }
  } finally {
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
  }
  const sorted = [...samples].sort((a, b) => a - b);
  emit({
    engine: 'bullmq',
    workload: 'pickup',
    samples: samples.map((x) => round(x)),
    p50_ms: round(pct(sorted, 50)),
    p99_ms: round(pct(sorted, 99)),
    max_ms: round(sorted[sorted.length - 1]),
  });
}

// ---------------------------------------------------------------- crash

async function hgetallNum(redis, key) {
  const h = await redis.hgetall(key);
  const m = new Map();
  for (const [k, v] of Object.entries(h)) m.set(k, Number(v));
  return m;
}

async function crash(o) {
  const N = o.jobs;
  const startsKey = `bench:${o.queue}:starts`;
  const finishesKey = `bench:${o.queue}:finishes`;
  const redis = new Redis(connection());
  await redis.del(startsKey, finishesKey);
  const queue = await freshQueue(o.queue);
  const childArgs = {
    queue: o.queue,
    concurrency: o.concurrency,
    'job-ms': o['job-ms'],
    'max-stalled-count': o['max-stalled-count'],
  };
  let child1 = null;
  let child2 = null;
  try {
    await addChunked(queue, N, (i) => ({ name: 'crash', data: { p: PAD }, opts: { ...JOB_OPTS, jobId: `c${i}` } }));

    child1 = forkChild('crash-worker', childArgs);
    const ready1 = await waitMessage(child1, 'ready');
    await sleep(o['kill-after-ms']);

    // Kill -9 the worker, then snapshot what had started / finished.
    const exited1 = new Promise((r) => child1.once('exit', r));
    child1.kill('SIGKILL');
    const tKill = clock();
    await exited1;
    const [startsAtKill, finishesAtKill] = await Promise.all([
      hgetallNum(redis, startsKey),
      hgetallNum(redis, finishesKey),
    ]);
    // A new worker process recovers the stalled jobs.
    child2 = forkChild('crash-worker', childArgs);
    const inflight = [...startsAtKill.keys()].filter((id) => !finishesAtKill.has(id));
    log(
      `crash: killed worker pid ${child1.pid}: started ${startsAtKill.size}, finished ${finishesAtKill.size}, ` +
        `in flight ${inflight.length}`,
    );
    await waitMessage(child2, 'ready');

    // Wait until every job has finished at least once (or the deadline).
    const deadline = tKill + o['deadline-s'] * 1000;
    let finished = finishesAtKill.size;
    let lastFinishAt = finished > 0 ? tKill : null;
    let failed = 0;
    let polls = 0;
    while (clock() < deadline) {
      const n = await redis.hlen(finishesKey);
      if (n > finished) {
        finished = n;
        lastFinishAt = clock();
      }
      if (finished >= N) break;
      if (++polls % 20 === 0) {
        failed = await queue.getFailedCount();
        if (finished + failed >= N) break;
      }
      await sleep(50);
    }
    // Let the queue settle so that late duplicate runs are visible.
    const settleEnd = clock() + 5000;
    while (clock() < settleEnd) {
      const c = await queue.getJobCounts('active', 'waiting', 'delayed', 'prioritized');
      if (c.active + c.waiting + c.delayed + c.prioritized === 0) break;
      await sleep(100);
    }
    failed = await queue.getFailedCount();

    const [starts, finishes] = await Promise.all([hgetallNum(redis, startsKey), hgetallNum(redis, finishesKey)]);
    // Jobs whose finishes exceeded the count at the last poll would have moved lastFinishAt;
    // duplicates finishing during the settle phase are counted in 'duplicated'.
    let lost = 0;
    let duplicated = 0;
    for (let i = 0; i < N; i++) {
      const f = finishes.get(`c${i}`) || 0;
      if (f === 0) lost++;
      if (f > 1) duplicated++;
    }
    let rerunInflight = 0;
    for (const id of inflight) if ((starts.get(id) || 0) > startsAtKill.get(id)) rerunInflight++;
    let rerunFinished = 0;
    for (const id of finishesAtKill.keys()) if ((starts.get(id) || 0) > (startsAtKill.get(id) || 0)) rerunFinished++;
    if (failed) log(`crash: ${failed} jobs in failed state`);

    child2.send({ type: 'stop' });
    await waitExit(child2);
    child2 = null;
    await queue.obliterate({ force: true });
    await redis.del(startsKey, finishesKey);

    emit({
      engine: 'bullmq',
      workload: 'crash',
      jobs: N,
      lost,
      duplicated,
      in_flight_at_kill: inflight.length,
      rerun_inflight: rerunInflight,
      rerun_finished: rerunFinished,
      seconds_to_finish: lastFinishAt == null ? null : round((lastFinishAt - tKill) / 1000, 3),
      lock_duration_ms: ready1.lockDuration,
      stalled_interval_ms: ready1.stalledInterval,
    });
  } finally {
    for (const c of [child1, child2]) {
      if (c && c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL');
        await waitExit(c, 1000);
      }
    }
    await queue.close().catch(() => {});
    redis.disconnect();
  }
}

async function crashWorker(o) {
  const startsKey = `bench:${o.queue}:starts`;
  const finishesKey = `bench:${o.queue}:finishes`;
  const jobMs = o['job-ms'];
  const redis = new Redis(connection());
  // lockDuration / stalledInterval are left at BullMQ defaults.
  const worker = new Worker(
    o.queue,
    async (job) => {
      await redis.hincrby(startsKey, job.id, 1);
      await sleep(jobMs);
      await redis.hincrby(finishesKey, job.id, 1);
    },
    { connection: connection(), concurrency: o.concurrency, maxStalledCount: o['max-stalled-count'] },
  );
  worker.on('error', (err) => log(`crash-worker error: ${err && err.message}`));
  await worker.waitUntilReady();
  const close = async () => {
    await worker.close();
    redis.disconnect();
  };
  exitWithParent(close);
  process.on('message', async (m) => {
    if (m && m.type === 'stop') {
      await close();
      process.disconnect();
    }
  });
  process.send({
    type: 'ready',
    lockDuration: worker.opts.lockDuration,
    stalledInterval: worker.opts.stalledInterval,
    maxStalledCount: worker.opts.maxStalledCount,
  });
}

// ---------------------------------------------------------------- main

const COMMANDS = {
  drain,
  steady,
  pickup,
  crash,
  'steady-worker': steadyWorker,
  'crash-worker': crashWorker,
};

async function main() {
  const { cmd, opts } = parseArgs(process.argv.slice(2));
  await COMMANDS[cmd](opts);
  return cmd;
}

main().then(
  (cmd) => {
    // Children stay alive (IPC) until told to stop; parents should exit now.
    if (!cmd.endsWith('-worker')) {
      // Safety net in case a library handle keeps the loop alive.
      setTimeout(() => {
        log('forcing exit: handles still open after completion');
        process.exit(process.exitCode || 0);
      }, 3000).unref();
    }
  },
  (err) => {
    log(`error: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
