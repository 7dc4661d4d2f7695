// The privacy centre: the profile, a copy of all one's data, API tokens, webhook
// endpoints with their delivery logs, signing out everywhere, and deleting the account.
import { api, localUrl, request } from './api.js';
import { announce, fill, formatDate, h, heading, field } from './dom.js';
import { focusAfterRemoving, pagedList } from './list.js';

const EVENT_TYPES = ['generation.started', 'generation.progress', 'generation.succeeded', 'generation.failed',
  'generation.canceled', 'privacy_export.ready'];

export async function show(main, app) {
  fill(main, heading('Privacy & account'),
    h('p', {}, 'What we keep and why is in the ', h('a', { href: '/privacy' }, 'privacy policy'), '.'),
    profile(app), await exports(app), await tokens(), await endpoints(), sessions(app), deletion(app));
}

function section(id, title, ...children) {
  return h('section', { class: 'card', id, 'aria-labelledby': `${id}-title` }, h('h2', { id: `${id}-title` }, title), children);
}

function profile(app) {
  const me = app.me;
  const name = h('input', { type: 'text', id: 'profile-name', required: true, maxlength: '100', value: me.name, autocomplete: 'name' });
  const kind = h('select', { id: 'profile-kind' }, h('option', { value: '' }, 'No preference'),
    ['portrait', 'music', 'sculpture'].map((k) => h('option', { value: k, selected: me.preferences.default_kind === k }, k)));
  const result = h('p', { role: 'status' });
  const form = h('form', {}, field('Name', name), h('p', {}, `E-mail: ${me.email} (from your sign-in)`),
    field('Kind offered first', kind), h('button', { type: 'submit' }, 'Save profile'), result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      // The preferences are replaced whole: keep the ones this form does not show.
      const { default_kind: _, ...others } = app.me.preferences;
      const preferences = kind.value ? { ...others, default_kind: kind.value } : others;
      await api('/v1/me', { method: 'PATCH', json: { name: name.value, preferences } });
      await app.refreshMe();
      result.className = 'success';
      result.textContent = 'Profile saved.';
    } catch (problem) {
      result.className = 'error';
      result.textContent = `Not saved: ${problem.message}`;
    }
  });
  return section('profile', 'Your profile', form);
}

async function exports(app) {
  const list = h('ul', { class: 'list', id: 'privacy-requests' });
  const status = h('p', { role: 'status', id: 'export-status' });
  const start = h('button', { type: 'button', id: 'request-export' }, 'Prepare a copy of my data');
  let timer = null;
  let left = false;
  const render = async () => {
    const page = await api('/v1/privacy/requests');
    if (left) return;
    fill(list, page.data.filter((r) => r.kind === 'export').map((r) => h('li', {},
      h('span', {}, `Copy requested ${formatDate(r.created_at)}: `, h('strong', {}, r.status.replace('_', ' '))),
      r.download_url
        ? h('a', { class: 'button secondary', href: localUrl(r.download_url), download: '' }, 'Download my data (ZIP)',
          h('span', { class: 'visually-hidden' }, `, available until ${formatDate(r.expires_at)}`))
        : h('span', { class: 'muted' }, waiting(r)))));
    const open = page.data.some((r) => r.kind === 'export' && (r.status === 'received' || r.status === 'in_progress'));
    clearTimeout(timer);
    if (open) timer = setTimeout(render, 1500);
    else if (status.textContent.startsWith('Preparing')) {
      status.textContent = 'Your copy is ready to download.';
      announce('Your copy is ready to download');
    }
  };
  start.addEventListener('click', async () => {
    try {
      await api('/v1/privacy/exports', { method: 'POST' });
      status.textContent = 'Preparing your copy. You can leave this page; we keep working on it.';
      await render();
    } catch (problem) {
      status.textContent = `Could not start: ${problem.message}`;
    }
  });
  app.onLeave(() => { left = true; clearTimeout(timer); });
  await render();
  return section('export', 'Download your data',
    h('p', {}, 'A ZIP file with everything we hold about you: your profile, photos, results, credits, payments and logs, with an explanation of each part.'),
    start, status, list);
}

