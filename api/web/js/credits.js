// Credits: the balance, buying a pack through Stripe Checkout (and the page Stripe
// sends the buyer back to), the ledger and the payments.
import { api } from './api.js';
import { announce, credits, fill, formatDate, h, heading } from './dom.js';
import { pagedList } from './list.js';

const LEDGER_TEXT = {
  grant: 'Welcome credits', purchase: 'Bought', hold: 'Held for a generation', charge: 'Charged',
  release: 'Hold released', refund: 'Refunded',
};

/** How an entry changes the balance. Amounts are sizes: a hold sets credits aside
 * without spending them, its charge spends them, a release gives them back to use. */
function ledgerAmount(entry) {
  const size = Math.abs(entry.amount);
  switch (entry.kind) {
    case 'charge': return `−${size}`;
    case 'hold': return `${size} set aside`;
    case 'release': return `${size} freed`;
    // A grant, purchase or refund adds; an operator's revocation is a negative grant.
    default: return entry.amount < 0 ? `−${size}` : `+${size}`;
  }
}

function money(minor, currency) {
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency.toUpperCase() }).format(minor / 100);
}

export async function show(main, app) {
  const account = await api('/v1/credits');
  const balance = h('p', { id: 'balance', class: 'card' });
  const showBalance = (c) => fill(balance, h('strong', {}, `${credits(c.balance - c.held)} available`),
    c.held ? ` (${c.held} held by running generations)` : '');
  showBalance(account);

  const notice = h('p', { class: 'notice', role: 'status', id: 'checkout-notice' });
  const returned = app.checkoutReturn;
  app.checkoutReturn = null;
  if (returned?.outcome === 'success') {
    notice.textContent = 'Thank you! Your payment is being confirmed; the credits appear here as soon as Stripe tells us it went through.';
    watchForCredits(app, returned.session, notice, showBalance);
  } else if (returned?.outcome === 'canceled') {
    notice.textContent = 'The purchase was canceled; nothing was charged.';
  }

  const error = h('p', { class: 'error', role: 'alert' });
  const packs = account.packs.length
    ? h('ul', { class: 'packs', id: 'packs' }, account.packs.map((pack) => {
      const buy = h('button', { type: 'button' }, `Buy ${credits(pack.credits)}`,
        h('span', { class: 'visually-hidden' }, ` for ${money(pack.price, pack.currency)}`));
      buy.addEventListener('click', async () => {
        buy.disabled = true;
        error.textContent = '';
        try {
          const checkout = await api('/v1/checkout', { method: 'POST', json: { pack_id: pack.id } });
          announce('Opening Stripe Checkout');
          window.location.assign(checkout.checkout_url);
        } catch (problem) {
          buy.disabled = false;
          error.textContent = `Could not start the purchase: ${problem.message}`;
        }
      });
      return h('li', {}, h('p', {}, h('strong', {}, credits(pack.credits))), h('p', {}, money(pack.price, pack.currency)), buy);
    }))
    : h('p', { class: 'muted' }, 'Buying credits is not available on this server.');

  const ledger = h('tbody', {});
  const payments = h('tbody', {});
  // Focusable, so a keyboard can scroll a table wider than a phone.
  const ledgerTable = h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'ledger-title' });
  const paymentsTable = h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'payments-title' });
  fill(main, heading('Credits'), notice, balance,
    h('h2', {}, 'Buy credits'), h('p', { class: 'muted' }, 'Payments go through Stripe; we never see your card.'), packs, error,
    h('h2', { id: 'ledger-title' }, 'Ledger'),
    fill(ledgerTable, h('table', { 'aria-labelledby': 'ledger-title' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col', class: 'num' }, 'Credits'))),
      ledger)),
    h('h2', { id: 'payments-title' }, 'Payments'),
    fill(paymentsTable, h('table', { 'aria-labelledby': 'payments-title' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Pack'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col', class: 'num' }, 'Amount'))),
      payments)));
  await pagedList(ledger, '/v1/credits/ledger?limit=20', (entry) => h('tr', {},
    h('td', {}, formatDate(entry.created_at)),
    h('td', {}, LEDGER_TEXT[entry.kind] || entry.kind, entry.generation_id ? [' (', h('a', { href: `#/generations/${entry.generation_id}` }, 'see'), ')'] : ''),
    h('td', { class: 'num' }, ledgerAmount(entry))), { after: ledgerTable });
  await pagedList(payments, '/v1/payments?limit=20', (payment) => h('tr', {},
    h('td', {}, formatDate(payment.created_at)), h('td', {}, credits(payment.credits)), h('td', {}, payment.status),
    h('td', { class: 'num' }, money(payment.amount, payment.currency))), { after: paymentsTable });
  if (!payments.children.length) payments.append(h('tr', {}, h('td', { colspan: '4', class: 'muted' }, 'No purchases yet.')));
}

/** After Stripe's return, looks for the payment of this Checkout session: Stripe's
 * event records it and credits the account. */
function watchForCredits(app, session, notice, showBalance) {
  const thanks = notice.textContent;
  let left = 30;
  let timer = null;
  let gone = false;
  const look = async () => {
    left -= 1;
    if (gone) return;
    try {
      const payments = await api('/v1/payments?limit=20');
      const payment = payments.data.find((p) => p.provider_reference === session);
      if (payment) {
        showBalance(await api('/v1/credits'));
        notice.textContent = `Payment confirmed: ${credits(payment.credits)} added.`;
        app.refreshMe().catch(() => {});
        return;
      }
    } catch { /* the next look tries again */ }
    if (gone) return;
    if (left > 0) timer = setTimeout(look, 2000);
    else notice.textContent = `${thanks} This is taking longer than usual; the credits will still arrive, come back later.`;
  };
  if (session) look();
  app.onLeave(() => { gone = true; clearTimeout(timer); });
}
