// "My orders" (GET /api/v1/orders): each order's status and reason, kept up to date while
// any of them is pending, then no more requests (see poll.js).

import { listAll, session } from '../api.js';
import { h, messageArea, money, replace, shortId, time } from '../dom.js';
import { poll } from '../poll.js';
import { describeItems, productsById } from '../products.js';
import { isSettled } from '../saga.js';
import { walletBalance, walletText } from '../wallet.js';
import { reasonText, statusBadge } from './status.js';

function orderRow(order, products) {
  const titleId = `order-${order.id}`;
  const status = h('span', { class: 'order-status' });
  const reason = h('span', { class: 'order-reason' });
  const row = h(
    'li',
    {},
    h(
      'article',
      { class: 'order card', 'aria-labelledby': titleId },
      h('h2', { id: titleId }, h('a', { href: `#/orders/${order.id}` }, `Order ${shortId(order.id)}`)),
      h('p', {}, describeItems(order.items, products)),
      h('p', { class: 'meta' }, money(order.total_cents), ' · placed ', time(order.created_at)),
      h('p', { class: 'state' }, status, ' ', reason),
    ),
  );
  const update = (current) => {
    replace(status, statusBadge(current.status));
    replace(reason, reasonText(current.status_reason));
  };
  update(order);
  return { row, update };
}

export function ordersView(main, { signal }) {
  const message = messageArea();
  const wallet = h('p', { class: 'wallet' });
  const list = h('ul', { class: 'orders', 'aria-busy': 'true' });
  const live = h('p', { class: 'live', role: 'status' });
  main.append(h('h1', { tabindex: '-1' }, 'My orders'), wallet, live, message.element, list);
  const rows = new Map();

  async function refresh() {
    const [answer, balance] = await Promise.all([listAll('/api/v1/orders', { maxPages: 3 }), walletBalance()]);
    // An admin's list is everybody's orders (the Admin page shows them); here only theirs.
    const items = session.isAdmin ? answer.items.filter((order) => order.user_id === session.userId) : answer.items;
    const products = await productsById(items.flatMap((order) => order.items.map((item) => item.product_id)));
    if (signal.aborted) return true;
    list.removeAttribute('aria-busy');
    wallet.textContent = walletText(balance);
    if (items.length === 0) {
      replace(list, h('li', {}, 'No orders yet. ', h('a', { href: '#/' }, 'Browse the catalog'), '.'));
      return true;
    }
    // Update rows in place, so that focus and reading position survive a refresh.
    const entries = items.map((order) => {
      const known = rows.get(order.id) ?? orderRow(order, products);
      known.update(order);
      rows.set(order.id, known);
      return known.row;
    });
    const same = entries.length === list.children.length && entries.every((entry, i) => list.children[i] === entry);
    if (!same) replace(list, entries);
    const pending = items.filter((order) => !isSettled(order)).length;
    live.textContent = pending ? `Updating live: ${pending} order${pending === 1 ? '' : 's'} pending.` : '';
    return pending === 0 && balance !== null;
  }

  refresh()
    .then((done) => {
      if (done || signal.aborted) return;
      const updates = poll(refresh, {
        onGiveUp: () => {
          live.textContent = 'Stopped updating. Reload the page to check again.';
        },
      });
      signal.addEventListener('abort', updates.stop);
    })
    .catch((error) => {
      if (!signal.aborted) message.error(`Your orders could not be loaded: ${error.message}`);
    });
}