/** What an export without a download link is waiting for, or why it has none. */
function waiting(request) {
  if (request.status === 'failed') return 'Failed; request a new copy.';
  if (request.status === 'completed') return 'Its download has expired; request a new copy.';
  return `Ready by ${formatDate(request.due_at)} at the latest`;
}

async function tokens() {
  const list = h('ul', { class: 'list', id: 'tokens' });
  const name = h('input', { type: 'text', id: 'token-name', required: true, maxlength: '100' });
  // Not a live region: a screen reader would read the secret aloud.
  const created = h('div', { id: 'token-created' });
  const row = (token) => {
    const remove = h('button', { type: 'button', class: 'secondary' }, 'Revoke', h('span', { class: 'visually-hidden' }, ` ${token.name}`));
    const item = h('li', {}, h('span', {}, h('strong', {}, token.name), ` created ${formatDate(token.created_at)}`,
      token.last_used_at ? `, last used ${formatDate(token.last_used_at)}` : ', never used'), remove);
    remove.addEventListener('click', async () => {
      try {
        await api(`/v1/me/tokens/${token.id}`, { method: 'DELETE' });
        focusAfterRemoving(item);
        announce(`Token ${token.name} revoked`);
      } catch (problem) {
        announce(`Could not revoke: ${problem.message}`);
      }
    });
    return item;
  };
  const form = h('form', { class: 'row' }, field('Token name', name), h('button', { type: 'submit' }, 'Create token'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const token = await api('/v1/me/tokens', { method: 'POST', json: { name: name.value } });
      fill(created, h('p', {}, 'Copy your token now; it is not shown again:'), h('p', { class: 'secret' }, token.token));
      announce('Token created; it is shown below the form');
      list.prepend(row(token));
      name.value = '';
    } catch (problem) {
      fill(created, h('p', { class: 'error' }, problem.message));
    }
  });
  await pagedList(list, '/v1/me/tokens', row);
  return section('api-tokens', 'API tokens', h('p', { class: 'muted' }, 'For programs that use the API on your behalf (Authorization: Bearer …).'), form, created, list);
}

async function endpoints() {
  const list = h('ul', { class: 'list', id: 'endpoints' });
  const url = h('input', { type: 'url', id: 'endpoint-url', required: true, placeholder: 'https://example.com/hooks/petportrait' });
  const events = h('fieldset', {}, h('legend', {}, 'Events'), h('div', { class: 'choices' },
    EVENT_TYPES.map((type) => h('label', {}, h('input', { type: 'checkbox', name: 'events', value: type, checked: type !== 'generation.progress' }), ` ${type}`))));
  const created = h('div', { id: 'endpoint-created' });
  const form = h('form', {}, field('HTTPS address', url), events, h('button', { type: 'submit' }, 'Add endpoint'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const chosen = [...events.querySelectorAll('input:checked')].map((box) => box.value);
      const endpoint = await api('/v1/webhook-endpoints', { method: 'POST', json: { url: url.value, events: chosen } });
      fill(created, h('p', {}, 'Signing secret (shown only now; deliveries are signed with it):'), h('p', { class: 'secret' }, endpoint.secret));
      announce('Endpoint added; its signing secret is shown below the form');
      list.prepend(endpointRow(endpoint));
      url.value = '';
    } catch (problem) {
      fill(created, h('p', { class: 'error' }, problem.message));
    }
  });
  await pagedList(list, '/v1/webhook-endpoints', endpointRow, { empty: 'No endpoints.' });
  return section('webhooks', 'Webhook endpoints', form, created, list);
}

