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
    more.onclick = async () => {
      // One page at a time: a double click must not append the same page twice.
      more.disabled = true;
      const before = list.children.length;
      try {
        await load(page.next_cursor);
        // The focus goes to the first new item (the button may have just hidden itself).
        const first = list.children[before];
        if (first) {
          first.tabIndex = -1;
          first.focus();
        }
      } catch (problem) {
        list.append(h('li', { class: 'error', role: 'alert' }, problem.message));
      }
      more.disabled = false;
    };
    return page;
  };
  return load(null);
}

/** Removes an item of a list, moving the focus to its neighbour (or the page heading)
 * so a keyboard or screen reader user is not dropped back to the top of the page. */
export function focusAfterRemoving(item) {
  const next = item.nextElementSibling || item.previousElementSibling || document.querySelector('main h1');
  item.remove();
  if (next) {
    if (next.tabIndex < 0 && !next.hasAttribute('tabindex')) next.tabIndex = -1;
    next.focus();
  }
}
