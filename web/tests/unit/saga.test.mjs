// The meaning the saga view gives to each timeline entry (web/public/js/saga.js).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { awaiting, describeStep, isSettled, sagaSteps } from '../../public/js/saga.js';

const entry = (event_type, source, status) => ({ at: '2026-01-01T10:00:00.000Z', event_type, source, status });

const placed = entry('shop.order.placed.v1', 'order-service', 'pending');
const reserved = entry('shop.inventory.stock-reserved.v1', 'inventory-service', 'pending');
const rejected = entry('shop.inventory.stock-rejected.v1', 'inventory-service', 'rejected');
const paid = entry('shop.payment.succeeded.v1', 'payment-service', 'confirmed');
const declined = entry('shop.payment.failed.v1', 'payment-service', 'rejected');
const confirmed = entry('shop.order.confirmed.v1', 'order-service', 'confirmed');
const released = entry('shop.order.cancelled.v1', 'order-service', 'rejected');
const cancelled = entry('shop.order.cancelled.v1', 'order-service', 'cancelled');
const refunded = entry('shop.payment.refunded.v1', 'payment-service', 'cancelled');

test('the happy path is four forward steps across three services', () => {
  const steps = sagaSteps([placed, reserved, paid, confirmed]);
  assert.deepEqual(
    steps.map((s) => [s.title, s.service, s.kind, s.status]),
    [
      ['Order placed', 'order-service', 'step', 'pending'],
      ['Stock reserved', 'inventory-service', 'step', 'pending'],
      ['Payment succeeded', 'payment-service', 'step', 'confirmed'],
      ['Order confirmed', 'order-service', 'step', 'confirmed'],
    ],
  );
});

test('a reservation that reached order-service after the payment is drawn before it', () => {
  const steps = sagaSteps([placed, paid, confirmed, { ...reserved, status: 'confirmed' }]);
  assert.deepEqual(
    steps.map((s) => s.title),
    ['Order placed', 'Stock reserved', 'Payment succeeded', 'Order confirmed'],
  );
  assert.match(steps[1].late, /after "Payment succeeded"/);
  assert.equal(sagaSteps([placed, reserved, paid, confirmed])[1].late, undefined);
});

test('a rejection by inventory or payment is a failure', () => {
  assert.equal(describeStep(rejected).kind, 'failure');
  assert.equal(describeStep(declined).kind, 'failure');
});

test('OrderCancelled after a failed payment is the compensation that releases the stock', () => {
  const step = describeStep(released);
  assert.equal(step.kind, 'compensation');
  assert.equal(step.title, 'Stock released');
});

test("a customer's cancellation and the refund are compensations", () => {
  assert.deepEqual(
    sagaSteps([cancelled, refunded]).map((s) => [s.title, s.kind]),
    [
      ['Order cancelled', 'compensation'],
      ['Payment refunded', 'compensation'],
    ],
  );
});

test('an event type the page does not know is still shown, by its type', () => {
  const step = describeStep(entry('shop.order.shipped.v2', 'shipping-service', 'confirmed'));
  assert.equal(step.title, 'shop.order.shipped.v2');
  assert.equal(step.service, 'shipping-service');
});

test('a pending order waits on the service of the next step', () => {
  const order = { status: 'pending' };
  assert.equal(awaiting(order, []).service, 'inventory-service');
  assert.equal(awaiting(order, [placed]).service, 'inventory-service');
  assert.equal(awaiting(order, [placed, reserved]).service, 'payment-service');
  assert.equal(awaiting(order, [placed, reserved, paid]).service, 'order-service');
});

test('a cancelled paid order waits for its refund, then for nothing', () => {
  const order = { status: 'cancelled' };
  const before = [placed, reserved, paid, confirmed, cancelled];
  assert.equal(awaiting(order, before).title, 'Refunding…');
  assert.equal(awaiting(order, [...before, refunded]), null);
  assert.equal(awaiting(order, [placed, cancelled]), null);
});

test('confirmed and rejected orders wait for nothing', () => {
  assert.equal(awaiting({ status: 'confirmed' }, [placed, reserved, paid, confirmed]), null);
  assert.equal(awaiting({ status: 'rejected' }, [placed, rejected]), null);
  assert.equal(awaiting({ status: 'rejected' }, [placed, reserved, declined, released]), null);
});

test('only pending orders are unsettled', () => {
  assert.equal(isSettled({ status: 'pending' }), false);
  for (const status of ['confirmed', 'rejected', 'cancelled']) assert.equal(isSettled({ status }), true);
});
