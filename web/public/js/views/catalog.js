// The catalog (GET /api/v1/products, public): every product with its price and stock.

import { listAll } from '../api.js';
import { cart } from '../cart.js';
import { h, messageArea, money, replace } from '../dom.js';

export function stockText(product) {
  const reserved = product.reserved ? ` · ${product.reserved} reserved` : '';
  return product.available > 0 ? `${product.available} in stock${reserved}` : `Out of stock${reserved}`;
}

function productCard(product, message) {
  const titleId = `product-${product.id}`;
  return h(
    'li',
    {},
    h(
      'article',
      { class: 'product card', 'aria-labelledby': titleId },
      h('h2', { id: titleId }, product.name),
      h('p', { class: 'description' }, product.description),
      h('p', { class: 'price' }, money(product.price_cents)),
      h('p', { class: `stock${product.available > 0 ? '' : ' none'}` }, stockText(product)),
      h(
        'button',
        {
          type: 'button',
          class: 'primary',
          onclick: () => {
            cart.add(product);
            message.info(`${product.name} added to the cart (${cart.count} item${cart.count === 1 ? '' : 's'} in it).`);
          },
        },
        'Add to cart',
      ),
    ),
  );
}

export function catalogView(main, { signal }) {
  const message = messageArea();
  const list = h('ul', { class: 'products', 'aria-busy': 'true' });
  main.append(
    h('h1', { tabindex: '-1' }, 'Catalog'),
    h(
      'p',
      { class: 'lead' },
      'Place an order and watch it cross the services: order → inventory → payment → order. ',
      'An order for more than the stock is rejected by inventory-service; one above your wallet by payment-service.',
    ),
    message.element,
    list,
  );
  listAll('/api/v1/products')
    .then(({ items }) => {
      if (signal.aborted) return;
      list.removeAttribute('aria-busy');
      if (items.length === 0) {
        replace(list, h('li', {}, 'The catalog is empty. An administrator can add products (or run `inventory-service seed-demo`).'));
      } else {
        replace(list, items.map((product) => productCard(product, message)));
      }
    })
    .catch((error) => {
      if (!signal.aborted) message.error(`The catalog could not be loaded: ${error.message}`);
    });
}
