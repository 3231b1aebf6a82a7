// What the order timeline means: each entry of GET /api/v1/orders/{id}/timeline
// (`{at, event_type, source, status}`) as a step of the saga, which service took it, and
// whether it moves the order forward, fails it, or undoes an earlier step (a
// compensation). No DOM here, so the mapping is unit-tested in Node (web/tests/unit/).
//
// The saga (docs/patterns/saga.md): order-service places the order, inventory-service
// reserves the stock, payment-service charges the wallet, order-service confirms. A
// failure after the reservation is compensated: the order's OrderCancelled makes
// inventory-service release the stock; a cancelled paid order is refunded.

/** The services an order crosses, left to right, as the timeline's `source` names them. */
export const SAGA_SERVICES = ['order-service', 'inventory-service', 'payment-service'];

/** `kind`: 'step' moves the order forward, 'failure' ends it, 'compensation' undoes. */
const STEPS = {
  'shop.order.placed.v1': () => ({
    title: 'Order placed',
    note: 'stored as pending; OrderPlaced published',
    kind: 'step',
  }),
  'shop.inventory.stock-reserved.v1': () => ({
    title: 'Stock reserved',
    note: 'every line held for this order',
    kind: 'step',
  }),
  'shop.inventory.stock-rejected.v1': () => ({
    title: 'Stock rejected',
    note: 'not every line could be reserved; nothing is held',
    kind: 'failure',
  }),
  'shop.payment.succeeded.v1': () => ({
    title: 'Payment succeeded',
    note: 'the order total was charged to the wallet',
    kind: 'step',
  }),
  'shop.payment.failed.v1': () => ({
    title: 'Payment failed',
    note: 'the wallet was not charged',
    kind: 'failure',
  }),
  'shop.order.confirmed.v1': () => ({
    title: 'Order confirmed',
    note: 'OrderConfirmed: the reservation becomes a sale',
    kind: 'step',
  }),
  // One event, two meanings: after a failed payment order-service publishes it to undo
  // the reservation; after a customer's cancel it undoes the whole order.
  'shop.order.cancelled.v1': ({ status }) =>
    status === 'rejected'
      ? {
          title: 'Stock released',
          note: 'OrderCancelled: inventory-service releases the reservation',
          kind: 'compensation',
        }
      : {
          title: 'Order cancelled',
          note: 'OrderCancelled: the stock goes back, a payment is refunded',
          kind: 'compensation',
        },
  'shop.payment.refunded.v1': () => ({
    title: 'Payment refunded',
    note: 'the charge went back to the wallet',
    kind: 'compensation',
  }),
  'shop.inventory.stock-released.v1': () => ({
    title: 'Stock released',
    note: 'the reservation was given back',
    kind: 'compensation',
  }),
};

/** One timeline entry as a step: `{at, service, eventType, status, title, note, kind}`. */
export function describeStep(entry) {
  const describe = STEPS[entry.event_type];
  const known = describe
    ? describe(entry)
    : { title: entry.event_type, note: 'an event this page does not know', kind: 'step' };
  return {
    at: entry.at,
    service: entry.source,
    eventType: entry.event_type,
    status: entry.status,
    ...known,
  };
}

const RESERVED = 'shop.inventory.stock-reserved.v1';
const PAYMENT_RESULTS = new Set(['shop.payment.succeeded.v1', 'shop.payment.failed.v1']);

/**
 * The steps in the saga's order. The timeline lists events in the order order-service
 * applied them, and StockReserved (inventory's topic) may reach it after the payment
 * result it caused (payment's topic): topics are not ordered with each other. Such a
 * reservation is drawn before the payment, with `late` saying what happened.
 */
export function sagaSteps(timeline) {
  const steps = timeline.map(describeStep);
  const payment = steps.findIndex((step) => PAYMENT_RESULTS.has(step.eventType));
  const reservation = steps.findIndex((step) => step.eventType === RESERVED);
  if (payment >= 0 && reservation > payment) {
    const [reserved] = steps.splice(reservation, 1);
    reserved.late = `reached order-service after "${steps[payment].title}": events on different topics can arrive in any order`;
    steps.splice(payment, 0, reserved);
  }
  return steps;
}

const has = (timeline, type) => timeline.some((entry) => entry.event_type === type);

/**
 * What the saga still waits for, as `{service, title}`, or null when nothing more will
 * happen to the order without someone acting on it.
 */
export function awaiting(order, timeline) {
  if (order.status === 'pending') {
    const last = timeline.at(-1)?.event_type;
    if (last === 'shop.inventory.stock-reserved.v1') {
      return { service: 'payment-service', title: 'Charging the wallet…' };
    }
    if (last === 'shop.payment.succeeded.v1') {
      return { service: 'order-service', title: 'Confirming…' };
    }
    return { service: 'inventory-service', title: 'Reserving stock…' };
  }
  if (
    order.status === 'cancelled' &&
    has(timeline, 'shop.payment.succeeded.v1') &&
    !has(timeline, 'shop.payment.refunded.v1')
  ) {
    return { service: 'payment-service', title: 'Refunding…' };
  }
  return null;
}

/** Statuses an order leaves only when someone acts on it (a cancel). */
export function isSettled(order) {
  return order.status !== 'pending';
}

/** `status_reason` in a customer's words (the code itself is shown beside it). */
export const REASONS = {
  out_of_stock: 'not enough stock for every line',
  unknown_product: 'a product is no longer sold',
  insufficient_funds: 'the wallet balance is too low',
  payment_declined: 'the payment was declined',
  cancelled_by_customer: 'cancelled by the customer',
  cancelled_by_admin: 'cancelled by an administrator',
};
