// One order: its status and reason, the saga drawn from its timeline
// (GET /api/v1/orders/{id}/timeline) in one lane per service, its payments and refunds
// (GET /api/v1/payments?order_id=), the wallet, and "Cancel order". Everything is asked
// again with backoff until the saga waits for nothing more (saga.js `awaiting`).

import { ApiError, api, listAll, session } from '../api.js';
import { h, messageArea, money, replace, shortId, time, timeOfDay } from '../dom.js';
import { poll } from '../poll.js';
import { describeItems, productsById } from '../products.js';
import { SAGA_SERVICES, awaiting, sagaSteps } from '../saga.js';
import { walletBalance, walletText } from '../wallet.js';
import { reasonText, statusBadge } from './status.js';

const CANCELLABLE = new Set(['pending', 'confirmed']);

function lane(service) {
  const index = SAGA_SERVICES.indexOf(service);
  return `lane-${index < 0 ? 0 : index}`;
}

function sagaList(order, timeline) {
  const steps = sagaSteps(timeline);
  const start = steps.length ? Date.parse(steps[0].at) : 0;
  const items = steps.map((step) =>
    h(
      'li',
      { class: `step kind-${step.kind}` },
      h(
        'div',
        { class: `step-card ${lane(step.service)}` },
        h('span', { class: 'service' }, step.service),
        h('strong', { class: 'step-title' }, step.title),
        step.kind === 'step' ? null : h('span', { class: 'tag' }, step.kind),
        h('span', { class: 'note' }, step.note),
        step.late ? h('span', { class: 'note late' }, step.late) : null,
        h(
          'span',
          { class: 'when' },
          time(step.at, timeOfDay),
          step === steps[0] ? null : ` · +${Date.parse(step.at) - start} ms`,
          ' · status after: ',
          h('span', { class: `status status-${step.status}` }, step.status),
        ),
        h('code', { class: 'event-type' }, step.eventType),
      ),
    ),
  );
  const next = awaiting(order, timeline);
  if (next) {
    items.push(
      h(
        'li',
        { class: 'step kind-awaiting' },
        h(
          'div',
          { class: `step-card ${lane(next.service)}` },
          h('span', { class: 'service' }, next.service),
          h('strong', { class: 'step-title' }, next.title),
          h('span', { class: 'note' }, 'waiting for the next event'),
        ),
      ),
    );
  }
  return items;
}

