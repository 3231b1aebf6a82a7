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

/** type -> [title, note, kind]; `kind`: 'step' moves the order forward, 'failure' ends
 * it, 'compensation' undoes an earlier step. */
const STEPS = {
  'shop.order.placed.v1': ['Order placed', 'stored as pending; OrderPlaced published', 'step'],
  'shop.inventory.stock-reserved.v1': ['Stock reserved', 'every line held for this order', 'step'],
  'shop.inventory.stock-rejected.v1': ['Stock rejected', 'not every line could be reserved; nothing is held', 'failure'],
  'shop.payment.succeeded.v1': ['Payment succeeded', 'the order total was charged to the wallet', 'step'],
  'shop.payment.failed.v1': ['Payment failed', 'the wallet was not charged', 'failure'],
  'shop.order.confirmed.v1': ['Order confirmed', 'OrderConfirmed: the reservation becomes a sale', 'step'],
  'shop.order.cancelled.v1': ['Order cancelled', 'OrderCancelled: the stock goes back, a payment is refunded', 'compensation'],
  'shop.payment.refunded.v1': ['Payment refunded', 'the charge went back to the wallet', 'compensation'],
  'shop.inventory.stock-released.v1': ['Stock released', 'the reservation was given back', 'compensation'],
};
// One event, two meanings: after a failed payment order-service publishes OrderCancelled
// to undo the reservation (the order stays rejected); after a customer's cancel it undoes
// the whole order.
const RELEASE_AFTER_FAILURE = ['Stock released', 'OrderCancelled: inventory-service releases the reservation', 'compensation'];

/** One timeline entry as a step: `{at, service, eventType, status, title, note, kind}`. */
export function describeStep(entry) {
  const releases = entry.event_type === 'shop.order.cancelled.v1' && entry.status === 'rejected';
  const [title, note, kind] = (releases ? RELEASE_AFTER_FAILURE : STEPS[entry.event_type]) ?? [
    entry.event_type,
    'an event this page does not know',
    'step',
  ];
  return { at: entry.at, service: entry.source, eventType: entry.event_type, status: entry.status, title, note, kind };
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
