// Admin pages (an admin token; the services check the role, this page only hides what a
// customer could not do): create a product, adjust stock, credit a wallet, and every
// order with a filter by status.

import { ApiError, api, listAll, randomKey } from '../api.js';
import { busy, field, h, messageArea, money, parseCents, replace, shortId, showFieldErrors, time } from '../dom.js';
import { poll } from '../poll.js';
import { isSettled } from '../saga.js';
import { reasonText, statusBadge } from './status.js';

const STATUSES = ['pending', 'confirmed', 'rejected', 'cancelled'];

function problemText(error) {
  return error instanceof ApiError ? error.message : 'No answer from the shop. Try again.';
}

/** Shows a 422's field messages by the fields, everything else in `message`. */
function reportError(form, message, error) {
  if (error instanceof ApiError && error.status === 422) {
    const rest = showFieldErrors(form, error.fieldErrors);
    message.error(Object.values(rest).join(' ') || 'Please correct the fields marked below.');
  } else {
    message.error(problemText(error));
  }
}

function productForm(onCreated) {
  const message = messageArea();
  const form = h(
    'form',
    { class: 'grid-form' },
    field('SKU', h('input', { name: 'sku', required: true, autocomplete: 'off' })),
    field('Product name', h('input', { name: 'name', required: true, autocomplete: 'off' })),
    field('Description', h('textarea', { name: 'description', rows: 2 })),
    field('Price (USD)', h('input', { name: 'price_cents', required: true, inputmode: 'decimal', pattern: '\\d+(\\.\\d{1,2})?', autocomplete: 'off' }), 'For example 12.50'),
    field('Initial stock', h('input', { name: 'stock', type: 'number', min: '0', step: '1', required: true, value: '10' })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create product')),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.clear();
    showFieldErrors(form, {});
    const data = new FormData(form);
    const price = parseCents(data.get('price_cents'));
    if (price === null) {
      showFieldErrors(form, { price_cents: 'An amount in USD, like 12.50.' });
      return;
    }
    const body = {
      sku: data.get('sku').trim(),
      name: data.get('name').trim(),
      description: data.get('description').trim(),
      price_cents: price,
      stock: Number(data.get('stock')),
    };
    try {
      const product = await busy(form, () => api('POST', '/api/v1/products', { body }));
      message.info(`Created ${product.name} (${product.sku}) with ${product.available} in stock.`);
      form.reset();
      onCreated();
    } catch (error) {
      reportError(form, message, error);
    }
  });
  return h('section', { class: 'card', 'aria-labelledby': 'new-product' }, h('h2', { id: 'new-product' }, 'New product'), message.element, form);
}

function stockSection() {
  const message = messageArea();
  const body = h('tbody', {});
  const row = (product) => {
    const available = h('td', { class: 'number' }, String(product.available));
    const reserved = h('td', { class: 'number' }, String(product.reserved));
    const delta = h('input', { type: 'number', step: '1', value: '10', class: 'small', 'aria-label': `Stock change for ${product.name}` });
    const form = h(
      'form',
      { class: 'inline' },
      delta,
      h('button', { type: 'submit' }, 'Adjust', h('span', { class: 'visually-hidden' }, ` stock of ${product.name}`)),
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      message.clear();
      const change = Number.parseInt(delta.value, 10);
      if (!Number.isInteger(change) || change === 0) {
        message.error('The change is a whole number of units, not zero (negative removes stock).');
        return;
      }
      try {
        const updated = await busy(form, () => api('POST', `/api/v1/products/${product.id}/stock`, { body: { delta: change } }));
        available.textContent = String(updated.available);
        reserved.textContent = String(updated.reserved);
        message.info(`${updated.name}: ${updated.available} in stock now.`);
      } catch (error) {
        message.error(
          error instanceof ApiError && error.status === 409
            ? `${product.name}: the stock cannot go below what is reserved.`
            : problemText(error),
        );
      }
    });
    return h('tr', {}, h('th', { scope: 'row' }, product.name, h('br'), h('code', {}, product.sku)), available, reserved, h('td', {}, form));
  };
  const load = async () => {
    const { items } = await listAll('/api/v1/products');
    replace(body, items.map(row));
  };
  const section = h(
    'section',
    { class: 'card', 'aria-labelledby': 'stock' },
    h('h2', { id: 'stock' }, 'Stock'),
    message.element,
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        {},
        h('caption', { class: 'visually-hidden' }, 'Stock per product'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col' }, 'Available'), h('th', { scope: 'col' }, 'Reserved'), h('th', { scope: 'col' }, 'Change'))),
        body,
      ),
    ),
  );
  return { section, load: () => load().catch((error) => message.error(`The products could not be loaded: ${problemText(error)}`)) };
}