function paymentRows(payments) {
  if (payments.length === 0) return h('p', {}, 'No payments or refunds for this order.');
  return h(
    'table',
    { class: 'payments' },
    h('caption', { class: 'visually-hidden' }, 'Payments and refunds'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Kind'), h('th', { scope: 'col' }, 'Amount'), h('th', { scope: 'col' }, 'When'))),
    h(
      'tbody',
      {},
      payments.map((payment) =>
        h(
          'tr',
          { class: `payment-${payment.kind}` },
          h('td', {}, payment.kind),
          h('td', { class: 'number' }, payment.kind === 'refund' ? `+${money(payment.amount_cents)}` : `−${money(payment.amount_cents)}`),
          h('td', {}, time(payment.created_at, timeOfDay)),
        ),
      ),
    ),
  );
}

export function orderView(main, { match, signal }) {
  const id = match[1];
  const message = messageArea();
  const summary = h('dl', { class: 'summary' });
  const actions = h('div', { class: 'actions' });
  const saga = h('ol', { class: 'steps', 'aria-label': 'Saga steps, oldest first' });
  const sagaMessage = h('p', { class: 'live', role: 'status' });
  const payments = h('div', {});
  const wallet = h('p', { class: 'wallet' });
  main.append(
    h('h1', { tabindex: '-1' }, `Order ${shortId(id)}`),
    message.element,
    h('section', { 'aria-labelledby': 'summary-title', class: 'card' }, h('h2', { id: 'summary-title' }, 'Order summary'), summary, actions),
    h(
      'section',
      { 'aria-labelledby': 'saga-title', class: 'card saga' },
      h('h2', { id: 'saga-title' }, 'The saga'),
      h(
        'p',
        { class: 'legend' },
        'Each event of this order, in the lane of the service that emitted it. ',
        h('span', { class: 'tag kind-failure' }, 'failure'),
        ' ends the order; ',
        h('span', { class: 'tag kind-compensation' }, 'compensation'),
        ' undoes an earlier step.',
      ),
      h('div', { class: 'lanes', 'aria-hidden': 'true' }, SAGA_SERVICES.map((service) => h('span', {}, service))),
      saga,
      sagaMessage,
    ),
    h('section', { 'aria-labelledby': 'payments-title', class: 'card' }, h('h2', { id: 'payments-title' }, 'Payments and refunds'), payments, wallet),
  );

  let order = null; // the last answer of GET /orders/{id}
  let drawnSaga = '';
  let updates = null;

  const showSummary = (products) => {
    replace(
      summary,
      h('dt', {}, 'Status'),
      h('dd', { class: 'order-status' }, statusBadge(order.status)),
      h('dt', {}, 'Reason'),
      h('dd', { class: 'order-reason' }, reasonText(order.status_reason) ?? '—'),
      h('dt', {}, 'Items'),
      h('dd', {}, describeItems(order.items, products)),
      h('dt', {}, 'Total'),
      h('dd', {}, money(order.total_cents)),
      h('dt', {}, 'Placed'),
      h('dd', {}, time(order.created_at)),
    );
    const cancellable = CANCELLABLE.has(order.status);
    const current = actions.querySelector('button');
    if (cancellable && !current) {
      const button = h('button', { type: 'button', class: 'danger', onclick: () => cancel(button) }, 'Cancel order');
      actions.append(button);
    } else if (!cancellable && current) {
      // Keep the focus on the page when the button that had it goes away.
      if (document.activeElement === current) main.querySelector('h1').focus();
      current.remove();
    }
  };

  async function refresh() {
    const current = await api('GET', `/api/v1/orders/${id}`);
    const someoneElses = current.user_id !== session.userId;
    const [events, paid, balance, products] = await Promise.all([
      api('GET', `/api/v1/orders/${id}/timeline`).then((answer) => answer.items),
      listAll(`/api/v1/payments?order_id=${id}`).then((answer) => answer.items),
      // An administrator looking at a customer's order sees the customer's wallet.
      walletBalance(someoneElses ? current.user_id : null),
      productsById(current.items.map((item) => item.product_id)),
    ]);
    if (signal.aborted) return true;
    order = current;
    showSummary(products);
    // Redrawn only when something happened, so that nothing flickers between answers.
    const drawn = JSON.stringify([order.status, events]);
    if (drawn !== drawnSaga) {
      drawnSaga = drawn;
      replace(saga, sagaList(order, events));
    }
    replace(payments, paymentRows(paid));
    wallet.textContent = walletText(balance, someoneElses ? "The customer's wallet" : 'Your wallet');
    const waiting = awaiting(order, events);
    sagaMessage.textContent = waiting ? 'Updating live.' : '';
    return !waiting;
  }

  async function cancel(button) {
    message.clear();
    button.disabled = true;
    try {
      await api('POST', `/api/v1/orders/${id}/cancel`);
    } catch (error) {
      button.disabled = false;
      message.error(
        error instanceof ApiError && error.status === 409
          ? 'This order cannot be cancelled any more.'
          : `The order was not cancelled: ${error.message}`,
      );
      return;
    }
    message.info('Order cancelled. The stock goes back and a payment is refunded, by events.');
    const done = await refresh().catch(() => false);
    if (!done && !signal.aborted) watch();
  }

  function watch() {
    updates?.stop();
    updates = poll(refresh, {
      onGiveUp: () => {
        sagaMessage.textContent = 'Stopped updating: the saga has not moved for a while. Reload to check again.';
      },
    });
  }
  signal.addEventListener('abort', () => updates?.stop());

  refresh()
    .then((done) => {
      if (!done && !signal.aborted) watch();
    })
    .catch((error) => {
      if (signal.aborted) return;
      message.error(
        error instanceof ApiError && error.status === 404 ? 'There is no such order.' : `The order could not be loaded: ${error.message}`,
      );
    });
}
