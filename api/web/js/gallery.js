// The gallery: what the person saved, kept until they delete it.
import { api, localUrl } from './api.js';
import { announce, fill, formatBytes, formatDate, h, heading } from './dom.js';
import { focusAfterRemoving, pagedList } from './list.js';

export async function show(main) {
  const list = h('ul', { class: 'gallery', id: 'gallery' });
  fill(main, heading('Gallery'), h('p', { class: 'muted' }, 'Saved results are kept until you delete them.'), list);
  await pagedList(list, '/v1/gallery?limit=24', item, { empty: 'Nothing saved yet. Save a result from its page.' });
}

function item(saved) {
  const url = localUrl(saved.url);
  const name = `${saved.kind}, ${saved.style.replace(/_/g, ' ')}`;
  let media;
  if (saved.content_type.startsWith('image/')) media = h('img', { src: url, alt: `Saved ${name}` });
  else if (saved.content_type.startsWith('audio/')) media = h('audio', { controls: true, preload: 'none', src: url, 'aria-label': `Saved ${name}` });
  else media = h('p', {}, saved.filename);
  const remove = h('button', { type: 'button', class: 'secondary' }, 'Delete', h('span', { class: 'visually-hidden' }, ` ${saved.filename}`));
  const entry = h('li', {}, media,
    h('p', {}, h('a', { href: `#/generations/${saved.generation_id}` }, name), h('br'),
      h('span', { class: 'muted' }, `${formatBytes(saved.bytes)} · saved ${formatDate(saved.created_at)}`)),
    h('div', { class: 'row' }, h('a', { href: url, download: saved.filename }, 'Download'), remove));
  remove.addEventListener('click', async () => {
    remove.disabled = true;
    try {
      await api(`/v1/gallery/${saved.id}`, { method: 'DELETE' });
      focusAfterRemoving(entry);
      announce('Deleted from the gallery');
    } catch (problem) {
      remove.disabled = false;
      announce(`Could not delete: ${problem.message}`);
    }
  });
  return entry;
}
