// The cart and "Place order" (POST /api/v1/orders with the cart's Idempotency-Key).
//
// Nothing stops an order for more than the stock or the wallet: the page says what will
// happen, and the saga does it, which is the point of the demo.

import { ApiError, api, session } from '../api.js';
import { cart } from '../cart.js';
import { h, messageArea, money, replace } from '../dom.js';
import { poll } from '../poll.js';
import { productsById } from '../products.js';
import { walletBalance, walletText } from '../wallet.js';

const RETRIES = [500, 1500];

/** Sends the placement, again with the same key when no answer came (or a 503). */
async function placeOrder(body, key) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await api('POST', '/api/v1/orders', { body, headers: { 'Idempotency-Key': key } });
    } catch (error) {
      const retryable = !(error instanceof ApiError) || error.status === 503;
      if (!retryable || attempt >= RETRIES.length) throw error;
      await new Promise((resolve) => setTimeout(resolve, RETRIES[attempt]));
    }
  }
}

export function cartView(main, { signal, navigate }) {
  const message = messageArea();
  const content = h('div', {});
  main.append(h('h1', { tabindex: '-1' }, 'Cart'), message.element, content);
  let products = new Map();
  let balance;

  // The table is built when lines come or go; prices, stock and totals are updated in
  // place, so that an answer arriving while someone types a quantity does not undo it.
  let update = () => {};

  const render = () => {
    if (cart.lines.length === 0) {
      replace(content, h('p', {}, 'Your cart is empty. ', h('a', { href: '#/' }, 'Browse the catalog'), '.'));
      update = () => {};
      return;
    }
    const price = (line) => products.get(line.product_id)?.price_cents ?? line.price_cents;
    const rows = cart.lines.map((line) => {
      const cells = { price: h('td', { class: 'number' }), subtotal: h('td', { class: 'number' }), warning: h('span', {}) };
      const quantity = h('input', {
        type: 'number',
        min: '1',
        step: '1',
        inputmode: 'numeric',
        value: String(line.quantity),
        'aria-label': `Quantity of ${line.name}`,
        oninput: (event) => {
          const value = Number.parseInt(event.target.value, 10);
          if (Number.isInteger(value) && value > 0) cart.setQuantity(line.product_id, value);
          update();
        },
      });
      const remove = () => {
        cart.remove(line.product_id);
        render();
        content.querySelector('input, a')?.focus();
      };
      const row = h(
        'tr',
        {},
        h('th', { scope: 'row' }, line.name, cells.warning),
        cells.price,
        h('td', {}, quantity),
        cells.subtotal,
        h('td', {}, h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${line.name}`, onclick: remove }, 'Remove')),
      );
      return { line, row, cells };
    });
    const total = h('td', { class: 'number' });
    const wallet = h('p', { class: 'wallet' });
    const funds = h('div', {});
    const button = h('button', { type: 'button', class: 'primary', onclick: () => submit(button) }, 'Place order');
    replace(
      content,
      h(
        'table',
        { class: 'cart' },
        h('caption', { class: 'visually-hidden' }, 'Cart lines'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col' }, 'Price'), h('th', { scope: 'col' }, 'Quantity'), h('th', { scope: 'col' }, 'Subtotal'), h('td', {}))),
        h('tbody', {}, rows.map((r) => r.row)),
        h('tfoot', {}, h('tr', {}, h('th', { scope: 'row', colspan: '3' }, 'Total'), total, h('td', {}))),
      ),
      session.token ? wallet : h('p', {}, h('a', { href: '#/signin?next=%2Fcart' }, 'Sign in'), ' to place your order.'),
      funds,
      h('div', { class: 'actions' }, button),
    );
    update = () => {
      for (const { line, cells } of rows) {
        const product = products.get(line.product_id);
        cells.price.textContent = money(price(line));
        cells.subtotal.textContent = money(price(line) * line.quantity);
        replace(
          cells.warning,
          product && line.quantity > product.available
            ? h('p', { class: 'warning' }, `Only ${product.available} in stock: inventory-service will reject this order (out_of_stock).`)
            : null,
        );
      }
      const sum = cart.lines.reduce((cents, line) => cents + price(line) * line.quantity, 0);
      total.textContent = money(sum);
      wallet.textContent = balance === undefined ? '' : walletText(balance);
      replace(
        funds,
        typeof balance === 'number' && sum > balance
          ? h('p', { class: 'warning' }, 'More than your wallet holds: payment-service will reject this order (insufficient_funds).')
          : null,
      );
    };
    update();
  };

  async function submit(button) {
    if (!session.token) {
      navigate('/signin?next=%2Fcart');
      return;
    }
    message.clear();
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      const order = await placeOrder(cart.orderBody(), cart.placementKey);
      cart.clear();
      navigate(`/orders/${order.id}`);
    } catch (error) {
      message.error(
        error instanceof ApiError
          ? `The order was not accepted: ${error.message}`
          : 'No answer from the shop. Press "Place order" again: the same order is sent, never a second one.',
      );
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }

  render();
  const ids = cart.lines.map((line) => line.product_id);
  Promise.all([
    ids.length ? productsById(ids, { fresh: true }) : new Map(),
    session.token && ids.length ? walletBalance() : undefined,
  ])
    .then(([found, wallet]) => {
      if (signal.aborted) return;
      products = found;
      balance = wallet;
      update();
      if (balance !== null) return;
      // Just signed up: the wallet opens in a moment.
      const opening = poll(async () => {
        balance = await walletBalance();
        if (!signal.aborted) update();
        return balance !== null;
      });
      signal.addEventListener('abort', opening.stop);
    })
    .catch((error) => {
      if (!signal.aborted) message.error(`Prices and stock could not be checked: ${error.message}`);
    });
}