function creditForm() {
  const message = messageArea();
  const userId = h('input', { name: 'user_id', required: true, autocomplete: 'off', spellcheck: 'false' });
  const amount = h('input', { name: 'amount_cents', required: true, inputmode: 'decimal', pattern: '\\d+(\\.\\d{1,2})?', autocomplete: 'off' });
  // One key per credit the admin means to make: a retry after a lost answer reuses it
  // (payment-service credits once); a change to the form is a new credit.
  let key = randomKey();
  const form = h(
    'form',
    { class: 'grid-form' },
    field('User id', userId, 'Pick "Credit" next to an order below, or paste an id.'),
    field('Amount (USD)', amount),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Credit wallet')),
  );
  form.addEventListener('input', () => {
    key = randomKey();
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.clear();
    showFieldErrors(form, {});
    const cents = parseCents(amount.value);
    if (cents === null || cents === 0) {
      showFieldErrors(form, { amount_cents: 'An amount in USD above zero, like 50 or 12.50.' });
      return;
    }
    const id = userId.value.trim();
    try {
      const wallet = await busy(form, () =>
        api('POST', `/api/v1/wallets/${encodeURIComponent(id)}/credit`, { body: { amount_cents: cents }, headers: { 'Idempotency-Key': key } }),
      );
      message.info(`Credited ${money(cents)} to ${shortId(id)}: the balance is ${money(wallet.balance_cents)}.`);
      key = randomKey();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) message.error('No wallet for this user id.');
      else reportError(form, message, error);
    }
  });
  const section = h('section', { class: 'card', 'aria-labelledby': 'credit' }, h('h2', { id: 'credit' }, 'Credit a wallet'), message.element, form);
  return {
    section,
    prefill(id) {
      userId.value = id;
      key = randomKey();
      amount.focus();
    },
  };
}

function ordersSection(signal, onCredit) {
  const message = messageArea();
  const filter = h(
    'select',
    { name: 'status' },
    h('option', { value: '' }, 'All statuses'),
    STATUSES.map((status) => h('option', { value: status }, status)),
  );
  const body = h('tbody', {});
  const note = h('p', { class: 'live', role: 'status' });
  let orders = [];
  let complete = true;
  let updates = null;

  const draw = () => {
    const shown = filter.value ? orders.filter((order) => order.status === filter.value) : orders;
    replace(
      body,
      shown.length
        ? shown.map((order) =>
            h(
              'tr',
              {},
              h('th', { scope: 'row' }, h('a', { href: `#/orders/${order.id}` }, `Order ${shortId(order.id)}`)),
              h(
                'td',
                {},
                h('code', {}, shortId(order.user_id)),
                ' ',
                h('button', { type: 'button', class: 'link', onclick: () => onCredit(order.user_id) }, 'Credit', h('span', { class: 'visually-hidden' }, ` the wallet of the customer of order ${shortId(order.id)}`)),
              ),
              h('td', {}, statusBadge(order.status)),
              h('td', {}, reasonText(order.status_reason) ?? '—'),
              h('td', { class: 'number' }, money(order.total_cents)),
              h('td', {}, time(order.created_at)),
            ),
          )
        : h('tr', {}, h('td', { colspan: '6' }, filter.value ? `No ${filter.value} orders.` : 'No orders yet.')),
    );
    const pending = orders.filter((order) => !isSettled(order)).length;
    note.textContent = [
      `${shown.length} of ${orders.length} orders shown${complete ? '' : ' (the newest 500)'}.`,
      pending ? `Updating live: ${pending} pending.` : '',
    ].join(' ');
  };

  const load = async () => {
    const answer = await listAll('/api/v1/orders', { maxPages: 5 });
    if (signal.aborted) return true;
    orders = answer.items;
    complete = answer.complete;
    draw();
    return orders.every(isSettled);
  };

  filter.addEventListener('change', draw);
  signal.addEventListener('abort', () => updates?.stop());
  const start = () =>
    load()
      .then((done) => {
        if (!done && !signal.aborted) {
          updates?.stop();
          updates = poll(load);
        }
      })
      .catch((error) => message.error(`The orders could not be loaded: ${problemText(error)}`));

  const section = h(
    'section',
    { class: 'card', 'aria-labelledby': 'all-orders' },
    h('h2', { id: 'all-orders' }, 'All orders'),
    message.element,
    h('div', { class: 'toolbar' }, field('Status', filter), h('button', { type: 'button', onclick: start }, 'Refresh')),
    note,
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        {},
        h('caption', { class: 'visually-hidden' }, 'All orders, newest first'),
        h('thead', {}, h('tr', {}, ['Order', 'Customer', 'Status', 'Reason', 'Total', 'Placed'].map((label) => h('th', { scope: 'col' }, label)))),
        body,
      ),
    ),
  );
  return { section, load: start };
}

export function adminView(main, { signal }) {
  const stock = stockSection();
  const credit = creditForm();
  const orders = ordersSection(signal, (userId) => credit.prefill(userId));
  main.append(
    h('h1', { tabindex: '-1' }, 'Admin'),
    h('div', { class: 'columns' }, productForm(stock.load), credit.section),
    stock.section,
    orders.section,
  );
  stock.load();
  orders.load();
}
