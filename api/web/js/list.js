// A paginated list of the API (`{data, next_cursor}`): the first page, then a "Show
// more" button for the next while there is one.
import { api } from './api.js';
import { h } from './dom.js';

/** Appends `render(item)` for each item of `path` to `list`; returns the first page.
 * `empty` is said when there is nothing; the button goes after `after` (a table's
 * wrapper, say), by default after the list. */
export async function pagedList(list, path, render, { empty, after = list } = {}) {
  const more = h('button', { type: 'button', class: 'secondary more', hidden: true }, 'Show more');
  after.after(more);
  let shown = 0;
  const load = async (cursor) => {
    const separator = path.includes('?') ? '&' : '?';
    const page = await api(cursor ? `${path}${separator}cursor=${encodeURIComponent(cursor)}` : path);
    for (const item of page.data) list.append(render(item));
    shown += page.data.length;
    if (!shown && empty) list.append(h('li', { class: 'muted' }, empty));
    more.hidden = !page.next_cursor;
    more.onclick = () => load(page.next_cursor);
    return page;
  };
  return load(null);
}
