// The cart: lines kept in sessionStorage (this tab), with the product's name and price as
// they were when added, for display only (order-service prices the order itself).
//
// It also holds the Idempotency-Key of the next placement. The key stays the same until
// the cart changes, so a "Place order" clicked again after a lost answer gets the same
// order back instead of a second one; a new cart means a new key.

import { randomKey } from './api.js';

const KEY = 'shop.cart';
const listeners = new Set();

function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) ?? 'null');
    if (saved && Array.isArray(saved.lines)) return saved;
  } catch {
    // A damaged cart is an empty one.
  }
  return { lines: [], placementKey: randomKey() };
}

let state = load();

function save({ keepKey = false } = {}) {
  if (!keepKey) state.placementKey = randomKey();
  sessionStorage.setItem(KEY, JSON.stringify(state));
  listeners.forEach((listener) => listener());
}

export const cart = {
  get lines() {
    return state.lines;
  },
  get count() {
    return state.lines.reduce((sum, line) => sum + line.quantity, 0);
  },
  get placementKey() {
    return state.placementKey;
  },
  add(product, quantity = 1) {
    const line = state.lines.find((l) => l.product_id === product.id);
    if (line) line.quantity += quantity;
    else {
      state.lines.push({
        product_id: product.id,
        name: product.name,
        price_cents: product.price_cents,
        quantity,
      });
    }
    save();
  },
  setQuantity(productId, quantity) {
    const line = state.lines.find((l) => l.product_id === productId);
    if (!line || line.quantity === quantity) return;
    line.quantity = quantity;
    save();
  },
  remove(productId) {
    state.lines = state.lines.filter((l) => l.product_id !== productId);
    save();
  },
  clear() {
    state.lines = [];
    save();
  },
  /** The body of POST /api/v1/orders for these lines. */
  orderBody() {
    return { items: state.lines.map(({ product_id, quantity }) => ({ product_id, quantity })) };
  },
  onChange(listener) {
    listeners.add(listener);
  },
};
