// The app's shell: who is signed in, the navigation, and which screen the address
// (`#/create`, `#/generations/{id}`, ...) shows. Screens live in modules of their own.
import { api, request, whenSignedOut } from './api.js';
import { announce, credits, fill, h } from './dom.js';
import { showSignIn, showAgeQuestion, showPolicy } from './signin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signOut = document.getElementById('sign-out');
const screens = {
  create: () => import('./create.js'),
  generations: () => import('./generation.js'),
  history: () => import('./history.js'),
  gallery: () => import('./gallery.js'),
  credits: () => import('./credits.js'),
  account: () => import('./account.js'),
};

// What the screen on display must undo when it is left (event streams, 3D views).
let cleanups = [];
const app = {
  me: null,
  /** Reloads the profile and the balance shown in the navigation. */
  async refreshMe() {
    app.me = await api('/v1/me');
    const available = app.me.credits.balance - app.me.credits.held;
    document.getElementById('credit-badge').textContent = `(${available})`;
    document.getElementById('credit-badge').setAttribute('aria-label', `${credits(available)} available`);
    return app.me;
  },
  onLeave(cleanup) { cleanups.push(cleanup); },
  go(hash) {
    if (window.location.hash === hash) route();
    else window.location.hash = hash;
  },
  signedOut(message) {
    app.me = null;
    // Screens that keep something between visits (the photo being used) drop it.
    window.dispatchEvent(new Event('petportrait:signed-out'));
    nav.hidden = true;
    signOut.hidden = true;
    leave();
    showSignIn(main, document.body.dataset.signIn, app, message);
  },
};

function leave() {
  for (const cleanup of cleanups) cleanup();
  cleanups = [];
}

// Each navigation's number: a screen still loading when another is asked for gives way.
let navigation = 0;

function policyPending() {
  const { accepted_version: accepted, current_version: current } = app.me.policy;
  return Boolean(current) && accepted !== current;
}

async function route() {
  if (!app.me) return;
  leave();
  const ticket = ++navigation;
  app.current = () => ticket === navigation && app.me !== null;
  // Nothing but the policy until a new version is accepted.
  if (policyPending()) {
    await showPolicy(main, app, () => { announce('Policy accepted'); route(); });
    return;
  }
  const [name = 'create', ...rest] = window.location.hash.replace(/^#\/?/, '').split('/');
  const load = screens[name] || screens.create;
  for (const link of nav.querySelectorAll('a')) {
    if (link.getAttribute('href') === `#/${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  try {
    const screen = await load();
    if (!app.current()) return;
    await screen.show(main, app, ...rest);
  } catch (error) {
    // A 401 has already brought the sign-in back; a newer screen has taken the page.
    if (error.status === 401 || !app.current()) return;
    fill(main, h('h1', { tabindex: '-1', 'data-focus': true }, 'Something went wrong'),
      h('p', { class: 'error', role: 'alert' }, error.message));
  }
  if (!app.current()) return;
  const title = main.querySelector('h1');
  document.title = title ? `${title.textContent} · PetPortrait` : 'PetPortrait';
  // Move the focus to the new screen's heading, as a page load would.
  const focus = main.querySelector('[data-focus]') || main;
  focus.focus({ preventScroll: false });
}

/** Signed in: the navigation, then the policy if a new version waits, then the screen. */
async function enter() {
  await app.refreshMe();
  nav.hidden = false;
  signOut.hidden = false;
  await route();
}
app.enter = enter;

// The server sends people back here with a query: the age question of a new Google
// sign-up, or Stripe Checkout's return. The query is read once, then dropped from the
// address so a reload does not repeat it.
function takeQuery() {
  const query = new URLSearchParams(window.location.search);
  if ([...query.keys()].length) window.history.replaceState(null, '', `/${window.location.hash}`);
  if (query.get('checkout')) {
    app.checkoutReturn = { outcome: query.get('checkout'), session: query.get('session_id') };
    if (!window.location.hash.startsWith('#/credits')) window.history.replaceState(null, '', '/#/credits');
  }
  return query;
}

async function boot() {
  const query = takeQuery();
  whenSignedOut(() => { if (app.me) app.signedOut('Your session has ended. Please sign in again.'); });
  signOut.addEventListener('click', async () => {
    await request('/auth/logout', { method: 'POST' }).catch(() => {});
    app.signedOut('You are signed out.');
  });
  window.addEventListener('hashchange', route);
  if (query.get('sign-up') === 'age') {
    showAgeQuestion(main, app);
    return;
  }
  try {
    await enter();
  } catch (error) {
    if (error.status === 401) app.signedOut();
    else fill(main, h('h1', {}, 'PetPortrait'), h('p', { class: 'error', role: 'alert' }, error.message));
  }
}

boot();
