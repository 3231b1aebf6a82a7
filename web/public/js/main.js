// The storefront's entry point: a hash router (#/cart, #/orders/<id>, ...) so that every
// page is index.html and neither the gateway nor the local proxy needs a fallback route;
// the navigation bar; and the session's effect on both.
//
// A view is `view(main, context)`: it fills <main> and loads what it shows. context.signal
// is aborted when the user leaves the view, which stops its polling and lets late answers
// be dropped.

import { session } from './api.js';
import { cart } from './cart.js';
import { h, replace } from './dom.js';
import { adminView } from './views/admin.js';
import { cartView } from './views/cart.js';
import { catalogView } from './views/catalog.js';
import { orderView } from './views/order.js';
import { ordersView } from './views/orders.js';
import { registerView, signInView } from './views/account.js';

const routes = [
  { path: /^\/$/, view: catalogView, title: 'Catalog' },
  { path: /^\/cart$/, view: cartView, title: 'Cart' },
  { path: /^\/signin$/, view: signInView, title: 'Sign in' },
  { path: /^\/register$/, view: registerView, title: 'Create an account' },
  { path: /^\/orders$/, view: ordersView, title: 'My orders', signedIn: true },
  { path: /^\/orders\/([0-9a-fA-F-]{36})$/, view: orderView, title: 'Order', signedIn: true },
  { path: /^\/admin$/, view: adminView, title: 'Admin', admin: true },
];

let leave = null;
let firstRender = true;

export function navigate(path) {
  if (location.hash === `#${path}`) render();
  else location.hash = path;
}

function render() {
  const hash = location.hash.slice(1);
  const [path, query = ''] = (hash.startsWith('/') ? hash : '/').split('?');
  leave?.abort();
  leave = new AbortController();

  const main = document.getElementById('main');
  const route = routes.find((r) => r.path.test(path));
  renderNav(path);
  main.replaceChildren();
  if (!route) {
    document.title = 'Not found · Shop';
    main.append(h('h1', { tabindex: '-1' }, 'Page not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the catalog')));
  } else if ((route.signedIn || route.admin) && !session.token) {
    location.replace(`#/signin?next=${encodeURIComponent(path)}`);
    return;
  } else if (route.admin && !session.isAdmin) {
    document.title = 'Admin · Shop';
    main.append(h('h1', { tabindex: '-1' }, 'Admin'), h('p', {}, 'These pages need an administrator account.'));
  } else {
    document.title = `${route.title} · Shop`;
    route.view(main, {
      match: route.path.exec(path),
      params: new URLSearchParams(query),
      signal: leave.signal,
      navigate,
    });
  }
  // Move focus to the new page's heading, as a page load would, so that keyboard and
  // screen-reader users start at the top of what changed.
  if (!firstRender) main.querySelector('h1')?.focus();
  firstRender = false;
}

function renderNav(path) {
  const link = (href, text) =>
    h('li', {}, h('a', { href: `#${href}`, 'aria-current': path === href ? 'page' : null }, text));
  const items = [link('/', 'Catalog'), link('/cart', `Cart (${cart.count})`)];
  if (session.token) {
    items.push(link('/orders', 'My orders'));
    if (session.isAdmin) items.push(link('/admin', 'Admin'));
  }
  replace(document.getElementById('nav'), items);

  const who = document.getElementById('who');
  if (session.token) {
    replace(
      who,
      h('span', { class: 'who' }, `Signed in as ${session.email ?? 'you'}${session.isAdmin ? ' (admin)' : ''}`),
      h('button', { type: 'button', class: 'link', onclick: () => session.end() }, 'Sign out'),
    );
  } else {
    replace(who, h('a', { href: '#/signin' }, 'Sign in'), ' · ', h('a', { href: '#/register' }, 'Register'));
  }
}

session.onChange(() => {
  const path = (location.hash.slice(1) || '/').split('?')[0];
  const route = routes.find((r) => r.path.test(path));
  if (!session.token && (route?.signedIn || route?.admin)) navigate(`/signin?next=${encodeURIComponent(path)}`);
  else renderNav(path);
});
cart.onChange(() => renderNav((location.hash.slice(1) || '/').split('?')[0]));
window.addEventListener('hashchange', render);
// The skip link moves the focus without changing the route.
document.querySelector('.skip').addEventListener('click', (event) => {
  event.preventDefault();
  document.getElementById('main').focus();
});
render();
