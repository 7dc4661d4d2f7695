// One generation, live: its status, place in the queue, progress and stage as the
// server's event stream tells them (polling when the stream cannot be used), a cancel
// button while it runs, then its results: the picture, a player for music and a 3D
// view for a sculpture, each with its download and a button to keep it in the gallery.
import { api, localUrl, request } from './api.js';
import { announce, credits, fill, formatBytes, formatDate, h, heading } from './dom.js';
import { showModel } from './model.js';

const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);
const STATUS_TEXT = {
  queued: 'Waiting in the queue', starting: 'Starting', processing: 'Working on it',
  succeeded: 'Done', failed: 'Failed', canceled: 'Canceled',
};

export function title(generation) {
  const style = generation.style.replace(/_/g, ' ');
  return `${generation.kind[0].toUpperCase()}${generation.kind.slice(1)}, ${style}`;
}

export async function show(main, app, id) {
  let generation;
  try {
    generation = await api(`/v1/generations/${encodeURIComponent(id || '')}`);
  } catch (problem) {
    if (problem.status !== 404) throw problem;
    fill(main, heading('Not found'), h('p', { role: 'alert' }, 'There is no such generation in your account. ',
      h('a', { href: '#/history' }, 'See your history')));
    return;
  }
  if (!app.current()) return;
  const status = h('p', { class: 'status', id: 'status', tabindex: '-1' });
  const queue = h('p', { id: 'queue-position' });
  const bar = h('progress', { id: 'progress', max: 100, value: 0, 'aria-labelledby': 'progress-label' });
  const stage = h('span', { id: 'stage' });
  const percent = h('span', { id: 'percent' });
  const problem = h('p', { class: 'error', role: 'alert', id: 'generation-error' });
  const cancel = h('button', { type: 'button', class: 'secondary', id: 'cancel' }, 'Cancel');
  const results = h('div', { class: 'results', id: 'results' });
  const cost = h('p', { class: 'muted', id: 'cost' });
  fill(main, heading(title(generation)),
    h('section', { class: 'card', 'aria-label': 'Progress' },
      status, queue,
      h('p', { id: 'progress-label' }, 'Progress: ', percent, ' · ', stage), bar,
      h('div', { class: 'row' }, cancel), problem, cost),
    results);

  let shownStatus = null;
  let done = false;
  const update = (next) => {
    generation = next;
    status.textContent = STATUS_TEXT[next.status] || next.status;
    queue.textContent = next.status === 'queued' && next.queue_position != null
      ? `Position in the queue: ${next.queue_position}` : '';
    bar.value = next.progress.percent;
    percent.textContent = `${next.progress.percent} %`;
    stage.textContent = next.progress.stage.replace(/_/g, ' ');
    cancel.hidden = TERMINAL.has(next.status);
    const { credits: price, charged, refunded } = next.cost;
    cost.textContent = `Price ${credits(price)}; charged ${charged}${refunded ? `, refunded ${refunded}` : ''}.`;
    if (next.status !== shownStatus) {
      shownStatus = next.status;
      announce(`${STATUS_TEXT[next.status] || next.status}`);
    }
    if (next.error) {
      problem.textContent = `${next.error.message}${next.error.retryable ? ' You can try again: the credits were not taken.' : ''}`;
    }
    if (TERMINAL.has(next.status) && !done) {
      done = true;
      stop();
      app.refreshMe().catch(() => {});
      if (next.status === 'succeeded') showResults(results, next, app);
      if (next.status === 'canceled') problem.textContent = 'Canceled. Held credits were released.';
    }
  };

  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try {
      update(await api(generation.urls.cancel, { method: 'POST' }));
    } catch (error) {
      if (error.code !== 'already_completed') problem.textContent = error.message;
    }
    cancel.disabled = false;
    // The button is gone once the generation has ended: the focus goes to its status.
    if (cancel.hidden) status.focus();
  });

  const stop = follow(generation, update);
  app.onLeave(stop);
  app.onLeave(() => disposeModels(results));
  update(generation);
}

/** Follows a generation's changes: the event stream, or polling if the stream fails
 * (a proxy that buffers, an old browser). Returns the function that stops following. */
