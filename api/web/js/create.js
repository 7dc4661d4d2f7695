// Creating: a photo (chosen, dropped or taken with the camera) is uploaded as soon as it
// is picked, so a bad file is explained at once; then a kind and style, with the cost
// quoted, and the order.
import { api, request } from './api.js';
import { credits, fill, formatBytes, h, heading, field } from './dom.js';

// What each refusal of `POST /v1/uploads` means for the person holding the photo.
const UPLOAD_ERRORS = {
  payload_too_large: 'This file is too large.',
  unsupported_media_type: 'This file is not a photo we can read. Choose a JPEG, PNG or WebP image.',
  image_too_large: 'This photo has too many pixels. Choose a smaller photo, or shrink it first.',
  image_truncated: 'This photo is incomplete: the file was cut short. Try copying it again.',
  image_corrupt: 'This photo is damaged and cannot be read.',
  image_polyglot: 'This file hides something that is not a photo, so it was refused.',
  missing_file: 'Choose a photo first.',
};

// The photo uploaded last, kept while the person moves between screens, and dropped
// when they sign out (the next person in this tab must not see it).
let current = null;
window.addEventListener('petportrait:signed-out', () => {
  if (current) URL.revokeObjectURL(current.preview);
  current = null;
});

export async function show(main, app) {
  const maxBytes = Number(document.body.dataset.uploadMaxBytes) || 0;
  const catalogue = await api('/v1/styles');
  const uploadError = h('p', { class: 'error', role: 'alert', id: 'upload-error' });
  const uploadStatus = h('p', { role: 'status', id: 'upload-status' });
  const preview = h('img', { class: 'preview', alt: 'Your photo', hidden: true, id: 'preview' });
  const chooser = h('input', { type: 'file', id: 'photo', class: 'visually-hidden', accept: 'image/jpeg,image/png,image/webp' });
  const camera = h('input', { type: 'file', id: 'camera', class: 'visually-hidden', accept: 'image/*', capture: 'environment' });
  const zone = h('div', { class: 'drop-zone', id: 'drop-zone' },
    h('p', {}, 'Drag a photo of your pet here, or'),
    h('div', { class: 'row centred' },
      chooser, h('label', { for: 'photo', class: 'button' }, 'Choose a photo'),
      camera, h('label', { for: 'camera', class: 'button secondary' }, 'Take a photo')),
    h('p', { class: 'muted' }, `JPEG, PNG or WebP${maxBytes ? `, up to ${formatBytes(maxBytes)}` : ''}. Photos are deleted after a day.`),
    preview, uploadStatus, uploadError);

  const showUpload = () => {
    if (!current) return;
    preview.src = current.preview;
    preview.hidden = false;
    uploadStatus.textContent = `Photo ready: ${current.upload.width} × ${current.upload.height} pixels, ${formatBytes(current.upload.bytes)}.`;
  };

  // Each photo's number: when two are picked quickly, only the last one's answer counts.
  let picked = 0;
  const take = async (file) => {
    if (!file) return;
    const ticket = ++picked;
    uploadError.textContent = '';
    uploadStatus.textContent = '';
    preview.hidden = true;
    if (current) URL.revokeObjectURL(current.preview);
    current = null;
    refreshQuote();
    if (maxBytes && file.size > maxBytes) {
      uploadError.textContent = `${UPLOAD_ERRORS.payload_too_large} It is ${formatBytes(file.size)}; the limit is ${formatBytes(maxBytes)}.`;
      return;
    }
    uploadStatus.textContent = `Uploading ${file.name}…`;
    const form = new FormData();
    form.append('file', file);
    try {
      const upload = await api('/v1/uploads', { method: 'POST', form });
      if (ticket !== picked) return;
      current = { upload, preview: URL.createObjectURL(file) };
      showUpload();
    } catch (problem) {
      if (ticket !== picked) return;
      uploadStatus.textContent = '';
      const meaning = UPLOAD_ERRORS[problem.code] || 'This photo could not be uploaded.';
      uploadError.textContent = `${meaning} (${problem.message})`;
    }
    refreshQuote();
  };
  for (const input of [chooser, camera]) {
    input.addEventListener('change', () => { take(input.files[0]); input.value = ''; });
  }
  zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.classList.add('dragging'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    take(event.dataTransfer.files[0]);
  });

  // The kind, then its styles with their costs.
  const kinds = catalogue.kinds;
  const preferred = app.me.preferences.default_kind;
  const preferredStyle = app.me.preferences.default_style;
  const firstKind = kinds.find((k) => k.available && k.kind === preferred) || kinds.find((k) => k.available) || kinds[0];
  const kindChoices = h('div', { class: 'choices' }, kinds.map((kind) => h('label', {},
    h('input', { type: 'radio', name: 'kind', value: kind.kind, checked: kind === firstKind, disabled: !kind.available }),
    ` ${kind.kind[0].toUpperCase()}${kind.kind.slice(1)}${kind.available ? '' : ' (unavailable now)'}`)));
  const style = h('select', { id: 'style', name: 'style' });
  const description = h('p', { class: 'muted', id: 'style-description' });
  const quote = h('p', { id: 'quote', 'aria-live': 'polite' });
  const orderError = h('p', { class: 'error', role: 'alert', id: 'order-error' });
  const create = h('button', { type: 'submit', id: 'create', disabled: true }, 'Create');
  const selectedKind = () => kinds.find((k) => k.kind === kindChoices.querySelector('input:checked')?.value) || firstKind;
  const fillStyles = () => {
    fill(style, selectedKind().styles.map((s) =>
      h('option', { value: s.id, disabled: !s.available }, `${s.name} (${credits(s.credits)})${s.available ? '' : ' (unavailable now)'}`)));
    const firstReady = selectedKind().styles.find((s) => s.available && s.id === preferredStyle)
      || selectedKind().styles.find((s) => s.available);
    if (firstReady) style.value = firstReady.id;
    refreshQuote();
  };

  let quoted = 0;
  async function refreshQuote() {
    const kind = selectedKind();
    const chosen = kind.styles.find((s) => s.id === style.value);
    description.textContent = chosen ? chosen.description : '';
    create.disabled = true;
    if (!chosen) { quote.textContent = ''; return; }
    const ticket = ++quoted;
    try {
      const answer = await api(`/v1/quote?kind=${encodeURIComponent(kind.kind)}&style=${encodeURIComponent(chosen.id)}`);
      if (ticket !== quoted) return;
      fill(quote, `Costs ${credits(answer.credits)}. You have ${credits(answer.available)} available.`,
        answer.affordable ? null : [' ', h('a', { href: '#/credits' }, 'Buy credits')]);
      create.disabled = !(answer.affordable && current);
    } catch (problem) {
      quote.textContent = problem.message;
    }
  }
  kindChoices.addEventListener('change', fillStyles);
  style.addEventListener('change', refreshQuote);

  // One idempotency key per order, so a retried click never orders twice.
  let key = crypto.randomUUID();
  const order = h('form', { class: 'card', id: 'order' },
    h('h2', {}, '2. Choose what to make'),
    h('fieldset', {}, h('legend', {}, 'Kind'), kindChoices),
    field('Style', style), description, quote,
    h('div', { class: 'row' }, create, h('span', { class: 'muted' }, 'Credits are taken only when it succeeds.')),
    orderError);
  order.addEventListener('submit', async (event) => {
    event.preventDefault();
    orderError.textContent = '';
    if (!current) { orderError.textContent = UPLOAD_ERRORS.missing_file; return; }
    create.disabled = true;
    let generation;
    try {
      generation = await api('/v1/generations', {
        method: 'POST', headers: { 'idempotency-key': key },
        json: { kind: selectedKind().kind, style: style.value, upload_id: current.upload.id },
      });
    } catch (problem) {
      orderError.textContent = problem.code === 'insufficient_credits'
        ? 'You do not have enough credits for this. Buy credits on the Credits page.'
        : `Could not start it: ${problem.message}`;
      // The same key again after a lost answer, a 409 (the first is still being
      // processed) or a server error: the server answers the first order, never a second.
      if (problem.status >= 400 && problem.status < 500 && problem.status !== 409) key = crypto.randomUUID();
      refreshQuote();
      return;
    }
    key = crypto.randomUUID();
    app.refreshMe().catch(() => {});
    app.go(`#/generations/${generation.id}`);
  });

  fill(main, heading('Create'),
    h('section', { class: 'card', 'aria-labelledby': 'step-photo' }, h('h2', { id: 'step-photo' }, '1. Your pet’s photo'), zone),
    order);
  fillStyles();
  showUpload();
}
