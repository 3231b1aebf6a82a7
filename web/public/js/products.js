// Products by id, looked up in batches (GET /api/v1/products?ids=a,b,c) and remembered
// for the life of the page: order lines show their names.

import { api } from './api.js';

const known = new Map();

/**
 * A Map of id -> product for `ids` (unknown ids are left out). `fresh` asks again for
 * products already known, for their current stock.
 */
export async function productsById(ids, { fresh = false } = {}) {
  const missing = [...new Set(ids)].filter((id) => fresh || !known.has(id));
  for (let start = 0; start < missing.length; start += 100) {
    const batch = missing.slice(start, start + 100);
    const answer = await api('GET', `/api/v1/products?ids=${batch.join(',')}`);
    for (const product of answer.items) known.set(product.id, product);
  }
  return new Map(ids.filter((id) => known.has(id)).map((id) => [id, known.get(id)]));
}

/** "2 × Enamel mug, 1 × Gel pens" for an order's items. */
export function describeItems(items, products) {
  return items
    .map((item) => `${item.quantity} × ${products.get(item.product_id)?.name ?? 'a product no longer listed'}`)
    .join(', ');
}
