// The history of generations, newest first, filtered by status and kind.
import { localUrl } from './api.js';
import { announce, fill, formatDate, h, heading, field } from './dom.js';
import { pagedList } from './list.js';
import { title } from './generation.js';

const STATUSES = ['queued', 'starting', 'processing', 'succeeded', 'failed', 'canceled'];
const KINDS = ['portrait', 'music', 'sculpture'];

export async function show(main, app) {
  const choice = (name, values) => h('select', { id: `filter-${name}`, name },
    h('option', { value: '' }, 'All'), values.map((v) => h('option', { value: v }, v)));
  const status = choice('status', STATUSES);
  const kind = choice('kind', KINDS);
  // A fresh list per load: an older load still running fills a list no longer shown.
  let list = h('ul', { class: 'list', id: 'history' });
  const load = async () => {
    main.querySelectorAll('button.more').forEach((b) => b.remove());
    const fresh = h('ul', { class: 'list', id: 'history' });
    list.replaceWith(fresh);
    list = fresh;
    const query = new URLSearchParams({ limit: '20' });
    if (status.value) query.set('status', status.value);
    if (kind.value) query.set('kind', kind.value);
    const page = await pagedList(fresh, `/v1/generations?${query}`, row, { empty: 'Nothing here yet.' });
    if (fresh === list) announce(`${page.data.length}${page.next_cursor ? ' or more' : ''} generations shown`);
  };
  status.addEventListener('change', load);
  kind.addEventListener('change', load);
  fill(main, heading('History'),
    h('form', { class: 'row', 'aria-label': 'Filters', onsubmit: (e) => e.preventDefault() },
      field('Status', status), field('Kind', kind)),
    list);
  await load();
}

function row(generation) {
  const picture = generation.outputs.find((o) => o.url && o.content_type.startsWith('image/'));
  return h('li', {},
    h('div', { class: 'row' },
      picture ? h('img', { class: 'thumb', src: localUrl(picture.url), alt: '' }) : null,
      h('div', {},
        h('a', { href: `#/generations/${generation.id}` }, title(generation)),
        h('div', { class: 'muted' }, formatDate(generation.created_at)))),
    h('span', { class: 'status' }, generation.status === 'processing' || generation.status === 'queued'
      ? `${generation.status} · ${generation.progress.percent} %` : generation.status));
}
