// Signing in (Google, or the development sign-in where the server offers it), the age
// question of a new Google sign-up, and accepting a new version of the privacy policy.
import { api, request } from './api.js';
import { announce, fill, formatDate, h, heading, field } from './dom.js';

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September',
  'October', 'November', 'December'];

export function showSignIn(main, methods, app, message) {
  const offered = new Set((methods || '').split(',').filter(Boolean));
  const error = h('p', { class: 'error', role: 'alert' });
  const parts = [heading('Sign in'), message ? h('p', { class: 'notice', role: 'status' }, message) : null,
    h('p', {}, 'Turn a photo of your pet into a portrait, a tune or a 3D sculpture.')];
  if (offered.has('google')) {
    parts.push(h('p', {}, h('a', { class: 'button', href: '/auth/google/start', id: 'google-sign-in' }, 'Sign in with Google')));
  }
  if (offered.has('dev')) {
    const name = h('input', { type: 'text', name: 'name', autocomplete: 'name', required: true, maxlength: '100', value: 'Pet lover' });
    const email = h('input', { type: 'email', name: 'email', autocomplete: 'email', required: true, value: 'me@example.org' });
    const form = h('form', { class: 'card', id: 'dev-sign-in' },
      h('h2', {}, 'Development sign-in'),
      h('p', { class: 'muted' }, 'This server runs on this machine only, so it lets you in without Google.'),
      field('Name', name), field('E-mail', email),
      h('button', { type: 'submit' }, 'Sign in'));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.textContent = '';
      try {
        await request('/auth/dev-login', { method: 'POST', json: { name: name.value, email: email.value } });
        await app.enter();
      } catch (problem) {
        error.textContent = `Could not sign in: ${problem.message}`;
      }
    });
    parts.push(form);
  }
  if (!offered.size) parts.push(h('p', { class: 'error' }, 'Sign-in is not configured on this server.'));
  parts.push(error);
  fill(main, parts);
  main.querySelector('[data-focus]').focus();
}

export function showAgeQuestion(main, app) {
  const thisYear = new Date().getFullYear();
  const year = h('select', { name: 'birth_year', required: true },
    h('option', { value: '' }, 'Choose a year'),
    Array.from({ length: 110 }, (_, i) => h('option', { value: String(thisYear - i) }, String(thisYear - i))));
  const month = h('select', { name: 'birth_month', required: true },
    h('option', { value: '' }, 'Choose a month'),
    MONTHS.map((label, i) => h('option', { value: String(i + 1) }, label)));
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card', id: 'age-question' },
    h('p', {}, 'PetPortrait is for people aged 13 and over. We use your answer only to check this; it is not stored.'),
    h('fieldset', {}, h('legend', {}, 'When were you born?'), h('div', { class: 'row' },
      field('Month', month), field('Year', year))),
    h('button', { type: 'submit' }, 'Continue'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    try {
      await request('/auth/age', { method: 'POST', json: { birth_year: Number(year.value), birth_month: Number(month.value) } });
      announce('Your account is ready');
      await app.enter();
    } catch (problem) {
      if (problem.code === 'under_age') {
        fill(main, heading('Sorry'), h('p', { role: 'alert' },
          'PetPortrait is not available to children under 13. Nothing about you has been kept.'));
        main.querySelector('[data-focus]').focus();
      } else {
        error.textContent = `${problem.message}. Please sign in again.`;
      }
    }
  });
  fill(main, heading('One question before we start'), form, error);
  main.querySelector('[data-focus]').focus();
}

export async function showPolicy(main, app, done) {
  const policy = await api('/v1/policy');
  const error = h('p', { class: 'error', role: 'alert' });
  const accept = h('button', { type: 'button', id: 'accept-policy' }, 'Accept and continue');
  accept.addEventListener('click', async () => {
    try {
      await request('/v1/policy/accept', { method: 'POST', json: { version: policy.version } });
      await app.refreshMe();
      done();
    } catch (problem) {
      error.textContent = problem.message;
    }
  });
  const first = !app.me.policy.accepted_version;
  fill(main, heading(first ? 'Our privacy policy' : 'Our privacy policy has changed'),
    h('div', { class: 'card' },
      h('p', {}, `Version ${policy.version}, in force since ${formatDate(policy.effective_at)}. `,
        h('a', { href: '/privacy', target: '_blank', rel: 'noopener' }, 'Read the privacy policy (opens in a new tab)'), '.'),
      h('p', {}, 'It says what we keep about you and your pets, for how long, and how to download or delete it.'),
      accept, error));
  main.querySelector('[data-focus]').focus();
}
