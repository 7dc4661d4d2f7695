// Small helpers to build the page from data without ever parsing strings as HTML, so
// text from the API (names, file names, error details) can never become markup.

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'selected', 'indeterminate', 'max']);

/** Creates an element: `h('a', {href: '#/x', onclick: f}, 'text', child)`. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (PROPERTIES.has(name)) element[name] = value;
    else if (name === 'class') element.className = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** Says `text` to screen readers through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById('announcer');
  region.textContent = '';
  // A new text node after a tick, so a repeated message is read again.
  setTimeout(() => { region.textContent = text; }, 50);
}

/** A page heading that takes the focus, so a screen reader starts reading there. */
export function heading(text) {
  return h('h1', { tabindex: '-1', 'data-focus': true }, text);
}

export function formatDate(rfc3339) {
  if (!rfc3339) return '';
  return new Date(rfc3339).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** `3` → `3 credits`, `1` → `1 credit`. */
export function credits(count) {
  return `${count} credit${Math.abs(count) === 1 ? '' : 's'}`;
}

/** A labelled form field: the label names the control for screen readers. */
export function field(labelText, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintElement = hint ? h('span', { class: 'muted', id: `${id}-hint` }, hint) : null;
  if (hintElement) control.setAttribute('aria-describedby', hintElement.id);
  return h('div', { class: 'field' }, h('label', { for: id }, labelText), control, hintElement);
}