function follow(generation, update) {
  let stopped = false;
  let timer = null;
  let stream = null;
  const poll = async (etag) => {
    if (stopped) return;
    let wait = 2;
    try {
      const answer = await request(generation.urls.self, { headers: etag ? { 'if-none-match': etag } : {} });
      if (stopped) return;
      if (answer.status === 200) update(answer.data);
      etag = answer.headers.get('etag') || etag;
      wait = Number(answer.headers.get('retry-after')) || wait;
    } catch { wait = 5; }
    if (!stopped) timer = setTimeout(() => poll(etag), Math.min(Math.max(wait, 1), 10) * 1000);
  };
  if (TERMINAL.has(generation.status)) return () => {};
  if (window.EventSource) {
    let failures = 0;
    let opened = false;
    stream = new EventSource(generation.urls.events);
    // Failures in a row: a stream that opens again is working (heartbeats are comments,
    // which fire no event).
    stream.onopen = () => { opened = true; failures = 0; };
    stream.onmessage = (event) => {
      failures = 0;
      try { update(JSON.parse(event.data)); } catch { /* a malformed event is skipped */ }
    };
    stream.onerror = () => {
      failures += 1;
      // The browser reconnects by itself (with Last-Event-ID); a stream that never opened
      // (refused by a proxy, say) or fails three times in a row is given up for polling.
      if (stream.readyState === EventSource.CLOSED || !opened || failures >= 3) {
        stream.close();
        if (!stopped) poll();
      }
    };
  } else {
    poll();
  }
  return () => {
    stopped = true;
    if (stream) stream.close();
    clearTimeout(timer);
  };
}

function disposeModels(container) {
  for (const canvas of container.querySelectorAll('canvas')) canvas.dispose?.();
}

function showResults(container, generation, app) {
  const saved = h('p', { role: 'status', id: 'save-status' });
  const save = h('button', { type: 'button', id: 'save' }, 'Save to gallery');
  save.addEventListener('click', async () => {
    save.disabled = true;
    try {
      await api(`/v1/generations/${generation.id}/save`, { method: 'POST' });
      saved.textContent = 'Saved to your gallery. It is kept until you delete it.';
    } catch (problem) {
      save.disabled = false;
      saved.textContent = `Could not save: ${problem.message}`;
    }
  });
  const figures = generation.outputs.filter((output) => output.url).map((output) => renderOutput(output, generation));
  fill(container, figures);
  container.after(h('div', { class: 'card' },
    h('div', { class: 'row' }, save, h('a', { href: '#/create' }, 'Make another')),
    saved,
    h('p', { class: 'muted' }, `Results are deleted on ${formatDate(generation.outputs[0]?.expires_at)} unless saved.`)));
  app.onLeave(() => container.nextElementSibling?.remove());
}

function renderOutput(output, generation) {
  const url = localUrl(output.url);
  const download = h('a', { href: url, download: output.filename, class: 'button secondary' },
    `Download ${output.filename}`, h('span', { class: 'visually-hidden' }, ` (${formatBytes(output.bytes)})`));
  let media;
  if (output.content_type.startsWith('image/')) {
    media = h('img', { src: url, alt: `${title(generation)}: your pet’s portrait`, width: 512, height: 512 });
    media.addEventListener('load', () => { media.removeAttribute('width'); media.removeAttribute('height'); });
  } else if (output.content_type.startsWith('audio/')) {
    media = h('audio', { controls: true, src: url, preload: 'metadata', 'aria-label': `${title(generation)}: your pet’s tune` });
  } else if (output.content_type === 'model/gltf-binary') {
    media = h('canvas', { class: 'model-view', tabindex: '0', role: 'img',
      'aria-label': `${title(generation)}: 3D view of the sculpture. Drag, or use the arrow keys, to turn it; + and - zoom.` });
    showModel(media, url);
  } else {
    media = h('p', {}, `${output.filename} (${formatBytes(output.bytes)}), for a 3D printer or slicer.`);
  }
  return h('figure', {}, media, h('figcaption', {}, h('span', { class: 'muted' }, formatBytes(output.bytes)), download));
}