function endpointRow(endpoint) {
  const log = h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': `Deliveries to ${endpoint.url}` });
  const show = h('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false' }, 'Delivery log');
  const remove = h('button', { type: 'button', class: 'secondary' }, 'Delete');
  const state = endpoint.enabled ? (endpoint.failing_since ? `failing since ${formatDate(endpoint.failing_since)}` : 'active')
    : `disabled${endpoint.disabled_reason ? ` (${endpoint.disabled_reason})` : ''}`;
  const item = h('li', {}, h('div', {}, h('strong', {}, endpoint.url), h('div', { class: 'muted' }, `${endpoint.events.join(', ')} · ${state}`)),
    h('div', { class: 'row' }, show, remove), log);
  show.addEventListener('click', async () => {
    const open = show.getAttribute('aria-expanded') === 'true';
    show.setAttribute('aria-expanded', String(!open));
    if (open) { log.replaceChildren(); return; }
    const rows = h('tbody', {});
    fill(log, h('table', {}, h('caption', { class: 'visually-hidden' }, `Deliveries to ${endpoint.url}`),
      h('thead', {}, h('tr', {}, ['When', 'Event', 'Status', 'Attempts'].map((t) => h('th', { scope: 'col' }, t)), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))), rows));
    await pagedList(rows, `/v1/webhook-endpoints/${endpoint.id}/deliveries?limit=10`, deliveryRow, { after: log });
    if (!rows.children.length) rows.append(h('tr', {}, h('td', { colspan: '5', class: 'muted' }, 'Nothing sent yet.')));
  });
  remove.addEventListener('click', async () => {
    try {
      await api(`/v1/webhook-endpoints/${endpoint.id}`, { method: 'DELETE' });
      focusAfterRemoving(item);
      announce('Endpoint deleted');
    } catch (problem) {
      announce(`Could not delete: ${problem.message}`);
    }
  });
  return item;
}

function deliveryRow(delivery) {
  const last = delivery.attempts[delivery.attempts.length - 1];
  const outcome = last ? (last.status_code ? `HTTP ${last.status_code}` : last.error || '') : '';
  const retry = delivery.status === 'failed' ? h('button', { type: 'button', class: 'secondary' }, 'Retry') : null;
  const status = h('td', {}, delivery.status, outcome ? ` (${outcome})` : '');
  retry?.addEventListener('click', async () => {
    retry.disabled = true;
    try {
      await api(`/v1/webhook-deliveries/${delivery.id}/retry`, { method: 'POST' });
      status.textContent = 'pending (retry queued)';
    } catch (problem) {
      status.textContent = problem.message;
    }
  });
  return h('tr', {}, h('td', {}, formatDate(delivery.created_at)), h('td', {}, delivery.event_type), status,
    h('td', {}, String(delivery.attempts.length)), h('td', {}, retry));
}

function sessions(app) {
  const everywhere = h('button', { type: 'button', class: 'secondary', id: 'sign-out-everywhere' }, 'Sign out everywhere');
  everywhere.addEventListener('click', async () => {
    try {
      await request('/auth/logout-all', { method: 'POST' });
      app.signedOut('You are signed out on every device, and your API tokens are revoked.');
    } catch (problem) {
      announce(`Could not sign out everywhere: ${problem.message}`);
    }
  });
  return section('sessions', 'Sessions', h('p', {}, 'Ends every session on every device and revokes every API token.'), everywhere);
}

function deletion(app) {
  const confirm = h('input', { type: 'text', id: 'delete-confirm', autocomplete: 'off', spellcheck: 'false' });
  const button = h('button', { type: 'submit', class: 'danger', id: 'delete-account', disabled: true }, 'Delete my account');
  const error = h('p', { class: 'error', role: 'alert' });
  confirm.addEventListener('input', () => { button.disabled = confirm.value !== 'DELETE'; });
  const form = h('form', {},
    h('p', {}, 'Deleting your account removes your profile, photos, results, gallery, tokens and webhooks. Payment records are kept as the law requires, without your name. It cannot be undone.'),
    field('Type DELETE to confirm', confirm), button, error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('/v1/privacy/deletion', { method: 'POST', json: { confirm: confirm.value } });
      app.signedOut('Your account is closed and is being deleted. Thank you for using PetPortrait.');
    } catch (problem) {
      error.textContent = problem.message;
    }
  });
  return section('delete', 'Delete your account', form);
}
